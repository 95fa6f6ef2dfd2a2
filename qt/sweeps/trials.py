"""A search's bookkeeping of trial outcomes in its Optuna study: what a job's return value, its
run dir and an interrupted driver mean for the trial (used by hydra_plugins.qt_optuna_sweeper).

* a numeric objective: COMPLETE with its value(s);
* NaN (the job could not give one): PRUNED when its run dir says ``pruned``, otherwise FAIL
  with the run's status and reason (trial user attribute ``fail_reason``);
* a trial a killed driver left RUNNING: recorded from its run dir if that finished, else FAIL
  (``interrupted: ...``) and re-queued with the same parameters in the same run dir, so it
  resumes from its checkpoint. Interrupted trials count as neither finished nor failed.

Several drivers may share one study (a SLURM array of sweep processes on one storage). Each
is a :class:`Driver`, known to the study by a heartbeat (study user attribute
``qt_driver:HOST:PID:START``, renewed every 30 s) and named on every trial it asks
(``driver``). A driver reconciles only trials whose driver is gone: on its own host, a
process that no longer exists (checked by pid and start time); elsewhere, a heartbeat older
than two minutes. Each trial is claimed in the storage by ``study.ask()``; a claim beyond the
study's budget (two drivers asking for the last trial at once) is recorded FAIL
``over budget: ...`` and, like interrupted trials, counts as neither finished nor failed.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import psutil
from optuna.trial import TrialState

from qt.results.objectives import objective_values
from qt.results.schema import read_summary
from qt.sweeps.optuna_private import set_user_attr

log = logging.getLogger(__name__)
INTERRUPTED = "interrupted"
OVER_BUDGET = "over budget"
#: fail reasons of trials that count neither as finished nor as failed
NOT_COUNTED = (INTERRUPTED, OVER_BUDGET)
DRIVER_ATTR = "qt_driver:"


def tell(study: optuna.Study, number: int, values: Any = None, state: TrialState | None = None) -> None:
    """study.tell, tolerating the GridSampler's stop() once the grid is exhausted (harmless outside optimize())."""
    try:
        study.tell(number, values, state=state)
    except RuntimeError as e:
        if "Study.stop" not in str(e):
            raise


def fail(study: optuna.Study, number: int, reason: str) -> None:
    set_user_attr(study, number, "fail_reason", reason[:500])
    tell(study, number, state=TrialState.FAIL)
    log.warning("trial %d failed: %s", number, reason)


def record(study: optuna.Study, number: int, value: Any, run_dir: Path | None) -> None:
    """A job's return value as the trial's outcome (its run dir says why when there is no value)."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        fail(study, number, f"objective is not numeric: {value!r}")
        return
    if any(math.isnan(v) for v in values):
        summary = read_summary(run_dir) if run_dir else None
        status = (summary or {}).get("status", "failed")
        if status == "pruned":
            tell(study, number, state=TrialState.PRUNED)
            log.info("trial %d %s", number, summary.get("reason"))
            return
        fail(study, number, f"{status}: {(summary or {}).get('reason') or 'no result'}")
        return
    tell(study, number, values)


class Driver:
    """This sweep process, as the study knows it: a heartbeat every ``interval`` seconds while it runs."""

    def __init__(self, study: optuna.Study, interval: float = 30.0):
        me = psutil.Process()
        self.id = f"{socket.gethostname()}:{me.pid}:{int(me.create_time() * 1000)}"
        self.study, self.interval = study, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_until_stopped, name="qt-driver-heartbeat", daemon=True)

    def beat(self) -> None:
        self.study.set_user_attr(DRIVER_ATTR + self.id, time.time())

    def _beat_until_stopped(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception as e:  # noqa: BLE001 - a missed beat is not fatal: the next one may pass
                log.warning("driver heartbeat not recorded (%s)", e)

    def __enter__(self) -> "Driver":
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.study.set_user_attr(DRIVER_ATTR + self.id, None)  # gone: its trials may be reconciled at once


def driver_alive(study: optuna.Study, driver_id: str | None, grace: float = 120.0) -> bool:
    """Whether the driver that asked a trial still runs (see the module docstring)."""
    if not driver_id:
        return False  # a trial of a driver from before drivers were named
    beat = study.user_attrs.get(DRIVER_ATTR + driver_id)
    if beat is None:
        return False
    host, pid, started = driver_id.rsplit(":", 2)
    if host != socket.gethostname():
        return time.time() - float(beat) < grace
    try:
        return abs(psutil.Process(int(pid)).create_time() * 1000 - int(started)) < 1000
    except (psutil.NoSuchProcess, ValueError):
        return False


def running_elsewhere(study: optuna.Study, me: str) -> int:
    """Trials other live drivers are running now."""
    return sum(
        t.user_attrs.get("driver") != me and driver_alive(study, t.user_attrs.get("driver"))
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    )


def over_budget(study: optuna.Study, number: int, budget: int) -> bool:
    """Whether trial ``number`` came after the budget was claimed (trials counted up to it, itself included)."""
    counted = [t for t in study.get_trials(deepcopy=False) if t.number <= number and not _not_counted(t)]
    return len(counted) > budget


def _not_counted(t: optuna.trial.FrozenTrial) -> bool:
    return t.state == TrialState.FAIL and str(t.user_attrs.get("fail_reason", "")).startswith(NOT_COUNTED)


def reconcile(study: optuna.Study, objective: Any) -> None:
    """Trials a killed driver left RUNNING: record finished ones, re-queue the others in their run dir.
    Trials of drivers that still run are theirs, and left alone."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if driver_alive(study, t.user_attrs.get("driver")):
            continue
        run_dir = t.user_attrs.get("run_dir")
        summary = read_summary(Path(run_dir)) if run_dir and Path(run_dir).exists() else None
        if summary and summary.get("status") in ("completed", "pruned"):
            log.info("trial %d finished (%s) before the interruption: recording it", t.number, summary["status"])
            record(study, t.number, objective_values(summary, objective), Path(run_dir))
            continue
        fail(study, t.number, f"{INTERRUPTED}: the sweep stopped before this trial finished")
        if run_dir:
            study.enqueue_trial(t.params, user_attrs={"resume_subdir": Path(run_dir).name, "retry_of": t.number})


def counts(study: optuna.Study) -> tuple[int, int]:
    """(finished, failed) trials; interrupted (retried) and over-budget claims count as neither."""
    failed = sum(t.state == TrialState.FAIL and not _not_counted(t) for t in study.trials)
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials) + failed, failed
