"""Experiment trackers (``logger`` config group): TensorBoard and MLflow beside qt's own files.

Every run writes the results schema (``metrics.csv``, ``summary.json``, ``curves.png``)
whatever the loggers; ``logger=csv`` (the default) adds nothing to it. ``logger=tensorboard``,
``logger=mlflow`` or both (``logger=[tensorboard,mlflow]``) also send the run there:

* at the start: the flattened config (TensorBoard: as text; MLflow: as params);
* per epoch: train/val loss and accuracy, lr, gradient norms per part, training time and
  steps/s (step = epoch);
* at the end: the final metrics (test accuracy and loss, ...) and the run's status; MLflow
  also gets ``summary.json`` and ``curves.png`` as artifacts, TensorBoard the hparams view.

Resume continues the same logged run: TensorBoard drops any event past the checkpoint
(``purge_step``), MLflow finds its run by the run dir (tag ``qt.run_dir``) and skips epochs
it already holds (a resumed run recomputes them bit for bit). A logger that fails (server
down, disk full) is reported in one log line and switched off; the run goes on and its own
files are untouched.
"""

from __future__ import annotations

import functools
import logging
import os
from contextlib import contextmanager
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qt.results.schema import flatten
from qt.training.callbacks import Callback

log = logging.getLogger(__name__)

#: metrics.csv columns sent per epoch, under the names trackers show
EPOCH_METRICS = {
    "train_loss": "train/loss",
    "train_acc": "train/acc",
    "val_loss": "val/loss",
    "val_acc": "val/acc",
    "lr": "lr",
    "grad_norm_circuit": "grad_norm/circuit",
    "grad_norm_mapping": "grad_norm/mapping",
    "grad_norm_target": "grad_norm/target",
    "epoch_train_time_s": "time/epoch_train_s",
    "steps_per_s": "time/steps_per_s",
}
#: summary.json fields sent at the end
FINAL_METRICS = ("best_val_acc", "best_epoch", "test_acc", "test_loss", "test_subset_acc", "train_acc", "train_loss", "train_time_s", "wall_time_s", "step_time_s")


def epoch_metrics(row: dict) -> dict[str, float]:
    """A metrics.csv row as tracker scalars (tag -> value), plus the epoch's mean step time."""
    out = {tag: v for key, tag in EPOCH_METRICS.items() if (v := _number(row.get(key))) is not None}
    if out.get("time/steps_per_s"):
        out["time/step_ms"] = 1000.0 / out["time/steps_per_s"]
    return out


def final_metrics(summary: dict) -> dict[str, float]:
    """summary.json's final numbers as tracker scalars (tag -> value)."""
    return {f"final/{k}": v for k in FINAL_METRICS if (v := _number(summary.get(k))) is not None}


@dataclass
class RunInfo:
    """What a logger needs to know about the run: where it lives and what it is called."""

    run_dir: Path
    config: dict
    sweep_dir: Path | None
    job: str


class Logger:
    """One tracker. Subclasses implement the four calls; :class:`Loggers` isolates their failures."""

    name = "logger"
    requires: str | None = None  # the package it needs (an extra of qt's)

    def start(self, info: RunInfo, done_rows: Sequence[dict]) -> None:
        """Open (or, with ``done_rows`` from a checkpoint, reopen) the logged run."""

    def log_epoch(self, row: dict) -> None:
        """One metrics.csv row."""

    def finish(self, summary: dict, info: RunInfo) -> None:
        """Final metrics and status."""

    def close(self) -> None:
        """Flush and release."""


class Loggers(Callback):
    """The run's loggers, a training callback (each epoch's row, logged before ``last.pt`` is written).
    A logger that raises is reported once and switched off; the run goes on."""

    def __init__(self, loggers: Sequence[Logger]):
        self.active = list(loggers)

    def _call(self, method: str, *args) -> None:
        for logger in list(self.active):
            try:
                getattr(logger, method)(*args)
            except Exception as e:  # noqa: BLE001 - a tracker must never stop or corrupt a run
                said = " ".join(str(e).split())[:300] or type(e).__name__
                log.warning("logger %s failed in %s (%s: %s): switched off, the run goes on", logger.name, method, type(e).__name__, said)
                self.active.remove(logger)
                try:
                    logger.close()
                except Exception:  # noqa: BLE001
                    pass

    def start(self, info: RunInfo, done_rows: Sequence[dict]) -> None:
        self._call("start", info, done_rows)

    def log_epoch(self, row: dict) -> None:
        self._call("log_epoch", row)

    def on_epoch_end(self, trainer, row: dict) -> None:
        self.log_epoch(row)

    def finish(self, summary: dict, info: RunInfo) -> None:
        self._call("finish", summary, info)
        self._call("close")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class TensorBoardLogger(Logger):
    """Event files in ``RUN_DIR/tensorboard`` (``tensorboard --logdir`` a run or a whole sweep dir)."""

    name = "tensorboard"
    requires = "tensorboard"

    def __init__(self, subdir: str = "tensorboard"):
        self.subdir = subdir
        self.writer = None

    def start(self, info: RunInfo, done_rows: Sequence[dict]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # events past the checkpoint (logged before a kill) are dropped: the resumed run writes them again
        self.writer = SummaryWriter(log_dir=str(info.run_dir / self.subdir), purge_step=len(done_rows) + 1 if done_rows else None)
        if not done_rows:
            text = "\n".join(f"    {k}: {v}" for k, v in sorted(flatten(info.config).items()))
            self.writer.add_text("config", text, 0)

    def log_epoch(self, row: dict) -> None:
        for tag, value in epoch_metrics(row).items():
            self.writer.add_scalar(tag, value, int(row["epoch"]))
        self.writer.flush()

    def finish(self, summary: dict, info: RunInfo) -> None:
        step = int(summary.get("epochs_completed") or 0)
        metrics = final_metrics(summary)
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, step)
        hparams = {k: v for k, v in flatten(info.config).items() if isinstance(v, (int, float, str, bool))}
        if metrics:
            self.writer.add_hparams(hparams, metrics, run_name=".", global_step=step)
        self.writer.add_text("status", str(summary.get("status")), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@contextmanager
def scoped_env(values: dict[str, str]):
    """``values`` in os.environ for the duration of the block (names already set keep theirs), then as before."""
    added = [k for k in values if k not in os.environ]
    os.environ.update({k: values[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _bounded_requests(method):
    @functools.wraps(method)
    def wrapper(self, *args):
        with scoped_env(self.env):
            return method(self, *args)

    return wrapper


class MLflowLogger(Logger):
    """An MLflow run per qt run: params = the flattened config, metrics per epoch, final metrics, artifacts.

    ``tracking_uri``: any MLflow store or server (default: one local sqlite file for every run,
    ``sqlite:///outputs/mlflow.db``). ``experiment_name``: null groups a multirun's trials in one
    experiment named after its sweep dir (single runs: ``qt``); each run is named after its job.
    """

    name = "mlflow"
    requires = "mlflow"

    def __init__(self, tracking_uri: str = "sqlite:///outputs/mlflow.db", experiment_name: str | None = None,
                 run_name: str | None = None, request_timeout_s: int = 10, request_retries: int = 2):
        self.tracking_uri, self.experiment_name, self.run_name = str(tracking_uri), experiment_name, run_name
        local = self.tracking_uri.startswith("sqlite:///")
        self.sqlite_db = Path(self.tracking_uri[len("sqlite:///") :]).resolve() if local else None  # a local store
        # a server that is down must cost seconds, not MLflow's default minutes of retries: set for this
        # logger's own calls only (a value the user exported wins), the process's environment restored after
        self.env = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(request_timeout_s)), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(int(request_retries))}
        self.client = None
        self.run_id: str | None = None
        self.logged_epochs = 0

    def _artifact_location(self, name: str) -> str | None:
        """For a local sqlite store, artifacts beside the database (MLflow's default is ./mlruns where you launch)."""
        if self.sqlite_db is None:
            return None  # a server or another store decides
        db = self.sqlite_db
        return (db.parent / f"{db.stem}-artifacts" / name.strip("/").replace("/", "_")).as_uri()

    @contextmanager
    def _creation_lock(self):
        """For a local SQLite store, one process at a time creates (migrates) the store and the experiment:
        an exclusive lock on ``DB.lock`` beside it (POSIX; elsewhere, no lock)."""
        if self.sqlite_db is None:
            yield
            return
        try:
            import fcntl
        except ImportError:
            yield
            return
        with open(self.sqlite_db.with_name(self.sqlite_db.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=self._artifact_location(name))
        except Exception:  # noqa: BLE001 - another trial of the sweep created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    @_bounded_requests
    def start(self, info: RunInfo, done_rows: Sequence[dict]) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        if self.sqlite_db is not None:
            self.sqlite_db.parent.mkdir(parents=True, exist_ok=True)
        name = self.experiment_name or (str(info.sweep_dir) if info.sweep_dir is not None else "qt")
        with self._creation_lock():  # parallel trials on a new SQLite store would each run MLflow's schema migrations
            self.client = MlflowClient(tracking_uri=self.tracking_uri)
            experiment = self._experiment_id(name)
        run_dir = str(info.run_dir.resolve())
        found = self.client.search_runs([experiment], filter_string=f"tags.`qt.run_dir` = '{run_dir}'", max_results=1)
        if found:  # a resumed run: continue the same MLflow run
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            self.logged_epochs = max((int(m.step) for m in self.client.get_metric_history(self.run_id, "train/loss")), default=0)
            return
        run = self.client.create_run(experiment, run_name=self.run_name or info.job, tags={"qt.run_dir": run_dir, "qt.job": info.job})
        self.run_id = run.info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in sorted(flatten(info.config).items())]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    @_bounded_requests
    def log_epoch(self, row: dict) -> None:
        from mlflow.entities import Metric

        epoch = int(row["epoch"])
        if epoch <= self.logged_epochs:
            return  # logged before a kill; the resumed run recomputed the same values
        stamp = _now_ms()
        metrics = [Metric(tag, v, stamp, epoch) for tag, v in epoch_metrics(row).items()]
        self.client.log_batch(self.run_id, metrics=metrics)
        self.logged_epochs = epoch

    @_bounded_requests
    def finish(self, summary: dict, info: RunInfo) -> None:
        from mlflow.entities import Metric

        step, stamp = int(summary.get("epochs_completed") or 0), _now_ms()
        metrics = [Metric(tag, v, stamp, step) for tag, v in final_metrics(summary).items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)
        for name in ("summary.json", "curves.png"):
            if (info.run_dir / name).exists():
                self.client.log_artifact(self.run_id, str(info.run_dir / name))
        status = {"completed": "FINISHED", "pruned": "KILLED", "running": "KILLED"}.get(str(summary.get("status")), "FAILED")
        self.client.set_terminated(self.run_id, status=status)


def _now_ms() -> int:
    return int(time.time() * 1000)
