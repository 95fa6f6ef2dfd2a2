"""qt as a library, in-process: QuantumTrain in a plain PyTorch loop, fit() without Hydra, builders without a whitelist."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qt import QuantumTrain, fit
from qt.core.targets import SimpleCNN
from qt.errors import ConfigError
from qt.training.data import DataSplits, Mnist5k, Split


@pytest.fixture(scope="module")
def digits():
    """The embedded digits, 1,024 random training images (the split is ordered by class)."""
    torch.set_num_threads(1)
    data = Mnist5k(shape=[1, 28, 28], num_classes=10, mean=[0.1307], std=[0.3081], val_fraction=0.2, split_seed=0).load()
    pick = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:1024]
    return DataSplits(Split(data.train.x[pick], data.train.y[pick]), data.val, data.test, 10, "digits")


def test_quantum_train_learns_in_a_plain_pytorch_loop_and_exports_a_plain_network(digits):
    torch.manual_seed(0)
    model = QuantumTrain(SimpleCNN(channels=[4, 8], hidden=[16]), n_blocks=4)
    assert isinstance(model, nn.Module) and model.n_qubits == 12
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == model.param_table()["trainable_params"] < model.n_weights
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    x, y = digits.train.x, digits.train.y
    losses = []
    for epoch in range(2):
        for i in range(0, 1024, 64):
            loss = F.cross_entropy(model(x[i : i + 64]), y[i : i + 64])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    model.eval()
    with torch.no_grad():
        logits = model(digits.test.x)
    accuracy = float((logits.argmax(1) == digits.test.y).float().mean())
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.2 and accuracy > 0.25  # it learns (chance: 0.1; measured 0.37-0.46)

    network = model.export()
    assert type(network) is SimpleCNN and not any(isinstance(m, QuantumTrain) for m in network.modules())
    with torch.no_grad():
        assert torch.equal(network.eval()(digits.test.x), logits)  # the export is the generated network


def test_fit_trains_without_hydra_and_keeps_the_best_epoch(digits, tmp_path):
    torch.manual_seed(0)
    model = QuantumTrain(SimpleCNN(channels=[4, 8], hidden=[16]), n_blocks=2, circuit="u3", mapping={"hidden": [8]})
    assert model.circuit.ansatz.n_params == 2 * 12 * 3 * 2  # U3 + CU3 (3 angles each) on 12 qubits, 2 blocks
    data = ((digits.train.x, digits.train.y), (digits.val.x, digits.val.y), (digits.test.x, digits.test.y))
    out = fit(model, data, epochs=3, lr=1e-2, batch_size=64, run_dir=tmp_path / "run")
    assert [r["epoch"] for r in out["rows"]] == [1, 2, 3] and out["test_acc"] > 0.25  # measured 0.37-0.46
    best = max(out["rows"], key=lambda r: r["val_acc"])
    assert out["best_epoch"] == best["epoch"] and out["best_val_acc"] == pytest.approx(best["val_acc"])
    assert {"metrics.csv", "curves.png", "checkpoints"} <= {p.name for p in (tmp_path / "run").iterdir()}
    again = fit(model, data, epochs=3, lr=1e-2, batch_size=64, run_dir=tmp_path / "run")  # resumes: nothing left to train
    assert again["steps"] == out["steps"] and again["test_acc"] == out["test_acc"]
    with pytest.raises(ConfigError, match="batchsize"):
        fit(model, data, batchsize=3)
    with pytest.raises(ConfigError, match="unknown circuit 'u4'"):
        QuantumTrain(SimpleCNN(), circuit="u4")


def test_fit_trains_a_classical_network_directly(digits):
    torch.manual_seed(0)
    net = SimpleCNN(channels=[4, 8], hidden=[16])
    data = ((digits.train.x, digits.train.y), None, (digits.test.x, digits.test.y))
    out = fit(net, data, epochs=2, batch_size=32)
    assert out["best_val_acc"] is None and out["best_epoch"] == 2 and out["test_acc"] > 0.45  # measured 0.65-0.77


def test_the_builders_need_no_whitelist_from_their_caller():
    """Building a run's objects from Python warns about nothing (Hydra's execution-whitelist deprecation included)."""
    import warnings

    from qt.experiment.build import build_data, build_learner, build_loggers, build_optimization
    from qt.experiment.config import compose_config

    cfg = compose_config(["n_blocks=1", "logger=tensorboard"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # DeprecationWarning too, which setup.cfg's pytest filter otherwise hides
        learner = build_learner(cfg)
        opt = build_optimization(cfg)
        opt.scheduler(opt.optimizer(learner.trainable_parameters()))
        build_loggers(cfg)
        assert len(build_data(cfg).test) == 1000
