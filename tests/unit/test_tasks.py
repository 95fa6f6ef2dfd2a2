"""The task group (qt.training.tasks): sequences beside classification, which stays as it was."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qt.core.targets import LSTMRegressor, count_weights
from qt.errors import ConfigError
from qt.experiment.build import build_data, build_learner, build_task
from qt.experiment.config import compose_config
from qt.experiment.validation import validate
from qt.results.compat import upgrade
from qt.results.objectives import epoch_objective
from qt.results.schema import SUMMARY_KEYS, TASK_SUMMARY_KEYS, write_summary
from qt.training.data import Split
from qt.training.evaluation import measure, predict
from qt.training.series import StatsmodelsSeries, Wave
from qt.training.tasks import Classification, Sequence

pytestmark = pytest.mark.unit

NOTEBOOK_NAMES = ["lstm1.weight_ih_l0", "lstm1.weight_hh_l0", "lstm1.bias_ih_l0", "lstm1.bias_hh_l0", "lstm2.weight_ih_l0",
                  "lstm2.weight_hh_l0", "lstm2.bias_ih_l0", "lstm2.bias_hh_l0", "fc.weight", "fc.bias"]  # fmt: skip


def test_the_lstm_target_is_the_notebooks_network():
    net = LSTMRegressor(input_size=1, hidden=50, layers=2, output_size=1)
    assert count_weights(net) == 31051 and [n for n, _ in net.named_parameters()] == NOTEBOOK_NAMES  # its printout
    assert net(torch.zeros(3, 7, 1)).shape == (3, 7, 1)
    dropped = LSTMRegressor(dropout=0.2)
    assert count_weights(dropped) == 31051 and isinstance(dropped.dropout1, nn.Dropout)


def test_every_lstm_weight_trains_under_qt():
    """Through the functional forward every generated LSTM tensor gets a gradient (the notebook's .data.copy_ gives
    them none: only fc trains through QT there), and so do the circuit and the mapping."""
    cfg = compose_config(["task=sequence", "dataset=sunspots", "n_blocks=2"])
    learner = build_learner(cfg)
    data = build_data(cfg)
    weights = learner.weights()
    for w in weights.values():
        w.retain_grad()
    out = learner(data.train.x[:8], weights)
    F.mse_loss(out, data.train.y[:8]).backward()
    assert set(weights) == set(NOTEBOOK_NAMES) and learner.n_qubits == 15
    assert all(float(w.grad.abs().sum()) > 0 for w in weights.values()), [n for n, w in weights.items() if not float(w.grad.abs().sum())]
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in learner.trainable_parameters())
    copied = build_learner(compose_config(["task=sequence", "dataset=sunspots", "n_blocks=2", "cut_gradient=[lstm1,lstm2]"]))
    weights = copied.weights()  # the notebook's .data.copy_: the LSTM tensors' values, no gradient; fc's trains
    assert [n for n, w in weights.items() if w.requires_grad] == ["fc.weight", "fc.bias"]
    F.mse_loss(copied(data.train.x[:8], weights), data.train.y[:8]).backward()
    assert all(float(p.grad.abs().sum()) > 0 for p in copied.circuit.parameters())  # through fc alone
    with pytest.raises(ConfigError, match="cut_gradient names 'lstm3'"):
        build_learner(compose_config(["task=sequence", "dataset=sunspots", "n_blocks=2", "cut_gradient=[lstm3]"]))
    with pytest.raises(ConfigError, match="needs mode=qt"):
        validate(compose_config(["task=sequence", "mode=classical", "cut_gradient=[lstm1]"]))


def test_the_wave_is_the_notebooks_and_windows_predict_the_next_value():
    wave = Wave(window=100, shape=[100, 1], val_fraction=0.1, test_fraction=0.1, scale="all")
    v = wave.values()
    x = np.linspace(0, 10 * np.pi, 100)
    assert v.shape == (100_000, 1) and np.allclose(v[:100, 0], (0.64 * np.sin(x) ** 2 + np.cos(x) + 0.3 * np.sin(x) ** 3) * np.exp(-3))
    data = wave.load()
    assert data.sizes() == {"train": 79_900, "val": 9_900, "test": 9_900}
    assert torch.equal(data.train.x[0, 1:], data.train.y[0, :-1]) and torch.equal(data.train.x[1, :-1], data.train.x[0, 1:])
    scaled = 2 * (v - v.min()) / (v.max() - v.min()) - 1  # the notebook's MinMaxScaler((-1, 1)) on the whole series
    assert np.allclose(data.test.y[-1, :, 0].numpy(), scaled[-100:, 0], atol=1e-6)


def test_a_real_series_splits_in_time_order_scaled_by_its_training_part():
    series = StatsmodelsSeries(series="sunspots", window=20, shape=[20, 1], val_fraction=0.15, test_fraction=0.15, scale="train")
    v = series.values()[:, 0]
    assert len(v) == 309  # yearly, 1700-2008
    val_at, test_at = series.bounds(len(v))
    data = series.load()
    assert data.sizes() == {"train": val_at - 20, "val": test_at - val_at - 20, "test": len(v) - test_at - 20}
    lo, hi = v[:val_at].min(), v[:val_at].max()
    unscale = lambda t: (t.double().numpy() + 1) / 2 * (hi - lo) + lo  # noqa: E731
    assert float(data.train.x.min()) == -1 and float(torch.cat([data.train.x, data.train.y]).max()) == pytest.approx(1)
    assert np.allclose(unscale(data.test.y[-1, :, 0]), v[-20:], atol=1e-3)  # the test part is the series' end
    assert np.allclose(unscale(data.val.x[0, :, 0]), v[val_at : val_at + 20], atol=1e-3)  # val starts where train ends
    with pytest.raises(ConfigError, match="dataset.shape"):
        StatsmodelsSeries(series="sunspots", window=20, shape=[28, 28])
    with pytest.raises(ConfigError, match="dataset.series"):
        StatsmodelsSeries(series="nile_river", window=20, shape=[20, 1])


def test_sequence_metrics_and_classification_unchanged():
    torch.manual_seed(0)
    out, y = torch.randn(6, 5, 1), torch.randn(6, 5, 1)
    loss, metrics, kept = measure(nn.Identity(), Split(out, y), 4, Sequence())
    assert loss == pytest.approx(float(F.mse_loss(out, y)), rel=1e-6) and kept is None
    assert metrics["mse"] == pytest.approx(float(F.mse_loss(out, y)), rel=1e-6)
    assert metrics["mae"] == pytest.approx(float((out - y).abs().mean()), rel=1e-6)
    logits, labels = torch.randn(9, 10), torch.randint(0, 10, (9,))
    loss, acc, predicted = predict(nn.Identity(), Split(logits, labels), 4)  # as evaluate computed it before tasks
    assert loss == sum(float(F.cross_entropy(logits[i : i + 4], labels[i : i + 4], reduction="sum")) for i in range(0, 9, 4)) / 9
    assert acc == int((logits.argmax(1) == labels).sum()) / 9 and torch.equal(predicted, logits.argmax(1))
    assert Sequence().chance(type("D", (), {"train": Split(out, y)})())[0] == pytest.approx(float(y.var(unbiased=False)))
    assert Classification().chance(type("D", (), {"num_classes": 10})())[0] == math.log(10)


def test_task_sequence_alone_is_a_complete_run_and_wrong_pairs_are_refused():
    cfg = compose_config(["task=sequence"])
    validate(cfg)
    assert (cfg.dataset._target_, cfg.model._target_, cfg.loss._target_, cfg.objective) == (
        "qt.training.series.Wave", "qt.core.targets.LSTMRegressor", "qt.training.losses.MSE", "best_val_mse")
    assert isinstance(build_task(cfg), Sequence) and isinstance(build_task(compose_config([])), Classification)
    assert compose_config(["task=sequence", "loss=mse", "dataset=sunspots"]).dataset.series == "sunspots"
    refused = {
        ("task=sequence", "dataset=mnist_5k"): "is data for task=classification, not task=sequence",
        ("dataset=wave",): "is data for task=sequence, not task=classification",
        ("task=sequence", "loss=ce"): "does not train task=sequence",
        ("task=sequence", "objective=best_val_acc"): "use objective=best_val_mse",
        ("task=sequence", "trainer.test_subset=100"): "trainer.test_subset",
        ("task=sequence", "model=cnn_qtt"): "not made for this dataset's task",
    }
    for overrides, message in refused.items():
        with pytest.raises(ConfigError, match=message):
            validate(compose_config(list(overrides)))


def test_results_schema_and_objectives_for_sequences(tmp_path):
    keys = TASK_SUMMARY_KEYS["sequence"]
    assert keys == ["best_val_mse", "val_mae", "test_mse", "test_mae", "train_mse", "train_mae"]
    write_summary(tmp_path, {"status": "completed", "best_val_mse": 0.1, "test_mse": 0.2})
    import json

    written = json.loads((tmp_path / "summary.json").read_text())
    assert list(written) == SUMMARY_KEYS + keys and written["test_mse"] == 0.2 and written["test_acc"] is None
    with pytest.raises(KeyError):
        write_summary(tmp_path, {"test_rmse": 1.0})
    rows = [{"val_mse": 0.3, "val_loss": 0.3}, {"val_mse": 0.1, "val_loss": 0.1}, {"val_mse": 0.2, "val_loss": 0.2}]
    assert epoch_objective(rows, "best_val_mse") == 0.1 and epoch_objective(rows, "val_loss") == 0.1  # the kept epoch's


def test_a_run_from_before_tasks_is_a_classification_run():
    assert upgrade({"mode": "qt"})["task"] == {"_target_": "qt.training.tasks.Classification"}


# -- task=rl ------------------------------------------------------------------------------------------------------
def balance(x):
    """A hand controller that keeps CartPole up: push towards the side the pole falls to."""
    lean = x[:, 2] + 0.5 * x[:, 3]
    return torch.stack([-lean, lean], 1) * 10


def test_qtrl_cartpole_is_the_papers_setup_and_its_episodes_end_by_the_rule_asked():
    from qt.training.rl import Environment

    cfg = compose_config(["experiment=qtrl_cartpole"])
    validate(cfg)
    table = build_learner(cfg).param_table()
    assert (table["target_weights"], table["n_qubits"], table["qnn_params"], table["mapping_params"], table["trainable_params"]) == (898, 10, 300, 351, 651)
    assert build_learner(compose_config(["experiment=qtrl_cartpole", "variant=classical"])).param_table()["trainable_params"] == 898
    assert build_learner(compose_config(["task=rl", "dataset=minigrid_empty_5x5", "model.hidden=[32]"])).n_weights == 4835
    lengths = {rule: len(Environment("CartPole-v1", [4], 2, truncation=rule, max_steps=1000).play(balance, 3, greedy=True))
               for rule in ("standard", "faithful")}  # fmt: skip
    assert lengths == {"standard": 500, "faithful": 1000}  # gymnasium's truncation; QTRL's loop, which ignores it
    env = Environment("CartPole-v1", [4], 2)
    a, b = env.play(lambda x: torch.zeros(len(x), 2), 11), env.play(lambda x: torch.zeros(len(x), 2), 11)
    assert torch.equal(a.observations, b.observations) and torch.equal(a.actions, b.actions)  # an episode is its seed's


def test_one_batched_forward_gives_the_notebooks_per_step_reinforce_gradient():
    """QTRL's notebook runs the QT policy at every step and sums -log pi(a_t|s_t) G_t; qt plays the episode without
    gradient and recomputes the log-probabilities in one forward: the same loss and gradient."""
    from qt.training.rl import discounted, normalised
    from qt.training.tasks import ReinforcementLearning

    cfg = compose_config(["experiment=qtrl_cartpole"])
    learner, env = build_learner(cfg), build_data(cfg)
    trainer = type("T", (), {"data": env, "learner": learner, "device": torch.device("cpu"), "cfg": type("C", (), {"seed": 5})(),
                             "state": type("S", (), {"epoch": 0})()})()  # fmt: skip
    task = ReinforcementLearning()
    loss, sums = task.step(trainer, 0, learner.weights())
    grads = torch.autograd.grad(loss, learner.trainable_parameters())
    from qt.training.rl import episode_seed

    episode = env.play(lambda x: learner(x, {k: v.detach() for k, v in learner.weights().items()}), episode_seed(5, 0))
    returns = normalised(discounted(episode.rewards, 0.99), 1e-8)
    per_step = [-torch.log_softmax(learner(o[None]), -1)[0, a] * r for o, a, r in zip(episode.observations, episode.actions, returns.float())]
    theirs = torch.stack(per_step).sum()  # a fresh weight generation at every step, as the notebook
    assert float(loss) == pytest.approx(float(theirs), rel=1e-5) and sums == {"return": episode.total, "length": len(episode), "count": 1}
    for ours, ref in zip(grads, torch.autograd.grad(theirs, learner.trainable_parameters())):
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)


def test_solved_episode_advantages_and_refusals():
    from qt.training.rl import gae
    from qt.training.tasks import ReinforcementLearning

    task = ReinforcementLearning(window=3)
    task.returns = [1, 2, 3, 10, 10, 10, 1]
    assert task.solved_episode(10) == 6 and task.solved_episode(11) is None and task.solved_episode(None) is None
    rewards, values = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64), torch.tensor([0.5, 0.2, 0.1], dtype=torch.float64)
    # lambda 1: the advantage is the discounted return minus the value
    assert torch.allclose(gae(rewards, values, 0.0, 0.9, 1.0), torch.tensor([1 + 0.81 * 2, 1.8, 2.0], dtype=torch.float64) - values)
    for overrides, message in {("task=rl", "dataset=mnist_5k"): "is data for task=classification, not task=rl",
                               ("dataset=cartpole",): "is data for task=rl, not task=classification",
                               ("task=rl", "task.algorithm=ppo"): "task.algorithm",
                               ("task=rl", "objective=best_val_mse"): "use objective=best_val_return"}.items():  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            cfg = compose_config(list(overrides))
            validate(cfg)
            build_task(cfg)
    assert "loss" not in upgrade({"mode": "qt", "task": {"_target_": "qt.training.tasks.ReinforcementLearning"}})  # no group on purpose


def test_the_experiment_check_composes_a_tasks_keys_beside_a_group_choice():
    from qt.experiment.config import experiment_conflict

    assert experiment_conflict("qtrl_cartpole", ["experiment=qtrl_cartpole", "variant=classical", "task.episodes_per_epoch=5"]) is None
    assert experiment_conflict("ablation", ["experiment=ablation", "circuit=u3", "variant=frozen"]) is None
    assert "optimizer.lr" in experiment_conflict("qtrl_cartpole", ["experiment=qtrl_cartpole", "optimizer=sgd"])
