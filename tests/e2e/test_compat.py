"""A run written before the package restructure resumes to what its own qt trained."""

import csv

import pytest

from tests.helpers import FIXTURES, run_train, summary


SAME = ["model=cnn_small", "model.channels=[2,4]", "model.hidden=[8]", "trainer.limit_train_batches=40", "trainer.batch_size=32",
        "trainer.threads=1", "trainer.checkpoint_every=0"]  # fmt: skip


def test_a_run_from_before_the_restructure_resumes_to_what_its_own_qt_trained(old_runs):
    run_dir = old_runs / "2cc19cc_qt"
    proc = run_train(run_dir, "n_blocks=1", "trainer.epochs=2", *SAME)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert summary(run_dir)["epochs_completed"] == 2
    ours = list(csv.DictReader(open(run_dir / "metrics.csv")))
    theirs = list(csv.DictReader(open(FIXTURES / "2cc19cc_qt" / "continued_to_2_epochs_by_2cc19cc.csv")))
    assert [r["step"] for r in ours] == [r["step"] for r in theirs] == ["40", "80"]
    for r_ours, r_theirs in zip(ours, theirs):
        for key in ("train_loss", "val_loss", "val_acc", "train_acc", "lr"):
            assert float(r_ours[key]) == pytest.approx(float(r_theirs[key]), rel=1e-5), key
    # the first run's config differs from today's defaults in meaning (scheduler, lr, scale): refused, run dir untouched
    first = old_runs / "b8d8b52_qt"
    before = {p: p.read_bytes() for p in first.rglob("*") if p.is_file()}
    proc = run_train(first, "n_blocks=1", "trainer.epochs=2", *SAME)
    assert proc.returncode == 2 and "holds a run with a different config" in proc.stderr
    assert {p: p.read_bytes() for p in before} == before  # every file of the old run as it was (Hydra adds train.log)
