"""Knowledge distillation and finite-shot training through the CLI."""

import math

import pytest

from tests.helpers import TINY, run_train, summary


@pytest.fixture(scope="module")
def classical_teacher(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    proc = run_train(run_dir, "mode=classical", "trainer.epochs=1", "trainer.threads=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


@pytest.mark.parametrize("mode", ["qt", "classical"])
def test_kd_end_to_end_records_the_teacher(tmp_path, classical_teacher, mode):
    run_dir = tmp_path / "student"
    proc = run_train(run_dir, *TINY, f"mode={mode}", "loss=kd", f"loss.teacher={classical_teacher}", "model=cnn_small")
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = summary(run_dir)
    teacher_acc = summary(classical_teacher)["test_acc"]
    assert s["status"] == "completed" and s["teacher"]["test_acc"] == pytest.approx(teacher_acc)
    assert s["teacher"]["params"] == 6690 and s["config"]["loss"]["alpha"] == 0.9


def test_kd_without_teacher_is_a_one_line_error(tmp_path):
    proc = run_train(tmp_path / "r", *TINY, "loss=kd")
    assert proc.returncode == 2 and "loss.teacher" in proc.stderr.strip().splitlines()[-1]


def test_training_with_shots_end_to_end(tmp_path):
    """Shots change what training sees (same seed, exact vs 1,000 and 10 shots), never what evaluation sees."""
    runs = {}
    for shots in ("null", "1000", "10"):
        run_dir = tmp_path / shots
        proc = run_train(run_dir, *TINY, f"circuit.shots={shots}")
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[shots] = summary(run_dir)
        assert runs[shots]["status"] == "completed" and math.isfinite(runs[shots]["test_loss"])
    assert runs["1000"]["config"]["circuit"]["shots"] == 1000
    first = {k: r["init"]["first_step_loss"] for k, r in runs.items()}
    assert first["null"] != first["1000"] != first["10"]  # the first step already sees sampled probabilities
    # 10 shots per step are far noisier than 1,000: their first-step loss is further from the exact one
    assert abs(first["10"] - first["null"]) > abs(first["1000"] - first["null"])
