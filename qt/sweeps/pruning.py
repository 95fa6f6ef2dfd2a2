"""Pruning, a trial's side: report every epoch to the trial's Optuna study, stop when its pruner says so.

The qt_optuna sweeper records each trial's run dir (trial user attribute ``run_dir``) before
it launches the trial, on any launcher. A job of a search with a pruner
(``hydra/sweeper/pruner=median``, ...) opens the study in the sweep's storage with that
pruner, finds the RUNNING trial whose run dir is its own, and after every epoch reports
:func:`qt.results.objectives.epoch_objective` at step = epoch (1 = the first epoch's end). Epochs a
resumed run finished in an earlier session are reported first, each step once: a re-queued
trial is a new Optuna trial and starts with no intermediate values. After the last epoch
nothing is pruned (the run is complete).

Without a pruner, outside a multirun, or where no trial claims the run dir, nothing is
reported and the run trains exactly as it would anyway.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from qt.results.objectives import epoch_objective
from qt.training.callbacks import Callback
from qt.training.state import Pruned
from qt.sweeps.optuna_private import running_trial
from qt.sweeps.study import make_pruner, make_storage

log = logging.getLogger(__name__)


class TrialPruning(Callback):
    """A training callback: after each epoch, report to the trial and raise :class:`~qt.training.state.Pruned` when its pruner says so."""

    def __init__(self, trial: Any, objective: str, reported: set[int]):
        self.trial = trial  # optuna.Trial
        self.objective = objective
        self.reported = reported  # steps the trial holds already (a job restarted within its trial)

    def on_epoch_end(self, trainer, row: dict) -> None:
        why = self(trainer.state.rows, trainer.state.epoch >= trainer.cfg.epochs)
        if why:
            raise Pruned(why)

    def __call__(self, rows: list[dict], last_epoch: bool) -> str | None:
        """Report the epochs not yet reported; why to stop, or None."""
        for i, row in enumerate(rows):
            step = int(row["epoch"])
            if step not in self.reported:
                self.trial.report(epoch_objective(rows[: i + 1], self.objective), step)
                self.reported.add(step)
        if last_epoch or not self.trial.should_prune():
            return None
        pruner = type(self.trial.study.pruner).__name__
        value = epoch_objective(rows, self.objective)
        return f"pruned by {pruner} after epoch {rows[-1]['epoch']} ({self.objective} so far {value:.4g})"


def connect(sweeper: Any, run_dir: Path, objective: Any) -> TrialPruning | None:
    """The pruning of this job's trial, or None (no pruner, no study, or no trial running in ``run_dir``)."""
    pruner = make_pruner(sweeper.get("pruner"))
    if pruner is None:
        return None
    import optuna  # the objective and the storage were checked by the sweeper before any trial started

    try:
        study = optuna.load_study(study_name=sweeper.study_name, storage=make_storage(sweeper.storage), pruner=pruner)
    except KeyError:
        log.warning("pruning off for this run: no study '%s' in the sweep's storage", sweeper.study_name)
        return None
    here = Path(run_dir).resolve()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.user_attrs.get("run_dir") and Path(t.user_attrs["run_dir"]).resolve() == here:
            log.info("pruning: reporting %s per epoch to trial %d of study '%s' (%s)", objective, t.number,
                     study.study_name, type(pruner).__name__)
            return TrialPruning(running_trial(study, t), objective, set(t.intermediate_values))
    log.warning("pruning off for this run: no running trial of study '%s' has run dir %s", study.study_name, here)
    return None
