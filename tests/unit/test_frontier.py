"""The frontier study's pieces: the compact family and its anchors, the recipe knobs, the MPS Born machine control,
``n_blocks=fill``, per-image test predictions, the searches' spaces and the study's collect step."""

import itertools
import json
import math
import shutil
from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from torch import nn

from qt.analysis.frontier import budget_comparisons, frontier_points, plot_frontier
from qt.analysis.stats import holm, seed_image_bootstrap
from qt.core.generators import MPSBornMachine, effective_dimension, mps_bonds, mps_params
from qt.core.learners import QTLearner
from qt.core.mapping import MLPMapping
from qt.core.quantum.circuit import QuantumCircuit
from qt.core.targets import CompactCNN, SeparableConv2d, SimpleCNN, count_weights
from qt.errors import ConfigError
from qt.experiment.build import build_learner, fill_blocks
from qt.experiment.config import compose_config
from qt.experiment.controls import CONTROLS, control_of, qt_learner
from qt.experiment.config import fingerprint
from qt.experiment.run import setup
from qt.experiment.validation import validate
from qt.tools.rank import initial_learner
from qt.training.state import TrainerConfig
from qt.results.plots import pyplot
from qt.results.schema import read_predictions, write_predictions
from qt.tools import frontier
from qt.training.losses import CrossEntropy
from tests.helpers import ROOT


def layer_list(net: nn.Module) -> list[tuple]:
    """(kind, in, out, kernel, groups, bias) of every convolution and linear layer, in order."""
    out = []
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            out.append(("conv", m.in_channels, m.out_channels, m.kernel_size[0], m.groups, m.bias is not None, m.padding[0]))
        elif isinstance(m, nn.Linear):
            out.append(("linear", m.in_features, m.out_features, 1, 1, True, 0))
    return out


def test_compact_presets_are_joshwarns_layer_lists_with_their_counts():
    cfg = compose_config(["model=compact_697", "dataset=mnist"])
    net = build_learner(OmegaConf.merge(cfg, {"mode": "classical"})).target
    assert count_weights(net) == 697
    # conv 1->6 3x3 same; separable (depthwise 3x3 without bias, pointwise 1x1 with bias) 6->5->9->10->8 valid; linear 8->10
    assert layer_list(net) == [
        ("conv", 1, 6, 3, 1, True, 1),
        ("conv", 6, 6, 3, 6, False, 0), ("conv", 6, 5, 1, 1, True, 0),
        ("conv", 5, 5, 3, 5, False, 0), ("conv", 5, 9, 1, 1, True, 0),
        ("conv", 9, 9, 3, 9, False, 0), ("conv", 9, 10, 1, 1, True, 0),
        ("conv", 10, 10, 3, 10, False, 0), ("conv", 10, 8, 1, 1, True, 0),
        ("linear", 8, 10, 1, 1, True, 0),
    ]  # fmt: skip
    drops = [m.p for m in net.modules() if isinstance(m, nn.Dropout)]
    assert drops == [0.05] * 3  # after the first three separable convolutions, as load_and_test_model.py
    assert all(m.negative_slope == 0.2 for m in net.modules() if isinstance(m, nn.LeakyReLU))
    cfg = compose_config(["model=compact_997", "dataset=mnist"])
    net = build_learner(OmegaConf.merge(cfg, {"mode": "classical"})).target
    assert count_weights(net) == 997
    assert layer_list(net)[0] == ("conv", 1, 7, 3, 1, True, 0)  # stem 1->7, valid
    assert [m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] == 1] == [10, 10, 11, 12]
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.1] * 5
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_compact_init_draws_as_keras_does():
    torch.manual_seed(0)
    net = CompactCNN(widths=[64, 64], init="he_stem")
    stem = net.features[0].weight.detach()
    assert abs(float(stem.std()) - math.sqrt(2 / 9)) < 0.05 * math.sqrt(2 / 9)  # He-normal: variance 2 / fan_in after truncation
    assert float(stem.abs().max()) <= 2 * math.sqrt(2 / 9) / 0.8796 + 1e-6  # truncated at 2 sd
    point = net.features[3].pointwise.weight.detach()  # stem conv, activation, pool, then the separable stage
    limit = math.sqrt(6 / (64 + 64))
    assert float(point.abs().max()) <= limit and float(point.abs().max()) > 0.9 * limit  # Glorot-uniform
    assert all(float(m.bias.abs().max()) == 0 for m in net.modules() if isinstance(m, nn.Conv2d) and m.bias is not None)
    torch_init = CompactCNN(widths=[64, 64])
    assert float(torch_init.features[0].bias.abs().max()) > 0  # torch's own init keeps its biases


def test_compact_fills_a_budget_with_the_widest_shape_and_refuses_what_cannot_build():
    for budget in (300, 697, 1369, 4000):
        for kw in (dict(), dict(stages=2, growth=2.0, separable=False), dict(hidden=16, batch_norm=True, padding="same")):
            net = CompactCNN(widths=None, max_params=budget, **kw)
            assert count_weights(net) <= budget
            wider = [*net.widths[:-1], net.widths[-1] + 1]
            assert count_weights(CompactCNN(widths=wider, **kw)) > budget  # no room left
    assert CompactCNN(widths=None, max_params=697, pool=2, padding="same").widths == CompactCNN(widths=None, max_params=697, pool=[0, 1], padding="same").widths
    with pytest.raises(ConfigError, match="widths or a budget"):
        CompactCNN(widths=None)
    with pytest.raises(ConfigError, match="too small"):
        CompactCNN(widths=[4, 4, 4, 4, 4, 4], pool=3)
    with pytest.raises(ConfigError, match=r"model.pool names layers \[7\]"):
        CompactCNN(pool=[7])
    with pytest.raises(ConfigError, match="model.padding must be same or valid"):
        CompactCNN(padding="full")
    with pytest.raises(ConfigError, match="unknown model.activation 'swish'"):
        CompactCNN(activation="swish")
    with pytest.raises(ConfigError, match="unknown model.init"):
        CompactCNN(init="lecun")
    sep = SeparableConv2d(4, 6, depthwise_bias=True)
    assert count_weights(sep) == 4 * 9 + 4 + 4 * 6 + 6


def test_dropout_and_label_smoothing_knobs():
    plain, dropped = SimpleCNN(), SimpleCNN(dropout=0.2)
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in SimpleCNN().named_parameters()]
    assert sum(isinstance(m, nn.Dropout) for m in dropped.modules()) == 3  # two stages, one hidden layer
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    with pytest.raises(ConfigError, match="model.dropout must be below 1"):
        SimpleCNN(dropout=1.0)
    logits, y = torch.randn(8, 10), torch.randint(10, (8,))
    assert torch.equal(CrossEntropy(0.1)(logits, y), nn.functional.cross_entropy(logits, y, label_smoothing=0.1))
    assert torch.equal(CrossEntropy()(logits, y), nn.functional.cross_entropy(logits, y))
    with pytest.raises(ConfigError, match="loss.label_smoothing"):
        CrossEntropy(1.5)


def test_mps_born_machine_is_a_normalised_mps_within_the_circuits_count():
    m = MPSBornMachine(5, max_params=60, seed=1)
    amps = []
    for bits in itertools.product([0, 1], repeat=5):  # the first bit the most significant, as the circuit's index
        v = torch.ones(1, 1)
        for k, b in enumerate(bits):
            v = v @ m.tensors[k][:, b, :]
        amps.append(float(v))
    assert torch.allclose(m.amplitudes().detach(), torch.tensor(amps), atol=1e-6)
    p = m()
    assert abs(float(p.sum()) - 1) < 1e-6 and bool((p >= 0).all())
    n_params = sum(t.numel() for t in m.parameters())
    assert n_params == mps_params(5, m.bond) <= 60 < mps_params(5, m.bond + 1)
    p.pow(2).sum().backward()
    assert all(t.grad is not None and float(t.grad.abs().sum()) > 0 for t in m.tensors)
    again, other = MPSBornMachine(5, 60, seed=1), MPSBornMachine(5, 60, seed=2)
    assert torch.equal(again(), m().detach()) and not torch.equal(other(), m().detach())
    spread = MPSBornMachine(13, 832, seed=0)().detach() * 2**13
    assert 0.3 < float(spread.std()) < 3  # a spread like a random circuit's, not a few states holding it all
    with pytest.raises(ConfigError, match="at least"):
        MPSBornMachine(13, 20, seed=0)


def test_mps_born_is_a_control_paired_like_the_others():
    cfg = compose_config(["variant=mps_born"])
    assert control_of(cfg) == "mps_born" and "mps_born" in CONTROLS
    circuit = partial(QuantumCircuit, n_blocks=16)
    learner = qt_learner(SimpleCNN(), "mps_born", circuit, partial(MLPMapping, hidden=[8]), 1, seed=0)
    table = learner.param_table()
    assert table["generator"] == "mps_born" and 0 < table["qnn_params"] <= 13 * 16
    assert QTLearner(SimpleCNN(), circuit, partial(MLPMapping, hidden=[8])).param_table()["generator"] == "quantum"


def test_n_blocks_fill_takes_the_most_blocks_within_the_budget():
    for budget, overrides in ((697, ["mapping=medium_7"]), (1369, ["mapping=medium_16"]), (697, ["circuit=u3", "mapping=paper", "model=compact_2k"])):
        cfg = compose_config(["n_blocks=fill", f"max_trainable_params={budget}", *overrides])
        validate(cfg)
        fill_blocks(cfg)
        n = cfg.n_blocks
        assert isinstance(n, int) and n >= 1 and cfg.circuit.n_blocks == n
        assert build_learner(cfg).param_table()["trainable_params"] <= budget
        over = cfg.copy()
        over.n_blocks = n + 1
        assert build_learner(over).param_table()["trainable_params"] > budget
    # the control of a filled config gets the QT config's block count (it pairs with it)
    counts = []
    for variant in ("qt", "frozen", "hashed"):
        cfg = compose_config(["n_blocks=fill", "max_trainable_params=697", "mapping=medium_7", f"variant={variant}"])
        fill_blocks(cfg)
        counts.append(cfg.n_blocks)
    assert counts == [40, 40, 40]  # mnist_700's 40 blocks, 697 trainable
    with pytest.raises(ConfigError, match="set max_trainable_params"):
        validate(compose_config(["n_blocks=fill"]))
    with pytest.raises(ConfigError, match="integer or fill"):
        validate(compose_config(["n_blocks=full"]))
    cfg = compose_config(["n_blocks=fill", "max_trainable_params=100", "mapping=medium_16"])
    with pytest.raises(ConfigError, match="one block already gives"):
        fill_blocks(cfg)


def sweep_space(name: str) -> dict[str, list]:
    """A frontier sweep's categorical choices (its intervals left out)."""
    params = OmegaConf.load(ROOT / "sweeps" / f"{name}.yaml").hydra.sweeper.params
    parser = OverridesParser.create()
    space = {}
    for key, text in params.items():
        value = parser.parse_override(f"{key}={text}").value()
        if hasattr(value, "list"):
            space[key] = value.list
    return space


@pytest.mark.parametrize("budget", [697, 1369])
def test_every_shape_of_the_classical_search_builds_near_its_budget(budget):
    compact = sweep_space("frontier_compact")
    shape_keys = ["model.stages", "model.growth", "model.separable", "model.padding", "model.hidden", "model.batch_norm"]
    for values in itertools.product(*(compact[k] for k in shape_keys)):
        kw = {k.split(".")[1]: v for k, v in zip(shape_keys, values)}
        net = CompactCNN(widths=None, max_params=budget, **kw)
        assert budget * 0.8 < count_weights(net) <= budget, kw  # near the budget, never over it


def test_every_point_of_the_qt_search_fills_its_budget():
    """At 697, the smaller budget: a point that fits one block there fits at 1,369 too, and a block adds at most 78
    parameters (U3+CU3 on 13 qubits), so a filled point is within 6 % of either budget."""
    qt_space = sweep_space("frontier_qt")
    assert sweep_space("frontier_hashed")["model"] == qt_space["model"]
    budget = 697
    for model, circuit, mapping in itertools.product(qt_space["model"], qt_space["circuit"], qt_space["mapping"]):
        cfg = compose_config(["n_blocks=fill", f"max_trainable_params={budget}", f"model={model}", f"circuit={circuit}", f"mapping={mapping}"])
        fill_blocks(cfg)
        per_block = 2 * 13 * 3 if circuit == "u3" else 13
        assert cfg.n_blocks >= 1 and cfg.n_blocks * per_block < budget, (model, circuit, mapping)


def test_the_three_searches_get_the_same_budget_of_trials_epochs_and_pruning():
    settings = []
    for name in ("frontier_compact", "frontier_qt", "frontier_hashed"):
        cfg = OmegaConf.load(ROOT / "sweeps" / f"{name}.yaml")
        s = cfg.hydra.sweeper
        settings.append((s.n_trials, dict(s.sampler), dict(s.pruner), cfg.trainer.epochs, cfg.objective))
        assert {"optimizer.lr", "optimizer.weight_decay", "loss.label_smoothing", "model.dropout", "trainer.batch_size"} <= set(s.params)
    assert settings[0] == settings[1] == settings[2] and settings[0][0] >= 40
    assert settings[0][1]["constant_liar"] and settings[0][1]["seed"] == 0  # two trials at once are not proposed as twins


def test_predictions_round_trip(tmp_path):
    label, predicted = torch.tensor([3, 1, 4, 1, 5]), torch.tensor([3, 1, 4, 0, 5])
    write_predictions(tmp_path, label, predicted)
    got = read_predictions(tmp_path)
    assert got is not None and np.array_equal(got[0], label.numpy()) and np.array_equal(got[1], predicted.numpy())
    assert read_predictions(tmp_path / "none") is None


def test_collect_keeps_finished_runs_small_files_only(tmp_path):
    out, results = tmp_path / "out", tmp_path / "results"
    for job, status in (("0", "completed"), ("1", "running"), ("2", "pruned")):
        run = out / "anchors" / "697" / job
        (run / ".hydra").mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps({"schema_version": 2, "status": status}))
        (run / "metrics.csv").write_text("epoch\n1\n")
        (run / ".hydra" / "config.yaml").write_text("seed: 0\n")
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.pt").write_bytes(b"x")
    (out / "anchors" / "697" / "trials.csv").write_text("trial\n")
    jobs = [j for j in frontier.stages()["anchors"] if j.name == "anchors/697"]
    assert frontier.collect(out, results, jobs) == 7  # two finished runs x 3 files, and the sweep's table
    kept = sorted(p.relative_to(results).as_posix() for p in results.rglob("*") if p.is_file())
    assert "anchors/697/1/summary.json" not in kept and not any("checkpoints" in k for k in kept)
    assert "anchors/697/0/.hydra/config.yaml" in kept and "anchors/697/trials.csv" in kept
    assert frontier.collect(out, results, jobs) == 0  # unchanged files are not rewritten
    search = next(j for j in frontier.stages()["search_mnist_697"] if j.name.startswith("search/qt"))
    assert "test_predictions.npz" not in search.keep and "+sweep=frontier_qt" in search.overrides


def test_finished_jobs_are_read_from_the_collected_results(tmp_path):
    """``run`` skips a job whose results are all collected (a machine that lost its output root resumes from the repository)."""
    anchors, search = frontier.stages()["anchors"][0], frontier.stages()["search_mnist_697"][0]
    for seed in range(5):
        run = tmp_path / anchors.name / str(seed)
        run.mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps({"schema_version": 2, "status": "completed" if seed else "running"}))
    assert not frontier.finished(anchors, tmp_path)  # 4 of its 5 seeds
    (tmp_path / anchors.name / "0" / "summary.json").write_text(json.dumps({"schema_version": 2, "status": "completed"}))
    assert frontier.finished(anchors, tmp_path)
    (tmp_path / search.name).mkdir(parents=True)
    (tmp_path / search.name / "sweep_summary.json").write_text(json.dumps({"n_trials": 39}))
    assert not frontier.finished(search, tmp_path) and not frontier.finished(frontier.stages()["search_mnist_697"][1], tmp_path)
    (tmp_path / search.name / "sweep_summary.json").write_text(json.dumps({"n_trials": 40}))
    assert frontier.finished(search, tmp_path)


def test_seed_image_bootstrap_and_holm():
    rng = np.random.default_rng(0)
    a = (rng.random((5, 2000)) < 0.95).astype(float)
    same = seed_image_bootstrap(a, a)
    assert same[:3] == (0.0, 0.0, 0.0) and same[3] == 1.0
    b = a.copy()
    b[:, :100] = 1 - b[:, :100]  # b wrong where a is right on 100 images (and the reverse where a was wrong)
    diff, low, high, p = seed_image_bootstrap(a, b)
    assert diff == pytest.approx((a - b).mean()) and low <= diff <= high
    back = seed_image_bootstrap(b, a)
    assert back[0] == pytest.approx(-diff) and back[3] == pytest.approx(p)
    noise = (rng.random((5, 2000)) < 0.95).astype(float)  # another network, equally good: no evidence of a difference
    assert seed_image_bootstrap(a, noise)[3] > 0.05
    # the seeds are resampled too: a difference that one seed carries alone is less sure than the same total spread
    # over every seed (an image-only bootstrap could not tell the two apart)
    ones = np.ones((5, 2000))
    one_seed, every_seed = ones.copy(), ones.copy()
    one_seed[0, :300] = 0
    for s in range(5):
        every_seed[s, 60 * s : 60 * (s + 1)] = 0
    lumpy, even = seed_image_bootstrap(ones, one_seed), seed_image_bootstrap(ones, every_seed)
    assert lumpy[0] == pytest.approx(even[0]) and lumpy[2] - lumpy[1] > 2 * (even[2] - even[1])
    adjusted = holm([0.01, 0.04, float("nan"), 0.03])
    assert adjusted[:2] + adjusted[3:] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adjusted[2])


def _fake_runs(tmp_path, labels: np.ndarray) -> pd.DataFrame:
    """QT, HashedNets and a compact network at 697 on mnist, 3 seeds each, with saved predictions; a single-seed search trial."""
    rng = np.random.default_rng(1)
    rows = []
    for variant, model, acc, key in (("qt", "cnn_qtt", 0.98, "q"), ("hashed", "cnn_qtt", 0.96, "h"), ("classical", "compact", 0.97, "c"), ("classical", "compact", 0.5, "trial")):
        for seed in (0, 1, 2) if key != "trial" else (0,):
            run = tmp_path / f"{key}{seed}"
            predicted = np.where(rng.random(len(labels)) < acc, labels, (labels + 1) % 10)
            write_predictions(run, torch.as_tensor(labels), torch.as_tensor(predicted))
            rows.append(dict(run_dir=str(run), status="completed", dataset="mnist", variant=variant, model=model, seed=seed, epochs=20,
                             test_acc=float((predicted == labels).mean()), group_key=key, max_trainable_params=697 if variant != "classical" else None,
                             budget=697 if variant == "classical" else None, trainable_params=690 if variant != "classical" else 680,
                             target_weights=6690 if variant != "classical" else 680, experiment=None))  # fmt: skip
    return pd.DataFrame(rows)


def test_the_frontier_and_the_comparisons_at_a_budget(tmp_path):
    labels = np.arange(3000) % 10
    df = _fake_runs(tmp_path, labels)
    points = frontier_points(df)
    assert sorted(points.method) == ["direct compact", "hashed", "qt"] and set(points.n) == {3}  # the single trial is no point
    qt_point = points[points.method == "qt"].iloc[0]
    assert qt_point.deployed_weights == 6690 and qt_point.trainable_params == 690 and qt_point.budget == 697
    at = budget_comparisons(df, reps=500)
    assert sorted(at.control) == ["direct compact", "hashed"] and set(at.n_qt) == {3}
    for row in at.itertuples():
        qt_acc = df[df.group_key == "q"].test_acc.mean()
        other = df[(df.group_key == ("h" if row.control == "hashed" else "c"))].test_acc.mean()
        assert row.diff_mean == pytest.approx(qt_acc - other) and row.ci_low < row.diff_mean < row.ci_high
        assert row.p_holm >= row.p_value and row.comparison.startswith("paired bootstrap")
    assert at.set_index("control").loc["hashed", "ci_low"] > 0  # 98 % against 96 % on 3 x 3,000 images: clear
    (tmp_path / "h1" / "test_predictions.npz").unlink()  # a run without predictions: the seed-only interval, no p-value
    fallback = budget_comparisons(df, reps=500).set_index("control").loc["hashed"]
    assert fallback.comparison.startswith("paired t") and math.isnan(fallback.p_value)
    figure = plot_frontier(points)
    assert figure is not None and len(figure.axes) == 2 and plot_frontier(points[points.method == "qt"]) is None
    pyplot().close(figure)  # the report closes what it renders; so does this test


def test_effective_dimension_counts_the_directions_a_generator_can_move_its_distribution():
    torch.manual_seed(0)
    product = QuantumCircuit(n_qubits=5, n_blocks=4, entangle=False, dtype="float64")
    assert effective_dimension(product) == 5  # 20 angles, a product of 5 marginals
    assert effective_dimension(QuantumCircuit(n_qubits=5, n_blocks=4, dtype="float64")) > 5
    mps = MPSBornMachine(6, max_params=80, seed=0).double()
    bonds = mps_bonds(6, mps.bond)
    gauge = sum(d * d for d in bonds[1:-1])  # an invertible matrix on each inner bond changes nothing, nor does the scale
    assert effective_dimension(mps) == mps_params(6, mps.bond) - gauge - 1
    assert effective_dimension(QuantumCircuit(n_qubits=5, n_blocks=4, freeze=True, dtype="float64")) == 0


def test_the_rank_tool_draws_the_run_s_own_initial_learner(tmp_path):
    cfg = compose_config(["n_blocks=2", "mapping=medium_7", "trainer.threads=1"])
    validate(cfg)
    tcfg = TrainerConfig(**OmegaConf.to_container(cfg.trainer, resolve=True))
    trainer, _ = setup(cfg, tcfg, tmp_path, fingerprint(cfg))
    ours = initial_learner(cfg)
    theirs = trainer.learner.circuit.state_dict()
    assert theirs.keys() == ours.circuit.state_dict().keys()
    assert all(torch.equal(v, ours.circuit.state_dict()[k]) for k, v in theirs.items())


def test_choose_writes_each_finished_search_as_an_experiment_that_builds(tmp_path):
    conf = tmp_path / "repo" / "conf"
    shutil.copytree(ROOT / "conf", conf, symlinks=True)
    shutil.copytree(ROOT / "sweeps", tmp_path / "repo" / "sweeps")
    results = tmp_path / "results"
    best = {
        "compact": {"model.stages": 3, "model.growth": 2.0, "model.separable": True, "model.padding": "same", "model.batch_norm": True,
                    "model.activation": "relu", "model.hidden": 0, "model.dropout": 0.05},
        "qt": {"model": "compact_2k", "circuit": "u3", "mapping": "medium_7", "model.dropout": 0.0},
        "hashed": {"model": "cnn_qtt", "model.dropout": 0.1},
    }  # fmt: skip
    recipe = {"optimizer.lr": 0.004, "optimizer.weight_decay": 1e-3, "trainer.clip_norm": 2.5, "loss.label_smoothing": 0.05, "trainer.batch_size": 64}
    jobs = frontier.stages()["search_mnist_697"]
    for job in jobs:
        method = job.name.split("/")[1].split("_")[0]
        (results / job.name).mkdir(parents=True)
        summary = {"n_trials": 40, "best_trial": 7, "best_value": 0.97, "best_params": {**best[method], **recipe}}
        (results / job.name / "sweep_summary.json").write_text(json.dumps(summary))
    unfinished = frontier.stages()["search_fmnist_697"][0]
    (results / unfinished.name).mkdir(parents=True)
    (results / unfinished.name / "sweep_summary.json").write_text(json.dumps({"n_trials": 12, "best_trial": 3, "best_value": 0.8, "best_params": recipe}))
    written = frontier.choose(results, jobs + [unfinished], dest=conf / "experiment" / "frontier")
    assert sorted(p.name for p in written) == ["compact_mnist_697.yaml", "hashed_mnist_697.yaml", "qt_mnist_697.yaml"]  # not the unfinished
    with initialize_config_dir(config_dir=str(conf), version_base=None):
        for name, mode in (("compact", "classical"), ("qt", "qt"), ("hashed", "qt")):
            cfg = compose(config_name="train", overrides=[f"experiment=frontier/{name}_mnist_697"])
            validate(cfg)
            fill_blocks(cfg)
            table = build_learner(cfg).param_table()
            assert cfg.mode == mode and cfg.dataset.name == "MNIST" and cfg.trainer.epochs == frontier.EPOCHS
            assert (cfg.optimizer.lr, cfg.trainer.batch_size, cfg.loss.label_smoothing) == (0.004, 64, 0.05)
            assert cfg.optimizer._target_ == "torch.optim.AdamW" and table["trainable_params"] <= 697
            if name == "qt":
                assert cfg.model.max_params == 2000 and cfg.circuit.rotation == "U3" and isinstance(cfg.n_blocks, int)
            if name == "compact":
                assert cfg.model.stages == 3 and cfg.model.padding == "same" and cfg.model.max_params == 697
            if name == "hashed":
                assert table["generator"] == "hashed" and cfg.model.dropout == 0.1


def test_the_headline_batch_runs_every_method_of_a_cell_on_the_same_seeds():
    plan = frontier.stages()
    mnist, fmnist = plan["headline_mnist_697"], plan["headline_fmnist_1369"]
    assert [j.name for j in mnist] == ["headline/mnist_697/qt", "headline/mnist_697/compact", "headline/mnist_697/hashed", "headline/mnist_697/anchor_697"]
    assert all("seed=0,1,2,3,4,5,6,7,8,9" in j.overrides for j in mnist) and all("seed=0,1,2,3,4" in j.overrides for j in fmnist)
    assert "variant=qt,mps_born,no_entanglement,classical_generator" in mnist[0].overrides
    assert list(plan).index("headline_mnist_697") > list(plan).index("search_fmnist_1369")  # after every search
    anchor = compose_config(["experiment=anchor_697", *mnist[3].overrides[1:2]])
    assert anchor.model.max_params == 697  # compared at its budget; a listed network over it is refused
    with pytest.raises(ConfigError, match="over model.max_params=600"):
        CompactCNN(max_params=600)
