"""Every private API qt uses, in one place, pinned and tested.

Optuna and the upstream Hydra sweeper offer no public call for these; setup.cfg pins the
versions they were written against (optuna==5.0.0, hydra-optuna-sweeper==1.4.0rc3) and
tests/unit/test_sweeps.py::test_the_private_apis_qt_uses_still_work exercises each one, so an
upgrade that breaks them fails there first, not in a study.

* :func:`running_trial`: a handle on a RUNNING trial of the study, from a job process (a
  trial's side of pruning reports to the trial the driver asked for). Optuna hands out
  ``optuna.Trial`` objects only from ``study.ask()``.
* :func:`set_user_attr`: a user attribute on a trial known by its number (the driver records
  why a trial failed, including trials of an earlier, killed driver). Optuna's
  ``Trial.set_user_attr`` needs the ``optuna.Trial`` object of the process that asked.
* ``OptunaSweeperImpl`` and ``create_params_from_overrides``: the upstream sweeper's
  implementation, which qt's sweeper extends (``hydra_plugins.hydra_optuna_sweeper._impl``).
"""

from __future__ import annotations

from typing import Any

import optuna
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides

__all__ = ["OptunaSweeperImpl", "create_params_from_overrides", "running_trial", "set_user_attr"]


def running_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> optuna.Trial:
    """An ``optuna.Trial`` for a RUNNING trial another process asked for (to report and ask should_prune)."""
    return optuna.Trial(study, trial._trial_id)


def set_user_attr(study: optuna.Study, number: int, key: str, value: Any) -> None:
    """Set a user attribute of the study's trial ``number``, whichever process asked for it."""
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    study._storage.set_trial_user_attr(trial_id, key, value)
