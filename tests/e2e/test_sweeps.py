"""Real multiruns: Optuna searches, grids, failures, kill-and-resume, parallel launchers."""

import json
import os
import subprocess
import sys

import optuna
import pytest

from tests.helpers import FAST, ROOT, kill_mid_second_job, load, multirun, optuna_args, summary, trials_csv


@pytest.mark.smoke
def test_optuna_search_runs_trials_and_summarises(tmp_path):
    d = tmp_path / "sweep"
    proc = multirun(d, *optuna_args(d), "hydra.sweeper.n_trials=4", "n_blocks=range(1,4)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(d)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    assert study.metric_names == ["best_val_acc"]  # what dashboards and Optuna's plots call the objective
    for t in study.trials:
        assert 1 <= t.params["n_blocks"] <= 3 and 1e-4 <= t.params["optimizer.lr"] <= 3e-2
        s = summary(t.user_attrs["run_dir"])
        assert s["status"] == "completed" and s["best_val_acc"] == t.value  # the run's own schema
    out = json.loads((d / "sweep_summary.json").read_text())
    assert out["best_value"] == study.best_value and out["states"] == {"COMPLETE": 4}
    rows = trials_csv(d)
    assert len(rows) == 4 and {"param_optimizer.lr", "param_n_blocks", "param_trainer.clip_norm", "duration_s", "run_dir"} <= set(rows[0])
    assert (d / "optimization_history.png").stat().st_size > 1000

    # same command again with a larger budget: resumes, keeps the 4, numbers new jobs after them
    before = (d / "0" / "summary.json").read_text()
    proc = multirun(d, *optuna_args(d), "hydra.sweeper.n_trials=6", "n_blocks=range(1,4)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(d)
    assert len(study.trials) == 6 and (d / "5").is_dir() and not (d / "6").exists()
    assert (d / "0" / "summary.json").read_text() == before
    points = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(points)) == 6  # the reseeded sampler proposes new points


def test_resuming_with_other_overrides_is_refused(tmp_path):
    d = tmp_path / "sweep"
    assert multirun(d, *optuna_args(d), "hydra.sweeper.n_trials=1").returncode == 0
    proc = multirun(d, *optuna_args(d, "s", "trainer.batch_size=16"), "hydra.sweeper.n_trials=2")
    assert proc.returncode == 2 and "study_name" in proc.stderr.strip().splitlines()[-1]
    assert len(load(d).trials) == 1


def test_failing_and_diverging_trials_do_not_stop_the_sweep(tmp_path):
    d = tmp_path / "sweep"
    proc = multirun(
        d,
        *optuna_args(d),
        "hydra/sweeper/sampler=grid",
        "optimizer=sgd",
        "trainer.clip_norm=null",
        "mapping.scale=none",  # unnormalised weights, so lr 1e8 overflows to NaN
        "trainer.limit_train_batches=20",
        "n_blocks=choice(0,2)",
        "optimizer.lr=choice(0.01,100000000.0)",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(d)
    states = {(t.params["n_blocks"], t.params["optimizer.lr"]): t for t in study.trials}
    assert len(states) == 4
    assert states[(2, 0.01)].state.name == "COMPLETE"
    assert states[(2, 1e8)].state.name == "FAIL" and "diverged" in states[(2, 1e8)].user_attrs["fail_reason"]
    for lr in (0.01, 1e8):
        t = states[(0, lr)]
        assert t.state.name == "FAIL" and "n_blocks must be" in t.user_attrs["fail_reason"]
        assert summary(t.user_attrs["run_dir"])["status"] == "failed"  # reason in the run dir too
    reasons = {r["state"]: r["reason"] for r in trials_csv(d)}
    assert reasons["FAIL"]


def test_every_trial_failing_ends_with_a_clear_summary(tmp_path):
    d = tmp_path / "sweep"
    proc = multirun(d, *optuna_args(d), "hydra.sweeper.n_trials=2", "n_blocks=choice(0)")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: every trial") and "n_blocks must be" in last
    out = json.loads((d / "sweep_summary.json").read_text())
    assert out["states"] == {"FAIL": 2} and any("n_blocks" in r for r in out["failure_reasons"])


def test_killed_sweep_resumes_without_losing_finished_trials(tmp_path):
    d = tmp_path / "sweep"
    args = optuna_args(d, "s", "trainer.limit_train_batches=40", "trainer.checkpoint_every=2", "n_blocks=choice(2)")
    kill_mid_second_job(d, *args, "hydra.sweeper.n_trials=3")
    first = (d / "0" / "summary.json").read_text()
    assert json.loads(first)["status"] == "completed"

    resumed = multirun(d, *args, "hydra.sweeper.n_trials=3")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    study = load(d)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 3  # the budget: interrupted trials are retried, not counted
    assert (d / "0" / "summary.json").read_text() == first  # finished work untouched
    dirs = sorted((p for p in d.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    assert [p.name for p in dirs[:2]] == ["0", "1"] and len(dirs) == 3  # a retry reuses its dir, never another's
    assert all(summary(p)["status"] == "completed" for p in dirs)
    assert {t.user_attrs["run_dir"] for t in complete} == {str(p) for p in dirs}
    retried = [t for t in study.trials if "retry_of" in t.user_attrs]
    if retried:  # killed mid-training: the retry continued in the same run dir from its checkpoint
        assert "resumed from" in (d / "1" / "train.log").read_text()


def test_grid_multirun_and_rerun_skips_finished_runs(tmp_path):
    d = tmp_path / "grid"
    args = ["+sweep=ablation_grid", "circuit=ry_cnot,u3", "n_blocks=1", "mapping=shallow", "seed=0,1", *FAST]
    proc = multirun(d, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(p.name for p in d.iterdir() if p.name.isdigit())
    assert runs == ["0", "1", "2", "3"]
    configs = {(summary(d / r)["config"]["circuit"]["rotation"], summary(d / r)["config"]["seed"]) for r in runs}
    assert configs == {("RY", 0), ("RY", 1), ("U3", 0), ("U3", 1)}
    rows = trials_csv(d)
    assert {r["param_circuit"] for r in rows} == {"ry_cnot", "u3"} and all(r["state"] == "COMPLETE" for r in rows)
    assert json.loads((d / "sweep_summary.json").read_text())["n_trials"] == 4
    again = multirun(d, *args)
    assert again.returncode == 0 and again.stdout.count("nothing to do") == 4


def test_joblib_parallel_trials(tmp_path):
    d = tmp_path / "par"
    args = ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "n_blocks=1,2", "trainer.epochs=1",
            "trainer.limit_train_batches=3", "trainer.batch_size=32"]
    proc = multirun(d, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for r in ("0", "1"):
        assert summary(d / r)["status"] == "completed"
    assert "Joblib" in proc.stdout + proc.stderr


def test_submitit_local_launcher(tmp_path):
    d = tmp_path / "sub"
    proc = multirun(d, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "n_blocks=1,2", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for r in ("0", "1"):
        assert summary(d / r)["status"] == "completed"


@pytest.mark.slow
def test_ray_launcher_against_a_local_head(tmp_path):
    """A Ray head on loopback inside a network namespace of the test's own (Ray binds every
    interface it sees; the namespace has only lo), joined by address as a real cluster would be."""
    pytest.importorskip("ray")
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    ns = f"qt_ray_{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here (needs root and iproute2)")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": "127.0.0.1:6391"}
    in_ns = ["ip", "netns", "exec", ns]
    try:
        subprocess.run([*in_ns, "ip", "link", "set", "lo", "up"], check=True)
        head = subprocess.run(
            [*in_ns, sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--node-ip-address=127.0.0.1",
             "--port=6391", "--include-dashboard=false", "--num-cpus=2", "--disable-usage-stats"],
            env=env, capture_output=True, text=True, timeout=180,
        )
        assert head.returncode == 0, head.stderr[-2000:]
        d = tmp_path / "ray"
        proc = subprocess.run(
            [*in_ns, sys.executable, "-m", "qt.train", "-m", f"hydra.sweep.dir={d}", "hydra/launcher=ray_cluster",
             "n_blocks=1,2", *FAST],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        for r in ("0", "1"):
            assert summary(d / r)["status"] == "completed"
    finally:
        subprocess.run([*in_ns, sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], env=env, capture_output=True, timeout=120)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_a_qt_search_on_a_journal_file_for_shared_file_systems(tmp_path):
    """A qt search keeps its study in a journal file (no database server, NFS-safe), and resumes from it."""
    from qt.sweeps.study import make_storage

    d, journal = tmp_path / "sweep", tmp_path / "studies" / "x.log"
    args = ["+sweep=lr_blocks_clip", "hydra.sweeper.study_name=x", f"hydra.sweeper.storage=journal:{journal}", *FAST,
            "hydra.sweeper.n_trials=2", "hydra/sweeper/pruner=none"]  # fmt: skip
    proc = multirun(d, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="x", storage=make_storage(f"journal:{journal}"))
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2 and journal.stat().st_size > 0
    assert all(summary(t.user_attrs["run_dir"])["status"] == "completed" for t in study.trials)
    again = multirun(d, *args)  # the same command: the budget is spent, nothing runs again
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(optuna.load_study(study_name="x", storage=make_storage(f"journal:{journal}")).trials) == 2


def test_searches_in_two_fresh_sweep_dirs_each_run_their_own_trials(tmp_path):
    """The named search's own storage lives in its sweep dir: a new dir is a new search, the same dir resumes."""
    for d in (tmp_path / "a", tmp_path / "b"):
        proc = multirun(d, "+sweep=lr_blocks_clip", *FAST, "hydra.sweeper.n_trials=2", "n_blocks=range(1,3)")
        assert proc.returncode == 0, proc.stderr[-3000:]
        study = optuna.load_study(study_name="lr_blocks_clip", storage=f"sqlite:///{d}/study.db")
        assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2
        assert all(t.user_attrs["run_dir"].startswith(str(d)) for t in study.trials)
        assert json.loads((d / "sweep_summary.json").read_text())["best_run_dir"].startswith(str(d))


def test_a_study_in_a_shared_storage_belongs_to_its_sweep_dir(tmp_path):
    storage = f"hydra.sweeper.storage=sqlite:///{tmp_path}/shared.db"
    first = multirun(tmp_path / "a", "+sweep=lr_blocks_clip", *FAST, "hydra.sweeper.n_trials=1", storage)
    assert first.returncode == 0, first.stderr[-3000:]
    other = multirun(tmp_path / "b", "+sweep=lr_blocks_clip", *FAST, "hydra.sweeper.n_trials=2", storage)
    err = [line for line in other.stderr.splitlines() if line.startswith("error")]
    assert other.returncode == 2 and len(err) == 1 and f"hydra.sweep.dir={tmp_path / 'a'}" in err[0]
    assert not (tmp_path / "b" / "sweep_summary.json").exists()  # nothing summarised from another sweep's study
    assert len(optuna.load_study(study_name="lr_blocks_clip", storage=storage.split("=", 1)[1]).trials) == 1


def test_the_search_direction_follows_the_objective(tmp_path):
    d = tmp_path / "min"
    proc = multirun(d, *optuna_args(d), "objective=val_loss", "hydra.sweeper.n_trials=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [x.name for x in load(d).directions] == ["MINIMIZE"]
    d = tmp_path / "clash"
    proc = multirun(d, *optuna_args(d), "objective=val_loss", "hydra.sweeper.direction=maximize")
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and last.startswith("error: hydra.sweeper.direction") and "val_loss" in last


def test_max_failure_rate_stops_the_search(tmp_path):
    d = tmp_path / "sweep"
    proc = multirun(d, *optuna_args(d), "hydra.sweeper.n_trials=4", "hydra.sweeper.max_failure_rate=0.0", "n_blocks=choice(0)")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert "max_failure_rate=0.0" in last and "3 trials to go" in last
    assert len(load(d).trials) == 1 and json.loads((d / "sweep_summary.json").read_text())["states"] == {"FAIL": 1}
    bad = multirun(tmp_path / "x", *optuna_args(tmp_path / "x"), "hydra.sweeper.max_failure_rate=2")
    assert bad.returncode == 2 and "max_failure_rate must be in [0, 1]" in bad.stderr.strip().splitlines()[-1]


def test_a_trial_raising_a_non_qt_exception_is_recorded_and_the_sweep_goes_on(tmp_path):
    d = tmp_path / "sweep"
    # torch's Adam refuses a negative weight decay with a ValueError: an error from outside qt
    proc = multirun(d, *optuna_args(d), "hydra/sweeper/sampler=grid", "optimizer.weight_decay=choice(0.0,-1.0)",
                    "n_blocks=choice(1)", "optimizer.lr=choice(0.01)", "trainer.clip_norm=choice(10)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    states = {t.params["optimizer.weight_decay"]: t for t in load(d).trials}
    assert states[0.0].state.name == "COMPLETE"
    assert states[-1.0].state.name == "FAIL" and "ValueError" in states[-1.0].user_attrs["fail_reason"]
    assert summary(states[-1.0].user_attrs["run_dir"])["status"] == "failed"


def test_an_interrupted_grid_resumes_and_finishes(tmp_path):
    d = tmp_path / "grid"
    args = ["+sweep=ablation_grid", "circuit=ry_cnot", "n_blocks=1,2", "mapping=shallow", "seed=0", *FAST,
            "trainer.limit_train_batches=40", "trainer.checkpoint_every=2"]
    kill_mid_second_job(d, *args)
    first = (d / "0" / "summary.json").read_text()
    again = multirun(d, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (d / "0" / "summary.json").read_text() == first and again.stdout.count("nothing to do") == 1
    assert summary(d / "1")["status"] == "completed" and "resumed from" in (d / "1" / "train.log").read_text()
    assert sorted(p.name for p in d.iterdir() if p.name.isdigit()) == ["0", "1"]
    assert json.loads((d / "sweep_summary.json").read_text())["states"] == {"COMPLETE": 2}


@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_two_drivers_share_one_study(tmp_path, storage):
    """Two sweep processes on one study (a SLURM array of drivers): the budget is spent once, every trial in its own
    job dir named by its number, and neither driver takes the other's running trials for interrupted ones."""
    d = tmp_path / "sweep"
    url = f"journal:{tmp_path / 'study.log'}" if storage == "journal" else f"sqlite:///{tmp_path / 'study.db'}"
    args = ["+sweep=lr_blocks_clip", "hydra.sweeper.study_name=x", f"hydra.sweeper.storage={url}", "hydra/sweeper/pruner=none",
            "hydra.sweeper.n_trials=4", *FAST, "trainer.limit_train_batches=30"]  # fmt: skip  (trials overlap: both drivers run some)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "qt.train", "-m", f"hydra.sweep.dir={d}", *args]
    drivers = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in drivers]
    assert [p.returncode for p in drivers] == [0, 0], [o[1][-2000:] for o in outs]
    from qt.sweeps.study import make_storage

    study = optuna.load_study(study_name="x", storage=make_storage(url))
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    others = [t for t in study.trials if t.state.name != "COMPLETE"]
    assert len(complete) == 4  # the budget, once
    assert all(t.user_attrs["fail_reason"].startswith("over budget") for t in others)  # never "interrupted"
    assert len({t.user_attrs["driver"] for t in complete}) == 2  # both drivers ran trials
    dirs = [t.user_attrs["run_dir"] for t in complete]
    assert len(set(dirs)) == 4 and all(d_.endswith(f"/{t.number}") for d_, t in zip(dirs, complete))
    assert all(summary(p)["status"] == "completed" for p in dirs)
