"""A search's bookkeeping of trial outcomes in its Optuna study: what a job's return value, its
run dir and an interrupted driver mean for the trial (used by hydra_plugins.qt_optuna_sweeper).

* a numeric objective: COMPLETE with its value(s);
* NaN (the job could not give one): PRUNED when its run dir says ``pruned``, otherwise FAIL
  with the run's status and reason (trial user attribute ``fail_reason``);
* a trial a killed driver left RUNNING: recorded from its run dir if that finished, else FAIL
  (``interrupted: ...``) and re-queued with the same parameters in the same run dir, so it
  resumes from its checkpoint. Interrupted trials count as neither finished nor failed.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from qt.results.objectives import objective_values
from qt.results.schema import read_summary
from qt.sweeps.optuna_private import set_user_attr

log = logging.getLogger(__name__)
INTERRUPTED = "interrupted"


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


def reconcile(study: optuna.Study, objective: Any) -> None:
    """Trials a killed sweep left RUNNING: record finished ones, re-queue the others in their run dir."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
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
    """(finished, failed) trials; interrupted ones are retried and count as neither."""
    failed = sum(
        t.state == TrialState.FAIL and not str(t.user_attrs.get("fail_reason", "")).startswith(INTERRUPTED)
        for t in study.trials
    )
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials) + failed, failed
