"""qt's Optuna sweeper: hydra-optuna-sweeper, made persistent, resumable and failure-proof.

Selected with ``hydra/sweeper=qt_optuna`` (the named searches in ``sweeps/`` do). On top of
the stock sweeper:

* ``hydra.sweeper.n_trials`` is the study's total budget: re-running the same command
  resumes the study in its storage and runs only the trials still missing;
* a job dir is named by its trial's number, which the storage gives out: several drivers on one
  study (a SLURM array of sweep processes) never share one (qt.sweeps.trials says how they
  divide the budget and whose trials are reconciled); a job dir holding another run is refused;
* trials left RUNNING by a killed sweep are reconciled (qt.sweeps.trials): finished ones (their run dir says
  completed) are recorded with their values, unfinished ones are marked failed and
  re-queued with the same parameters, in the same run dir, so training resumes from its
  checkpoint;
* the sampler is reseeded when resuming, so it does not re-propose the points it proposed
  before the interruption;
* a trial that raises, diverges (NaN) or fails is recorded FAIL with its reason (trial
  user attribute ``fail_reason``, and its run dir's summary.json); the sweep goes on;
* at the end the sweep dir gets trials.csv, sweep_summary.json and a plot; if every trial
  failed, the sweep ends with a one-line account and exit status 1, not a traceback;
* a study is tied to the fixed overrides it was created with and to its sweep dir: resuming
  it with different overrides, or from another sweep dir, is refused in one line (choose
  another ``hydra.sweeper.study_name``, or the study's own ``hydra.sweep.dir``);
* ``hydra.sweeper.direction`` is derived from ``objective`` (qt.results.objectives.OBJECTIVES); one
  given by hand must agree with it;
* ``hydra.sweeper.max_failure_rate`` (default 1.0: never stop) stops the search, with the
  summary written and exit status 1, once more than that share of its finished trials failed;
* ``hydra/sweeper/pruner=median`` (``none`` by default, ``percentile``, ``successive_halving``,
  ``hyperband``; parameters as ``hydra.sweeper.pruner.n_startup_trials=2``) stops hopeless
  trials early: every job reports its objective per epoch to its trial (qt.sweeps.pruning) and ends
  with status ``pruned`` when the pruner says so; the trial is recorded PRUNED.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import MISSING, OmegaConf
from optuna.trial import TrialState

from qt.results.objectives import EPOCH_OBJECTIVES, OBJECTIVES, objective_directions, objective_names
from qt.training.tasks import TASKS
from qt.sweeps.optuna_private import OptunaSweeperImpl, create_params_from_overrides
from qt.sweeps.trials import OVER_BUDGET, Driver, counts, fail, over_budget, reconcile, record, running_elsewhere
from qt.sweeps.study import make_pruner, make_storage, pareto_trials, write_sweep_summary

log = logging.getLogger(__name__)


@dataclass
class QtOptunaSweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.qt_optuna_sweeper.qt_optuna_sweeper.QtOptunaSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "none"}])
    direction: Any = None  # null: from the objective; given, it must agree with it
    max_failure_rate: float = 1.0  # stop once failed / finished trials exceed it (1.0: never)
    pruner: Any = MISSING  # hydra/sweeper/pruner: none | median | percentile | successive_halving | hyperband


# Optuna's pruners (https://optuna.readthedocs.io/en/stable/reference/pruners.html) with Optuna's
# defaults, but one: the median and percentile pruners judge a run from epoch 2 on, not after its
# first epoch (one epoch says little of a QT run: a circuit that starts badly may catch up; the
# setting measured in README). A step is an epoch: step 1 is the end of the first epoch.
@dataclass
class NopPrunerConf:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class MedianPrunerConf:
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5  # no pruning until this many trials completed
    n_warmup_steps: int = 2  # no pruning at steps (epochs) below this (Optuna: 0)
    interval_steps: int = 1
    n_min_trials: int = 1  # completed trials that must have reported the step


@dataclass
class PercentilePrunerConf(MedianPrunerConf):
    _target_: str = "optuna.pruners.PercentilePruner"
    percentile: float = 25.0  # keep the best 25 % at each step (median: 50)


@dataclass
class SuccessiveHalvingPrunerConf:
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0


@dataclass
class HyperbandPrunerConf:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"  # the most epochs a trial reported; or trainer.epochs
    reduction_factor: int = 3
    bootstrap_count: int = 0


cs = ConfigStore.instance()
cs.store(group="hydra/sweeper", name="qt_optuna", node=QtOptunaSweeperConf, provider="qt")
for _name, _node in (("none", NopPrunerConf), ("median", MedianPrunerConf), ("percentile", PercentilePrunerConf),
                     ("successive_halving", SuccessiveHalvingPrunerConf), ("hyperband", HyperbandPrunerConf)):
    cs.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider="qt")


def refuse(message: str, status: int = 2) -> None:
    """A sweep-level user error: one line on stderr, then exit."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def shown_storage(storage: Any) -> str:
    """A storage URL as it may be logged: any password masked."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", str(storage))


def finish(study: optuna.Study, sweep_dir: Path, directions: list[str], objective: Any, others_running: int = 0) -> None:
    """trials.csv, sweep_summary.json, a plot and optimization_results.yaml; exit 1 if every trial failed."""
    out = write_sweep_summary(sweep_dir, study, objective)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if others_running:
        log.info("%d trials still running in other drivers: the last driver to finish writes the final summary", others_running)
        if not complete:
            return
    if not complete:
        failed = [t for t in study.trials if t.state == TrialState.FAIL]
        reasons = "; ".join(sorted({t.user_attrs.get("fail_reason", "unknown") for t in failed}))[:800]
        pruned = len(study.trials) - len(failed)
        if pruned:  # rare: pruners compare with completed trials
            what = f"no trial of study '{study.study_name}' completed ({pruned} pruned, {len(failed)} failed)"
        else:
            what = f"every trial of study '{study.study_name}' failed ({len(study.trials)} trials)"
        log.error("%s: %s", what, reasons)
        refuse(
            f"{what}{': ' + reasons if reasons else ''}. Details per trial: {sweep_dir / 'trials.csv'}",
            status=1,
        )
    if len(directions) == 1:
        results = {"name": "optuna", "best_params": study.best_trial.params, "best_value": study.best_trial.value}
        log.info("best value %s with %s (run dir %s)", study.best_value, study.best_params, out.get("best_run_dir"))
    else:
        front = pareto_trials(study)
        results = {"name": "optuna", "solutions": [{"params": t.params, "values": t.values} for t in front]}
        log.info("Pareto front: %d trials", len(front))
    OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")


class QtOptunaSweeperImpl(OptunaSweeperImpl):
    pruner: Any = None  # an optuna pruner, or None (set by QtOptunaSweeper)

    def _objective(self) -> Any:
        return OmegaConf.to_container(self.config, resolve=False).get("objective", "best_val_acc")

    def _directions(self) -> list[str]:
        """The objective's directions; a ``hydra.sweeper.direction`` given by hand must agree."""
        objective = self._objective()
        unknown = [n for n in objective_names(objective) if n not in OBJECTIVES]
        if unknown:
            refuse(f"unknown objective {unknown}: choose from {', '.join(OBJECTIVES)}")
        derived = objective_directions(objective)
        if self.direction is not None:
            given = [str(d).lower() for d in self._get_directions()]
            if given != derived:
                refuse(
                    f"hydra.sweeper.direction={given} disagrees with objective={objective} ({derived}): "
                    "drop hydra.sweeper.direction (qt derives it from the objective)"
                )
        return derived

    def _check_pruning(self) -> None:
        """A pruner needs one per-epoch objective and a study the jobs can open (they report to it)."""
        if self.pruner is None:
            return
        name = type(self.pruner).__name__
        objective = self._objective()
        if not isinstance(objective, str) or objective not in EPOCH_OBJECTIVES:
            target = str((OmegaConf.to_container(self.config, resolve=False).get("task") or {}).get("_target_", ""))
            task = next((t for t in TASKS.values() if target == f"{t.__module__}.{t.__qualname__}"), TASKS["classification"])
            options = [*task.objectives, *(o for o in EPOCH_OBJECTIVES if not o.startswith("best_val_"))]  # the run's task's
            refuse(
                f"{name} prunes on one objective a run has after every epoch, not objective={objective}: "
                f"choose one of {', '.join(options)}, or set hydra/sweeper/pruner=none"
            )
        if self.storage is None:
            refuse(
                f"{name} needs a study its trials can report to: set hydra.sweeper.storage "
                "(sqlite:///${hydra.sweep.dir}/study.db, journal:PATH or an RDB URL) and hydra.sweeper.study_name"
            )

    def _search_space(self, arguments: list[str]) -> tuple[dict, dict, list[str]]:
        """(distributions, fixed params, fixed overrides) from the config's params and the command line."""
        self._process_searchspace_config()
        params_conf = self._parse_sweeper_params_config()
        params_conf.extend(arguments)
        space, fixed_params, fixed_overrides = create_params_from_overrides(params_conf)
        for name in fixed_params:  # a value fixed on the command line replaces the config's search range
            space.pop(name, None)
        if isinstance(self.sampler, functools.partial) and self.sampler.func == optuna.samplers.GridSampler:
            grid = {name: self._to_grid_sampler_choices(d) for name, d in space.items()}
            self.sampler = self.sampler(grid)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in grid.values()))
        return space, fixed_params, fixed_overrides

    def _open_study(self, directions: list[str], signature: list[str], sweep_dir: Path) -> optuna.Study:
        """Create or resume the study; refuse one created with other fixed overrides or for another sweep dir."""
        study = optuna.create_study(
            study_name=self.study_name, storage=make_storage(self.storage), sampler=self.sampler,
            pruner=self.pruner, directions=directions, load_if_exists=True,
        )
        if list(study.directions) and [d.name.lower() for d in study.directions] != directions:
            refuse(
                f"study '{study.study_name}' optimises {[d.name.lower() for d in study.directions]}, this objective needs "
                f"{directions}: set hydra.sweeper.study_name=NEW for a new study"
            )
        names = objective_names(self._objective())
        if study.metric_names is None:
            with warnings.catch_warnings():  # "experimental" since Optuna 3.2, and the one way to name them
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(names)  # dashboards and Optuna's plots name the objective, not "Objective 0"
        elif list(study.metric_names) != names:
            refuse(f"study '{study.study_name}' optimises {study.metric_names}, this command {names}: set hydra.sweeper.study_name=NEW for a new study")
        home = str(sweep_dir.resolve())
        for key, value, what in (("qt_fixed_overrides", signature, "overrides"), ("qt_sweep_dir", home, "sweep dir")):
            previous = study.user_attrs.get(key)
            if previous is None:
                study.set_user_attr(key, value)
            elif previous != value:
                hint = f"hydra.sweep.dir={previous} to resume it" if key == "qt_sweep_dir" else "the same overrides"
                refuse(
                    f"study '{study.study_name}' in {shown_storage(self.storage)} was created with {what} {previous}, "
                    f"this command has {value}: rerun with {hint}, or set hydra.sweeper.study_name=NEW for a new study"
                )
        return study

    def _claim(self, study: optuna.Study, driver: Driver, size: int) -> list:
        """Ask ``size`` trials (each claimed in the storage); a claim past the budget is recorded and dropped."""
        trials = []
        for _ in range(size):
            trial = study.ask()
            trial.set_user_attr("driver", driver.id)
            if over_budget(study, trial.number, self.n_trials):
                fail(study, trial.number, f"{OVER_BUDGET}: another driver claimed the study's last trials first")
                break
            trials.append(trial)
        return trials

    def _run_batch(self, study, space, fixed_params, fixed_overrides, sweep_dir: Path, trials: list) -> None:
        """Launch ``trials`` together, each in the job dir named by its trial number (or the one it resumes), record each result."""
        overrides = [list(o) for o in self._configure_trials(trials, space, fixed_params, fixed_overrides)]
        run_dirs = []
        for i, trial in enumerate(trials):
            subdir = trial.user_attrs.get("resume_subdir") or str(trial.number)
            overrides[i].append(f"hydra.sweep.subdir={subdir}")
            trial.set_user_attr("run_dir", str(sweep_dir / subdir))
            run_dirs.append(sweep_dir / subdir)
        returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
        self.job_idx += len(returns)
        for trial, ret, run_dir in zip(trials, returns, run_dirs):
            try:
                value = ret.return_value
            except Exception as e:  # noqa: BLE001 - the job raised: record it, go on
                fail(study, trial.number, f"{type(e).__name__}: {e}")
                continue
            record(study, trial.number, value, run_dir)

    def sweep(self, arguments: list[str]) -> None:
        space, fixed_params, fixed_overrides = self._search_space(arguments)
        directions = self._directions()
        self._check_pruning()
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        signature = sorted([*fixed_overrides, *(f"{k}={v}" for k, v in fixed_params.items())])
        study = self._open_study(directions, signature, sweep_dir)
        with Driver(study) as driver:
            if study.trials:
                reconcile(study, self._objective())
                if hasattr(self.sampler, "reseed_rng"):
                    self.sampler.reseed_rng()  # do not re-propose the points of the interrupted run
            self.job_idx = 0
            finished, _ = counts(study)
            log.info(
                "study %s (%s): %d of %d trials finished, %d running in other drivers; directions %s",
                study.study_name, shown_storage(self.storage), finished, self.n_trials, running_elsewhere(study, driver.id), directions,
            )  # fmt: skip
            while (to_go := self.n_trials - counts(study)[0] - running_elsewhere(study, driver.id)) > 0:
                trials = self._claim(study, driver, min(to_go, self.n_jobs))
                if not trials:
                    break
                self._run_batch(study, space, fixed_params, fixed_overrides, sweep_dir, trials)
                finished, failed = counts(study)
                if finished < self.n_trials and failed > self.max_failure_rate * finished:
                    write_sweep_summary(sweep_dir, study, self._objective())
                    refuse(
                        f"{failed} of {finished} finished trials failed, more than hydra.sweeper.max_failure_rate="
                        f"{self.max_failure_rate}: the search stopped with {self.n_trials - finished} trials to go. "
                        f"Details per trial: {sweep_dir / 'trials.csv'}",
                        status=1,
                    )
            others = running_elsewhere(study, driver.id)
        finish(study, sweep_dir, directions, self._objective(), others)


class QtOptunaSweeper(OptunaSweeper):
    """hydra-optuna-sweeper's config and search-space syntax, with qt's persistence and failure handling."""

    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: Any | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        custom_search_space: str | None,
        params: Any | None,
        pruner: Any = None,
    ) -> None:
        if not (isinstance(max_failure_rate, (int, float)) and 0.0 <= max_failure_rate <= 1.0):
            refuse(f"hydra.sweeper.max_failure_rate must be in [0, 1] (got {max_failure_rate!r}): 0 stops at the first failure, 1 never")
        sampler = instantiate(
            sampler, _execution_whitelist_=("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*")
        )
        if not isinstance(n_jobs, int) or n_jobs < 1:  # a launcher's "all cores" (-1)
            n_jobs = os.cpu_count() or 1
        self.sweeper = QtOptunaSweeperImpl(
            sampler, direction, storage, study_name, n_trials, n_jobs, float(max_failure_rate), custom_search_space, params
        )
        self.sweeper.pruner = make_pruner(pruner)
