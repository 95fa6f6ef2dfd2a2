"""Initialisation through the CLI: QT leaves chance within the first epoch, a bad start is visible at step 0."""

import csv

import pytest

from qt.analysis.runs import load_runs
from tests.helpers import LN10, TINY, run_train, summary


@pytest.mark.parametrize("circuit", ["ry_cnot", "u3"])
def test_qt_leaves_chance_within_the_first_epoch(tmp_path, circuit):
    """The embedded default, one full epoch (25 steps): the mean train loss falls below the first step's and validation beats chance clearly."""
    run_dir = tmp_path / "run"
    proc = run_train(run_dir, f"circuit={circuit}", "trainer.epochs=3", "trainer.limit_train_batches=25", "trainer.threads=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = summary(run_dir)
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    first = s["init"]["first_step_loss"]
    assert abs(first - LN10) < 0.3
    assert all(float(r["train_loss"]) < first for r in rows)
    assert float(rows[0]["val_acc"]) > 0.25  # chance is 0.10


def test_the_large_chunked_target_learns(tmp_path):
    """222,986 weights from 14 qubits (chunk 16): at chance for 5 epochs with the earlier scale, now learning in its first epochs."""
    run_dir = tmp_path / "run"
    proc = run_train(run_dir, "model=cnn_cifar", "mapping.chunk=16", "n_blocks=8", "trainer.epochs=3", "trainer.threads=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert float(rows[-1]["val_acc"]) > 0.3 and float(rows[-1]["train_loss"]) < 2.0


def test_a_bad_start_is_visible_at_step_zero(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_train(run_dir, *TINY, "mapping.scale=tensor")
    assert proc.returncode == 0, proc.stderr[-3000:]
    init = summary(run_dir)["init"]
    assert init["chance_loss"] == pytest.approx(LN10) and init["first_step_loss"] > 2 * LN10
    assert init["tensors"]["classifier.1.weight"]["std_ratio"] > 2
    log = (run_dir / "train.log").read_text()
    assert "weight std / default-init std" in log and "x chance" in log
    assert load_runs(run_dir)["first_step_loss"].iloc[0] == pytest.approx(init["first_step_loss"])  # what reports read
