"""qt leaves what it touches as it found it: modes, environment, warning filters, figures, files; and reads untrusted files as data only."""

import io
import os
import pickle
import warnings

import pytest
import torch
from torch import nn

from qt.errors import DataError, QTError
from qt.training.callbacks import ProgressBar
from qt.training.data import ArraysOnly, DataSplits, Split
from qt.training.evaluation import evaluate
from qt.training.loop import Trainer
from qt.training.state import Diverged, TrainerConfig


def tiny_data(n: int = 16, val: int = 8) -> DataSplits:
    x, y = torch.randn(n, 1, 4, 4), torch.randint(0, 3, (n,))
    return DataSplits(Split(x, y), Split(x[:val], y[:val]), Split(x, y), 3, "tiny")


def test_evaluate_restores_the_mode_it_found():
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.Dropout(0.5))
    for mode in (True, False):
        net.train(mode)
        evaluate(net, tiny_data().test, 4)
        assert net.training is mode


def test_the_teacher_of_a_run_without_validation_has_no_val_accuracy():
    from qt.experiment.run import describe_teacher

    class KD(nn.Module):
        teacher, source = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), "a teacher"

    info = describe_teacher(KD(), tiny_data(val=0), 8, torch.device("cpu"))
    assert info["val_acc"] is None and 0 <= info["test_acc"] <= 1


def test_the_progress_bar_is_closed_when_training_diverges():
    class Nan(nn.Module):
        def forward(self, logits, y):
            return logits.sum() * float("nan")

    bar = ProgressBar(enabled=True)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    trainer = Trainer(model_learner(model), tiny_data(), lambda p: torch.optim.SGD(p, lr=0.1), cfg=TrainerConfig(batch_size=4),
                      loss_fn=Nan(), callbacks=[bar])  # fmt: skip
    with pytest.raises(Diverged):
        trainer.fit()
    assert bar.bar is None


def model_learner(model):
    from qt.core.learners import ClassicalLearner

    return ClassicalLearner(model)


def test_a_figure_that_cannot_be_saved_is_closed(tmp_path):
    from qt.results.plots import plot_curves, pyplot

    plt = pyplot()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rows = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "train_acc": 0.5, "val_acc": 0.5}]
    with pytest.raises(OSError):
        plot_curves(blocker, rows)  # blocker/curves.png cannot be written
    assert plt.get_fignums() == []


def test_the_benchmark_writes_no_temporary_folders(tmp_path, monkeypatch):
    import tempfile

    from qt.tools.bench import recipe_learner, train_step_fn

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    train_step_fn(recipe_learner(["n_blocks=1", "mapping.hidden=[4]"]), 8)()
    assert list(tmp_path.iterdir()) == []


def test_the_mlflow_logger_leaves_the_environment_as_it_found_it(tmp_path, monkeypatch):
    """Its request limits hold during its own calls only; a value the user exported is never replaced."""
    pytest.importorskip("mlflow")
    from qt.training.loggers import MLflowLogger, RunInfo

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")
    logger = MLflowLogger(tracking_uri=f"sqlite:///{tmp_path}/m.db", experiment_name="e")
    logger.start(RunInfo(tmp_path, {"a": 1}, None, "job"), [])
    logger.log_epoch({"epoch": 1, "train_loss": 1.0})
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ and os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "7"


def test_the_report_leaves_the_warning_filters_as_it_found_them(tmp_path):
    import optuna

    from qt.analysis.report import study_plots

    storage = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="s", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_float("y", 0, 1), n_trials=3)
    before = list(warnings.filters)
    plots = study_plots([tmp_path / "s.db"])
    assert plots and list(warnings.filters) == before


def test_an_unreadable_checkpoint_says_why(tmp_path):
    from qt.results.schema import load_checkpoint

    bad = tmp_path / "last.pt"
    torch.save({"state": 1}, bad)
    bad.write_bytes(bad.read_bytes()[:40])  # cut short
    with pytest.raises(QTError) as e:
        load_checkpoint(bad)
    kind, said = str(e.value).split("(", 1)[1].split(":", 1)
    assert kind in ("RuntimeError", "EOFError", "KeyError") and said.split(")")[0].strip()  # torch's own words kept


def test_the_cifar_reader_unpickles_arrays_only():
    import numpy as np

    good = pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 2]}, protocol=2)
    assert ArraysOnly(io.BytesIO(good), encoding="latin1").load()["data"].shape == (2, 3072)

    class Code:
        def __reduce__(self):
            return (os.system, ("echo this must never run",))

    with pytest.raises(DataError, match="never does"):
        ArraysOnly(io.BytesIO(pickle.dumps({"data": Code()})), encoding="latin1").load()


def test_the_memory_guard_counts_parameters_gradients_and_optimizer_state():
    from qt.core.targets import SimpleCNN
    from qt.experiment.config import compose_config
    from qt.experiment.memory import estimate_bytes

    cpu = torch.device("cpu")
    target = SimpleCNN()
    huge = estimate_bytes(compose_config(["mapping.chunk=100000000"]), target, 2000, cpu)
    # the mapping's last layer: 20 x 1e8 weights, with gradient and Adam's two moments, 4 bytes each
    assert huge["mapping parameters"] >= 4 * 20 * 10**8 * 4 and sum(huge.values()) > 30 * 2**30
    adam = estimate_bytes(compose_config(["mode=classical"]), target, 2000, cpu)
    sgd = estimate_bytes(compose_config(["mode=classical", "optimizer=sgd", "optimizer.lr=0.1", "optimizer.momentum=0"]), target, 2000, cpu)
    assert adam["target weights"] == 4 * 6690 * 4 and sgd["target weights"] == 4 * 6690 * 2
    blocks = estimate_bytes(compose_config(["n_blocks=1000000000"]), target, 2000, cpu)
    assert blocks["circuit angles"] > 100 * 2**30  # 13e9 angles: refused before any is allocated
