"""Every config group option composes and builds; bad values fail with one clear line."""

import csv
import json

import pytest
import torch
from hydra.utils import execution_whitelist, instantiate
from omegaconf import OmegaConf

from qt.experiment.config import compose_config, trusted, trusted_targets
from qt.experiment.validation import validate
from qt.errors import ConfigError
from qt.experiment.build import build_learner
from qt.experiment.run import run
from qt.train import check_group_options
from tests.helpers import ROOT


CONF = ROOT / "conf"


def cfg_with(*overrides):
    return compose_config(overrides)


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_groups_have_the_promised_options():
    assert {"mnist_5k", "mnist", "fashion_mnist", "cifar10"} <= set(options("dataset"))
    assert {"cnn_small", "cnn_qtt", "cnn_cifar"} <= set(options("model"))
    assert {"ry_cnot", "u3"} <= set(options("circuit"))
    assert {"shallow", "paper", "deep"} <= set(options("mapping"))
    assert {"adam", "adamw", "sgd"} <= set(options("optimizer"))
    assert {"none", "plateau"} <= set(options("scheduler"))
    assert {"ce", "kd"} <= set(options("loss"))
    assert {"lr_blocks_clip", "acc_vs_params", "ablation_grid", "shots"} <= set(options("sweep"))


@pytest.mark.parametrize("circuit", options("circuit"))
@pytest.mark.parametrize("mapping", options("mapping"))
def test_every_circuit_and_mapping_builds(circuit, mapping):
    cfg = cfg_with(f"circuit={circuit}", f"mapping={mapping}", "n_blocks=1")
    validate(cfg)
    with execution_whitelist(trusted_targets()):
        learner = build_learner(cfg)
    assert sum(v.numel() for v in learner.weights().values()) == 6690


@pytest.mark.parametrize("optimizer", options("optimizer"))
@pytest.mark.parametrize("scheduler", options("scheduler"))
def test_every_optimizer_and_scheduler_builds(optimizer, scheduler):
    cfg = cfg_with(f"optimizer={optimizer}", f"scheduler={scheduler}")
    params = [torch.nn.Parameter(torch.zeros(3))]
    with execution_whitelist(trusted_targets()):
        opt = instantiate(cfg.optimizer)(params)
        if cfg.scheduler:
            instantiate(cfg.scheduler)(opt)
    assert opt.param_groups[0]["lr"] == cfg.optimizer.lr


@pytest.mark.parametrize("model,dataset,weights", [("cnn_small", "mnist", 6676), ("cnn_qtt", "fashion_mnist", 6690), ("cnn_cifar", "cifar10", 285226)])
def test_models_follow_the_dataset_shape(model, dataset, weights):
    cfg = cfg_with(f"model={model}", f"dataset={dataset}", "mode=classical")
    with execution_whitelist(trusted_targets()):
        learner = build_learner(cfg)
    assert learner.n_weights == weights


def test_experiment_paper_mnist_composes():
    cfg = cfg_with("experiment=paper_mnist")
    assert (cfg.circuit.rotation, cfg.circuit.layout, cfg.mapping.activation) == ("U3", "ring", "none")
    assert cfg.optimizer.lr == 1e-4 and cfg.scheduler.patience == 5


@pytest.mark.parametrize("experiment,dataset,budget", [("mnist_1500", "MNIST", 1500), ("mnist_700", "MNIST", 700), ("fmnist_1500", "FashionMNIST", 1500), ("paper_mnist", "MNIST", 1500)])
def test_accuracy_experiments_keep_their_parameter_budget(experiment, dataset, budget):
    """The headline rows' budgets hold for QT and for every control that trains a generator."""
    counts = {}
    for variant in ("qt", "frozen", "classical_generator", "no_entanglement", "hashed"):
        cfg = cfg_with(f"experiment={experiment}", f"variant={variant}")
        assert cfg.dataset.name == dataset and cfg.model.channels == [8, 12]
        with execution_whitelist(trusted_targets()):
            counts[variant] = build_learner(cfg).param_table()["trainable_params"]
    assert counts["qt"] <= budget
    assert counts["classical_generator"] == counts["no_entanglement"] == counts["hashed"] == counts["qt"] > counts["frozen"]


@pytest.mark.parametrize("experiment,qt_experiment", [("small_1369", "mnist_1500"), ("small_697", "mnist_700")])
def test_the_small_networks_train_directly_within_qts_trainable_count(experiment, qt_experiment):
    """The equal-budget baselines: classical, at most the QT config's trainable count, trained as it is but for the lr."""
    cfg, qt_cfg = cfg_with(f"experiment={experiment}"), cfg_with(f"experiment={qt_experiment}")
    with execution_whitelist(trusted_targets()):
        small, qt = build_learner(cfg).param_table(), build_learner(qt_cfg).param_table()
    assert small["mode"] == "classical" and cfg.model.max_params == qt["trainable_params"] >= small["trainable_params"]
    assert small["trainable_params"] >= 0.9 * qt["trainable_params"]  # the widest of its shape: near the budget
    for key in ("epochs", "batch_size", "clip_norm"):
        assert cfg.trainer[key] == qt_cfg.trainer[key]
    assert cfg.dataset.name == qt_cfg.dataset.name and cfg.scheduler == qt_cfg.scheduler


@pytest.mark.parametrize("experiment,dataset", [("fmnist_large", "FashionMNIST"), ("mnist_large", "MNIST")])
def test_large_experiments_generate_a_large_target_within_the_small_targets_weight_count(experiment, dataset):
    """At least 100,000 target weights from at most 6,690 trainable parameters (cnn_qtt's weights), controls included."""
    counts = {}
    for variant in ("qt", "frozen", "classical_generator", "fixed_vector"):
        cfg = cfg_with(f"experiment={experiment}", f"variant={variant}")
        assert cfg.dataset.name == dataset and cfg.max_trainable_params == 6690
        with execution_whitelist(trusted_targets()):
            table = build_learner(cfg).param_table()
        assert table["target_weights"] >= 100_000
        counts[variant] = table["trainable_params"]
    assert counts["classical_generator"] == counts["qt"] <= 6690
    assert counts["frozen"] == counts["fixed_vector"] < counts["qt"]


@pytest.mark.parametrize("variant", ["classical_generator", "fixed_vector"])
def test_classical_controls_are_drawn_from_the_runs_seed(variant):
    """Each seed of a control is its own random generator; the same seed rebuilds the same one."""
    def generator(seed):
        cfg = cfg_with("experiment=mnist_700", f"variant={variant}", f"seed={seed}")
        torch.manual_seed(123)  # the global state must not matter: the control draws from the run's seed
        with execution_whitelist(trusted_targets()):
            learner = build_learner(cfg)
        return learner.circuit, learner.param_table()["trainable_params"]

    (a, params), (again, _), (b, _) = generator(0), generator(0), generator(1)
    assert torch.equal(a.features, again.features) and torch.equal(a.theta, again.theta)
    assert not torch.allclose(a.features, b.features) and not torch.allclose(a.theta, b.theta)
    assert torch.equal(a(), again()) and not torch.allclose(a(), b())
    assert a.theta.requires_grad == (variant == "classical_generator")
    mapping_only = variant == "fixed_vector"
    assert (params == 177) if mapping_only else (params == 697)  # mnist_700: mapping 177, circuit 520


def test_data_dir_env_override(monkeypatch):
    monkeypatch.setenv("QT_DATA_DIR", "/some/where")
    assert cfg_with("dataset=mnist").dataset.root == "/some/where"


@pytest.mark.parametrize(
    "override,message",
    [
        ("n_blocks=0", "n_blocks must be"),
        ("optimizer.lr=0", "optimizer.lr must be a number > 0"),
        ("trainer.batch_size=-5", "trainer.batch_size must be an integer >= 1"),
        ("trainer.epochs=0", "trainer.epochs"),
        ("trainer.clip_norm=-1", "clip_norm=null"),
        ("mode=quantum", "mode=qt or mode=classical"),
        ("trainer.device=tpu", "cpu, cuda or auto"),
    ],
)
def test_bad_values_are_clear(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(cfg_with(override))


def test_unknown_group_option_is_one_line():
    msg = check_group_options(["circuit=ry_cnot,u4"], CONF)
    assert msg == "unknown circuit 'u4': choose one of ry_cnot, u3 (files in conf/circuit/)"
    assert check_group_options(["circuit=u3", "n_blocks=3", "optimizer.lr=1e-3", "+experiment=paper_mnist"], CONF) is None


def test_code_defaults_are_the_default_configs():
    """Every class a default option builds has that option's values as its own defaults (one meaning),
    and TrainerConfig's defaults are the trainer group's."""
    import dataclasses

    from hydra.utils import get_class

    from qt.core.checks import REQUIRED, constructor_defaults
    from qt.training.state import TrainerConfig

    cfg = OmegaConf.to_container(cfg_with(), resolve=True)
    checked = []
    for group in ("dataset", "model", "circuit", "mapping", "optimizer", "loss", "scheduler"):
        node = dict(cfg[group])
        cls = get_class(node.pop("_target_"))
        node.pop("_partial_", None)
        if not cls.__module__.startswith("qt."):
            continue  # torch's optimizer: its defaults are torch's
        params = constructor_defaults(cls)  # the class's own defaults over its bases' (a subclass passing **common up)
        for key, value in node.items():
            if params.get(key, REQUIRED) is REQUIRED:
                continue
            block = getattr(cls, "SETTINGS_BLOCKS", {}).get(key)
            if block is not None:  # a settings block: None means its class's defaults
                assert params[key] is None and block.from_config(value) == block(), f"{group}.{key}"
            else:
                assert (list(params[key]) if isinstance(params[key], tuple) else params[key]) == value, f"{group}.{key}"
            checked.append(f"{group}.{key}")
    assert {"mapping.hidden", "mapping.scale", "circuit.layout", "model.channels", "circuit.noise", "circuit.spsa"} <= set(checked)
    trainer = {f.name: f.default for f in dataclasses.fields(TrainerConfig)}
    assert trainer == cfg["trainer"]


@pytest.mark.parametrize("group", ["circuit", "mapping"])
def test_every_option_states_exactly_its_constructors_settings_and_obeys_their_rules(group):
    """The typed statement of a circuit or mapping setting is its class's constructor (name, type, default) and its
    ``check_settings`` (range): every YAML option names each setting the constructor takes (so the command line
    overrides it without '+') and nothing else, a settings block exactly its fields, with values of the declared
    types that pass the class's rules. A setting added to, renamed in or dropped from a constructor fails here
    until every option says the same."""
    from dataclasses import fields

    from hydra.utils import get_class

    from qt.core.checks import constructor_defaults
    from qt.experiment.validation import check_class_node

    for option in options(group):
        raw = OmegaConf.load(CONF / group / f"{option}.yaml")
        node = OmegaConf.to_container(cfg_with(f"{group}={option}")[group], resolve=True)
        cls = get_class(node["_target_"])
        settings = [k for k in constructor_defaults(cls) if k not in cls.OWN_ARGUMENTS]
        assert sorted(k for k in node if not k.startswith("_")) == sorted(settings), f"{group}={option}"
        for key, block in cls.SETTINGS_BLOCKS.items():
            assert sorted(node[key]) == sorted(f.name for f in fields(block)), f"{group}={option}: {key}"
        check_class_node(node, group)  # types, from the constructor's hints
        cls.check_settings(node)  # ranges and choices, the constructor's own rules
        if group == "circuit":  # n_blocks has one home: the top-level key
            assert OmegaConf.is_interpolation(raw, "n_blocks") and raw._get_node("n_blocks")._value() == "${n_blocks}"


def test_the_block_count_has_one_home():
    validate(cfg_with("n_blocks=8"))
    validate(cfg_with("n_blocks=8", "circuit.n_blocks=8"))  # saying the same twice is not a conflict
    with pytest.raises(ConfigError, match=r"circuit.n_blocks=4 but n_blocks=16: set the block count as n_blocks=4"):
        validate(cfg_with("circuit.n_blocks=4"))


def test_rules_are_stated_once_in_the_classes():
    """validation.py applies the circuit's and the mapping's rules through their classes; it states none itself."""
    source = (ROOT / "qt" / "experiment" / "validation.py").read_text()
    for rule in ("check_blocks(", "check_gradient(", "NoiseModel", "SPSASettings", "mapping.chunk'", "mapping.hidden'", "circuit.init_scale'",
                 'mapping.chunk"', 'mapping.hidden"', 'circuit.init_scale"'):  # fmt: skip
        assert rule not in source, rule
    with pytest.raises(ConfigError, match="mapping.chunk must be an integer >= 1"):
        validate(cfg_with("mapping.chunk=0"))
    with pytest.raises(ConfigError, match="mapping.bond_dim must be an integer >= 1"):
        validate(cfg_with("mapping=mps", "mapping.bond_dim=0"))
    with pytest.raises(ConfigError, match="circuit.freeze must be true or false"):
        validate(cfg_with("circuit.freeze=2"))


def test_paper_experiments_compose_to_the_authors_settings():
    """Every point of the authors' MNIST notebook (see conf/experiment/paper_mnist.yaml), and FashionMNIST alike."""
    for experiment, dataset, subset in (("paper_mnist", "MNIST", 1000), ("paper_fmnist", "FashionMNIST", None)):
        cfg = cfg_with(f"experiment={experiment}")
        assert cfg.dataset.name == dataset and list(cfg.dataset.mean) == [0.5] and list(cfg.dataset.std) == [0.5]
        assert cfg.dataset.val_fraction == 0 and cfg.objective == "train_loss" and cfg.trainer.test_subset == subset
        assert (cfg.model.channels, cfg.model.kernel_size, cfg.model.hidden, cfg.model.activation) == ([8, 12], 5, [20], "none")
        c = cfg.circuit
        assert (c.rotation, c.entangler, c.layout, c.n_blocks, c.shots, c.freeze) == ("U3", "CU3", "ring", 16, None, False)
        m = cfg.mapping
        assert (m.hidden, m.activation, m.chunk, m.signed_bits, m.center, m.scale) == ([4, 20, 4], "none", 1, True, True, "none")
        assert (m.rescale, m.gamma, m.beta, m.alpha) == (True, 0.1, 0.8, 0.3)
        o = cfg.optimizer
        assert (o._target_, o.lr, o.weight_decay, o.eps) == ("torch.optim.Adam", 1e-4, 1e-5, 1e-6)
        s = cfg.scheduler
        assert (s._target_, s.mode, s.factor, s.patience) == ("torch.optim.lr_scheduler.ReduceLROnPlateau", "min", 0.5, 5)
        t = cfg.trainer
        assert (t.batch_size, t.epochs, t.clip_norm) == (128, 50, None) and cfg.loss._target_ == "qt.training.losses.CrossEntropy"
        with execution_whitelist(trusted_targets()):
            table = build_learner(cfg).param_table()
        assert (table["n_qubits"], table["qnn_params"], table["mapping_params"]) == (13, 1248, 249)  # the notebook's printout


def test_paper_generation_is_the_authors_formula():
    """Weights = centred(mapping([bits in {-1,+1}, x])), x = centred((0.8 tanh(0.1 2^(n-1) p))^0.3): the authors' util.py."""
    cfg = cfg_with("experiment=paper_mnist", "n_blocks=2")
    with execution_whitelist(trusted_targets()):
        learner = build_learner(cfg)
    with torch.no_grad():
        got = torch.cat([w.reshape(-1) for w in learner.weights().values()])
        m, n = learner.n_weights, learner.n_qubits
        p = learner.circuit()[:m]
        x = (0.8 * torch.tanh(0.1 * 2 ** (n - 1) * p)) ** 0.3
        x = x - x.mean()
        bits = torch.cartesian_prod(*[torch.tensor([-1.0, 1.0])] * n)[:m]  # first wire most significant, as theirs
        h = torch.cat([bits, x[:, None]], dim=1)
        for layer in learner.mapping.mlp.net:
            assert isinstance(layer, torch.nn.Linear)  # linear: no activation between the layers
            h = layer(h)
        want = (h - h.mean()).reshape(-1)
    assert torch.allclose(got, want, atol=1e-5)
    assert not any(isinstance(mod, torch.nn.ReLU) for mod in learner.target.modules())  # their target: no activation


def test_without_a_validation_split_the_last_epoch_is_kept_and_plateau_follows_the_training_loss(tmp_path, monkeypatch):
    seen = []
    step = torch.optim.lr_scheduler.ReduceLROnPlateau.step
    monkeypatch.setattr(torch.optim.lr_scheduler.ReduceLROnPlateau, "step", lambda self, metrics: (seen.append(metrics), step(self, metrics))[1])
    cfg = cfg_with("n_blocks=2", "dataset.val_fraction=0", "objective=train_loss", "scheduler=plateau", "trainer.epochs=2",
                   "trainer.limit_train_batches=3", "trainer.batch_size=32", "trainer.test_subset=50", "trainer.progress=false")
    with trusted():
        run(cfg, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert summary["status"] == "completed" and summary["data_sizes"]["val"] == 0
    assert summary["best_val_acc"] is None and summary["val_loss"] is None and summary["best_epoch"] == 2
    assert 0 <= summary["test_subset_acc"] <= 1 and summary["train_acc"] is not None
    assert [r["val_loss"] for r in rows] == ["", ""]
    assert seen == pytest.approx([float(r["train_loss"]) for r in rows])
