"""What a user types, the files qt writes and what README says agree, end to end: resume, refusals, teachers, budgets."""

import csv
import os
import pickle

import pytest
import torch

from qt.analysis.runs import load_runs
from tests.helpers import TINY, run_train, summary


def metrics(run_dir):
    return list(csv.DictReader(open(run_dir / "metrics.csv")))


def test_raising_epochs_continues_a_completed_run_on_the_cosine_of_the_new_total(tmp_path):
    run_dir = tmp_path / "run"
    assert run_train(run_dir, *TINY).returncode == 0  # the default config: cosine over 1 epoch
    first = metrics(run_dir)
    proc = run_train(run_dir, *TINY, "trainer.epochs=3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "continuing the completed 1-epoch run to 3 epochs" in proc.stdout
    rows = metrics(run_dir)
    assert rows[0] == first[0] and [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert summary(run_dir)["epochs_completed"] == 3 and summary(run_dir)["status"] == "completed"
    # epochs 2 and 3 run at the lr a 3-epoch run has there: 1e-2 * (1 + cos(pi e / 3)) / 2
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-2, 7.5e-3, 2.5e-3])
    # and epoch 1's lr is the same for any total, so the extended run is the 3-epoch run, bit for bit
    fresh = tmp_path / "fresh"
    assert run_train(fresh, *TINY, "trainer.epochs=3").returncode == 0
    for a, b in zip(metrics(fresh), rows, strict=True):
        assert [a[k] for k in ("train_loss", "val_loss", "lr")] == [b[k] for k in ("train_loss", "val_loss", "lr")]


def test_resume_false_never_overwrites_a_run(two_epochs):
    files = {p: p.read_bytes() for p in two_epochs.rglob("*") if p.is_file() and p.name != "train.log"}
    proc = run_train(two_epochs, *TINY, "trainer.epochs=2", "trainer.resume=false")
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(err) == 1 and "trainer.resume=false" in err[0]
    assert {p: p.read_bytes() for p in files} == files


def test_a_grid_into_another_grids_sweep_dir_stops_in_one_line(tmp_path):
    import subprocess
    import sys

    from tests.helpers import ROOT

    def grid(n_blocks):
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        cmd = [sys.executable, "-m", "qt.train", "-m", f"hydra.sweep.dir={tmp_path}", *TINY[1:], f"n_blocks={n_blocks}"]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    assert grid(1).returncode == 0
    before = (tmp_path / "0" / "summary.json").read_text()
    proc = grid(2)  # job 0 of this grid would land on the first grid's job 0
    err = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert proc.returncode == 2 and len(err) == 1 and "hydra.sweep.dir" in err[0]
    assert (tmp_path / "0" / "summary.json").read_text() == before


@pytest.mark.parametrize(
    "choice,message",
    [("mapping=deep", "mapping 1,989"), ("circuit=u3", "5,529 trainable parameters (generator 4,992")],  # u3 at the experiment's 64 blocks
)
def test_experiment_with_a_choice_over_its_budget_stops_in_one_line(tmp_path, choice, message):
    quick = [a for a in TINY if not a.startswith("n_blocks")]
    proc = run_train(tmp_path / "run", *quick, "experiment=mnist_1500", "dataset=mnist_5k", choice)
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-2000:]
    assert message in err[0] and "max_trainable_params=1,500" in err[0]


def test_a_plain_mode_classical_run_is_reported_as_the_classical_control(tmp_path):
    run_dir = tmp_path / "run"
    assert run_train(run_dir, *TINY, "mode=classical").returncode == 0
    assert load_runs(run_dir)["variant"].iloc[0] == "classical"


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("two_epochs") / "run"
    proc = run_train(run_dir, *TINY, "trainer.epochs=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


def test_train_time_and_wall_time_say_what_they_measure(two_epochs):
    run_dir = two_epochs
    s = summary(run_dir)
    rows = metrics(run_dir)
    assert s["train_time_s"] == pytest.approx(sum(float(r["epoch_train_time_s"]) for r in rows), rel=1e-6)
    # the whole run: data, building the learner, validation, checkpoints, plots and the final evaluation too
    assert s["wall_time_s"] > s["train_time_s"] + 0.05
    frame = load_runs(run_dir)
    assert frame["wall_time_s"].iloc[0] == s["wall_time_s"] and frame["train_time_s"].iloc[0] == s["train_time_s"]


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_teacher_file_with_code_is_refused_in_one_line_and_runs_nothing(tmp_path):
    marker = tmp_path / "code_ran"
    evil = _RunsCode()
    evil.marker = marker
    crafted = tmp_path / "teacher.pt"
    with open(crafted, "wb") as f:
        pickle.dump({"model": evil, "state_dict": {}}, f)  # plain pickle: what torch.load would unpickle too
    torch.save({"model": evil, "state_dict": {}}, tmp_path / "teacher_torch.pt")
    for path in (crafted, tmp_path / "teacher_torch.pt"):
        proc = run_train(tmp_path / f"run_{path.stem}", *TINY, "loss=kd", f"loss.teacher={path}")
        err = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(err) == 1, proc.stderr[-2000:]
        assert not marker.exists()
    assert "Python objects" in err[0] or "readable torch file" in err[0]


def test_checkpoints_are_plain_tensors_and_values(two_epochs):
    for name in ("last.pt", "best.pt"):
        torch.load(two_epochs / "checkpoints" / name, weights_only=True)  # no object unpickling needed


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_finite_shot_training_resumes_bit_identically_on_cuda(tmp_path):
    args = [*TINY, "trainer.device=cuda", "circuit.shots=1000", "trainer.epochs=2", "trainer.limit_train_batches=6"]
    ref = tmp_path / "ref"
    assert run_train(ref, *args).returncode == 0
    part = tmp_path / "part"
    assert run_train(part, *[a for a in args if a != "trainer.epochs=2"], "trainer.epochs=1").returncode == 0
    assert run_train(part, *args).returncode == 0  # continue to 2 epochs from the checkpoint
    assert metrics(part)[-1]["train_loss"] == metrics(ref)[-1]["train_loss"]
