"""Pruning: real multiruns in which a trial that cannot learn is stopped early, on both local launchers, and resumed."""

import csv
import json
from pathlib import Path

import optuna
import pytest

from qt.sweeps.study import make_storage
from tests.helpers import summary
from tests.helpers import kill_once_written, load, multirun, trials_csv


BAD_LR = 1e-7  # learns nothing in a few epochs: its validation accuracy stays where it started


def pruned_search(sweep_dir, lrs, grid_seed, *extra, storage=None):
    """A grid over learning rates under the median pruner (from epoch 2 on), pruning once one trial completed."""
    return [
        "+sweep=lr_blocks_clip", "hydra.sweeper.study_name=s", f"hydra.sweeper.storage={storage or sqlite(sweep_dir)}",
        "hydra/sweeper/sampler=grid", f"hydra.sweeper.sampler.seed={grid_seed}",
        "hydra/sweeper/pruner=median", "hydra.sweeper.pruner.n_startup_trials=1",
        f"optimizer.lr=choice({','.join(map(str, lrs))})", "trainer.clip_norm=10", "n_blocks=2",
        "trainer.batch_size=32", "trainer.threads=1", "trainer.limit_train_batches=20", *extra,
    ]


def sqlite(sweep_dir):
    return f"sqlite:///{sweep_dir}/study.db"


def by_lr(study):
    return {t.params["optimizer.lr"]: t for t in study.trials}


LAUNCHERS = {
    "basic": ([], None),
    # joblib: trials in worker processes, reaching the study through Optuna's journal file, the
    # storage for shared file systems (SLURM and Ray jobs find their trial the same way)
    "parallel": (["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"], "journal:{d}/study.log"),
}


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_trial_that_cannot_learn_is_pruned(tmp_path, launcher):
    d = tmp_path / "sweep"
    extra, storage = LAUNCHERS[launcher]
    storage = storage.format(d=d) if storage else sqlite(d)
    proc = multirun(d, *pruned_search(d, [0.02, 0.03, BAD_LR], 3, "trainer.epochs=3", *extra, storage=storage))
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="s", storage=make_storage(storage))
    # grid seed 3 proposes the hopeless rate last; with the joblib launcher the two good ones run together first
    assert study.trials[-1].params["optimizer.lr"] == BAD_LR, "the grid's order changed: pick another grid seed"
    trials = by_lr(study)
    bad = trials[BAD_LR]
    assert bad.state.name == "PRUNED" and list(bad.intermediate_values) == [1, 2]  # not judged before epoch 2
    s = summary(bad.user_attrs["run_dir"])
    assert s["status"] == "pruned" and s["epochs_completed"] == 2 and "MedianPruner after epoch 2" in s["reason"]
    assert s["best_val_acc"] == bad.intermediate_values[2] == bad.value  # best so far, as the run would keep it
    assert len(list(csv.DictReader(open(Path(bad.user_attrs["run_dir"]) / "metrics.csv")))) == 2
    for lr in (0.02, 0.03):
        good = trials[lr]
        assert good.state.name == "COMPLETE" and list(good.intermediate_values) == [1, 2, 3]
        assert good.value == good.intermediate_values[3]  # the last report is the run's own objective
        assert good.intermediate_values[2] > bad.intermediate_values[2]
    rows = {float(r["param_optimizer.lr"]): r for r in trials_csv(d)}
    assert (rows[BAD_LR]["state"], rows[BAD_LR]["run_status"], rows[BAD_LR]["epochs"]) == ("PRUNED", "pruned", "2")
    out = json.loads((d / "sweep_summary.json").read_text())
    assert out["states"] == {"COMPLETE": 2, "PRUNED": 1} and out["epochs_run"] == 8

    from qt.analysis.runs import load_runs, load_study_frame

    runs = load_runs(d).set_index("run_dir")
    assert runs.loc[bad.user_attrs["run_dir"], "status"] == "pruned"
    frame = load_study_frame(storage)
    assert sorted(frame.trial_state) == ["COMPLETE", "COMPLETE", "PRUNED"] and set(frame.status) == {"completed", "pruned"}
    if launcher == "parallel":
        assert "Joblib" in proc.stdout + proc.stderr


def test_a_killed_pruned_search_resumes_keeping_its_pruned_trials(tmp_path):
    d = tmp_path / "sweep"
    # 4 epochs, pruning from epoch 3: trial 1 is pruned at epoch 3, trial 2 killed after its first epoch
    args = pruned_search(d, [0.02, BAD_LR, 2e-7], 1, "trainer.epochs=4", "hydra.sweeper.pruner.n_warmup_steps=3",
                         "trainer.limit_train_batches=60", "trainer.checkpoint_every=0")
    kill_once_written(d, "2/checkpoints/last.pt", *args)
    study = load(d)
    assert [t.params["optimizer.lr"] for t in study.trials] == [0.02, 2e-7, BAD_LR], "the grid's order changed"
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED", "RUNNING"]
    pruned_before = (d / "1" / "summary.json").read_text()

    resumed = multirun(d, *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    study = load(d)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED", "FAIL", "PRUNED"]
    assert (d / "1" / "summary.json").read_text() == pruned_before  # a pruned trial stays pruned, untouched
    retry = study.trials[3]
    assert retry.user_attrs["retry_of"] == 2 and retry.user_attrs["run_dir"] == str(d / "2")
    assert list(retry.intermediate_values) == [1, 2, 3]  # the epoch before the kill reported once, then 2 and 3
    s = summary(d / "2")
    assert s["status"] == "pruned" and s["epochs_completed"] == 3
    assert "resumed from" in (d / "2" / "train.log").read_text()
    assert [r["epoch"] for r in csv.DictReader(open(d / "2" / "metrics.csv"))] == ["1", "2", "3"]
    assert json.loads((d / "sweep_summary.json").read_text())["states"] == {"COMPLETE": 1, "PRUNED": 2, "FAIL": 1}


def test_a_pruner_needs_one_per_epoch_objective_and_a_shared_study(tmp_path):
    base = ["+sweep=lr_blocks_clip", "hydra/sweeper/pruner=median", "trainer.epochs=1", "trainer.limit_train_batches=2"]
    for extra, expected in (
        (["objective=wall_time_s"], "choose one of best_val_acc, val_loss, train_loss, or"),
        (["objective=[best_val_acc,trainable_params]", "hydra/sweeper/sampler=nsgaii"], "not objective=["),
        (["hydra.sweeper.storage=null"], "set hydra.sweeper.storage"),
    ):
        d = tmp_path / str(len(extra)) / extra[0].split("=")[0]
        proc = multirun(d, *base, *extra)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
        assert proc.returncode == 2 and len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
        assert not (d / "0").exists()  # refused before any trial
