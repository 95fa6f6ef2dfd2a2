"""Loggers, read back with each library's own reader: TensorBoard's event accumulator, MlflowClient on sqlite."""

import json
import os
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.helpers import ROOT, TINY, kill_when, run_train, summary


pytest.importorskip("tensorboard")

pytest.importorskip("mlflow")

BOTH = "logger=[tensorboard,mlflow]"


def mlflow_args(tmp_path):
    return [f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db"]


def client(tmp_path):
    return MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")


def all_runs(c):
    return c.search_runs([e.experiment_id for e in c.search_experiments()])


def steps(c, run, key="val/loss"):
    return sorted(int(m.step) for m in c.get_metric_history(run.info.run_id, key))


def tb_scalars(run_dir, tag="val/loss"):
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_a_run_logs_params_and_epochs_that_the_libraries_read_back(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_train(run_dir, *TINY, "trainer.epochs=2", BOTH, *mlflow_args(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(__import__("csv").DictReader(open(run_dir / "metrics.csv")))
    # TensorBoard: the same per-epoch values as metrics.csv, and the final metrics
    assert [(s, pytest.approx(v)) for s, v in tb_scalars(run_dir)] == [(i + 1, float(r["val_loss"])) for i, r in enumerate(rows)]
    assert tb_scalars(run_dir, "final/test_acc")[0][1] == pytest.approx(summary(run_dir)["test_acc"])
    assert [s for s, _ in tb_scalars(run_dir, "time/step_ms")] == [1, 2]
    # MLflow: one run in experiment "qt", params = the flattened config, metrics, artifacts
    c = client(tmp_path)
    (run,) = all_runs(c)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["mapping.hidden"] == "[20, 20]" and run.data.params["n_blocks"] == "2"
    assert steps(c, run) == [1, 2] and run.data.metrics["final/test_acc"] == pytest.approx(summary(run_dir)["test_acc"])
    assert {a.path for a in c.list_artifacts(run.info.run_id)} == {"summary.json", "curves.png"}
    assert (tmp_path / "mlflow-artifacts").is_dir() and not (ROOT / "mlruns").exists()  # beside the database, not in the launch dir


def test_a_killed_and_resumed_run_continues_the_same_logged_run(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY, "trainer.epochs=3", "trainer.limit_train_batches=12", BOTH, *mlflow_args(tmp_path)]
    kill_when(run_dir, "metrics.csv", *args)  # epoch 1 done (logged, then checkpointed)
    assert summary(run_dir)["status"] == "running"
    resumed = run_train(run_dir, *args)
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr[-2000:]
    c = client(tmp_path)
    (run,) = all_runs(c)  # no duplicate run
    assert run.info.status == "FINISHED" and steps(c, run) == [1, 2, 3]  # each epoch once
    assert [s for s, _ in tb_scalars(run_dir)] == [1, 2, 3]


def test_a_sweep_is_one_mlflow_experiment_with_a_run_per_job(tmp_path):
    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "qt.train", "-m", f"hydra.sweep.dir={sweep_dir}", *TINY[1:], "n_blocks=1,2", "logger=mlflow",
           *mlflow_args(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    c = client(tmp_path)
    experiment = c.get_experiment_by_name(str(sweep_dir))
    runs = c.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["0", "1"]
    assert sorted(r.data.params["n_blocks"] for r in runs) == ["1", "2"]


@pytest.mark.parametrize(
    "override",
    ["logger.tracking_uri=http://127.0.0.1:9", "logger.tensorboard.subdir=summary.json/tb"],  # no server; not a folder
)
def test_a_failing_logger_is_one_line_and_the_run_goes_on(tmp_path, override):
    run_dir = tmp_path / "run"
    extra = [] if "mlflow" in override else mlflow_args(tmp_path)
    proc = run_train(run_dir, *TINY, BOTH, *extra, override)
    assert proc.returncode == 0, proc.stderr[-2000:]
    warnings = [line for line in proc.stdout.splitlines() if "switched off, the run goes on" in line]
    assert len(warnings) == 1
    s = summary(run_dir)
    assert s["status"] == "completed" and s["epochs_completed"] == 1 and s["test_acc"] is not None
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2  # the header and the epoch: qt's own files are whole whatever the tracker did


def test_optuna_dashboard_reads_a_qt_search_with_its_objective_named(tmp_path):
    """The live view of a search: optuna-dashboard on the study a qt search writes in its sweep dir, the objective by name."""
    import socket
    import urllib.request

    pytest.importorskip("optuna_dashboard")
    d = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "qt.train", "-m", f"hydra.sweep.dir={d}", "+sweep=lr_blocks_clip", "hydra.sweeper.n_trials=2",
           "hydra/sweeper/pruner=none", *TINY]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = "from optuna_dashboard._cli import main; main()"  # the optuna-dashboard command, from this interpreter
    server = subprocess.Popen([sys.executable, "-c", cli, f"sqlite:///{d}/study.db", "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    def get(path: str) -> dict:
        return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read())

    try:
        t0 = time.time()
        while True:
            try:
                (only,) = get("/api/studies")["study_summaries"]
                break
            except OSError:
                assert server.poll() is None and time.time() - t0 < 60
                time.sleep(0.3)
        assert only["study_name"] == "lr_blocks_clip" and only["directions"] == ["maximize"]
        detail = get(f"/api/studies/{only['study_id']}")
        assert detail["objective_names"] == ["best_val_acc"] and len(detail["trials"]) == 2
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("workers", [2, 4])
def test_parallel_trials_log_to_one_new_sqlite_store_once_each(tmp_path, workers):
    """A joblib multirun with logger=mlflow on a new SQLite store: every run logged once, every epoch once
    (the first trial creates the store under a lock; without it, MLflow's migrations race and trackers switch off)."""
    d, db = tmp_path / "sweep", tmp_path / "mlflow.db"
    cmd = [sys.executable, "-m", "qt.train", "-m", f"hydra.sweep.dir={d}", "hydra/launcher=parallel", f"hydra.launcher.n_jobs={workers}",
           "logger=mlflow", f"logger.tracking_uri=sqlite:///{db}", "n_blocks=1,2", "seed=0,1", "trainer.epochs=2",
           "trainer.limit_train_batches=5", "trainer.threads=1"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not any("switched off" in (d / j / "train.log").read_text() for j in "0123")
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    (experiment,) = [e for e in client.search_experiments() if e.name == str(d)]
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["qt.run_dir"] for r in runs) == sorted(str((d / j).resolve()) for j in "0123")
    for r in runs:
        assert [m.step for m in client.get_metric_history(r.info.run_id, "train/loss")] == [1, 2]
        assert r.info.status == "FINISHED"
