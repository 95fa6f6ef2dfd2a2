"""qt's Optuna sweeper: hydra-optuna-sweeper, made persistent, resumable and failure-proof.

Selected with ``hydra/sweeper=qt_optuna`` (the named searches in ``sweeps/`` do). On top of
the stock sweeper:

* ``hydra.sweeper.n_trials`` is the study's total budget: re-running the same command
  resumes the study in its storage and runs only the trials still missing;
* job dirs are never overwritten: numbering continues after the highest job dir present;
* trials left RUNNING by a killed sweep are reconciled: finished ones (their run dir says
  completed) are recorded with their values, unfinished ones are marked failed and
  re-queued with the same parameters, in the same run dir, so training resumes from its
  checkpoint;
* the sampler is reseeded when resuming, so it does not re-propose the points it proposed
  before the interruption;
* a trial that raises, diverges (NaN) or fails is recorded FAIL with its reason (trial
  user attribute ``fail_reason``, and its run dir's summary.json); the sweep goes on;
* at the end the sweep dir gets trials.csv, sweep_summary.json and a plot; if every trial
  failed, the sweep ends with a one-line account and exit status 1, not a traceback;
* a study is tied to the fixed overrides it was created with: resuming it with different
  ones is refused (choose another ``hydra.sweeper.study_name``).
"""

from __future__ import annotations

import functools
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import OmegaConf
from optuna.trial import TrialState

log = logging.getLogger(__name__)
INTERRUPTED = "interrupted"


@dataclass
class QtOptunaSweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.qt_optuna_sweeper.qt_optuna_sweeper.QtOptunaSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="qt_optuna", node=QtOptunaSweeperConf, provider="qt")


def next_job_index(sweep_dir: Path) -> int:
    nums = [int(p.name) for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()] if sweep_dir.is_dir() else []
    return max(nums) + 1 if nums else 0


def tell(study: optuna.Study, number: int, values: Any = None, state: TrialState | None = None) -> None:
    """study.tell, tolerating the GridSampler's stop() once the grid is exhausted (harmless outside optimize())."""
    try:
        study.tell(number, values, state=state)
    except RuntimeError as e:
        if "Study.stop" not in str(e):
            raise


class QtOptunaSweeperImpl(OptunaSweeperImpl):
    def _objective(self) -> Any:
        return OmegaConf.to_container(self.config, resolve=False).get("objective", "best_val_acc")

    def _fail(self, study: optuna.Study, number: int, reason: str) -> None:
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
        study._storage.set_trial_user_attr(trial_id, "fail_reason", reason[:500])
        tell(study, number, state=TrialState.FAIL)
        log.warning("trial %d failed: %s", number, reason)

    def _record(self, study: optuna.Study, number: int, value: Any, run_dir: Path | None) -> None:
        from qt.results import read_summary

        values = list(value) if isinstance(value, (list, tuple)) else [value]
        try:
            values = [float(v) for v in values]
        except (TypeError, ValueError):
            self._fail(study, number, f"objective is not numeric: {value!r}")
            return
        if any(math.isnan(v) for v in values):
            summary = read_summary(run_dir) if run_dir else None
            status = (summary or {}).get("status", "failed")
            self._fail(study, number, f"{status}: {(summary or {}).get('reason') or 'no result'}")
            return
        tell(study, number, values)

    def _reconcile(self, study: optuna.Study) -> None:
        """Trials a killed sweep left RUNNING: record finished ones, re-queue the others in their run dir."""
        from qt.results import read_summary
        from qt.run import objective_values

        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            run_dir = t.user_attrs.get("run_dir")
            summary = read_summary(Path(run_dir)) if run_dir and Path(run_dir).exists() else None
            if summary and summary.get("status") == "completed":
                log.info("trial %d finished before the interruption: recording it", t.number)
                self._record(study, t.number, objective_values(summary, self._objective()), Path(run_dir))
                continue
            self._fail(study, t.number, f"{INTERRUPTED}: the sweep stopped before this trial finished")
            if run_dir:
                study.enqueue_trial(t.params, user_attrs={"resume_subdir": Path(run_dir).name, "retry_of": t.number})

    def sweep(self, arguments: list[str]) -> None:
        from qt.sweep import make_storage, write_sweep_summary

        self._process_searchspace_config()
        params_conf = self._parse_sweeper_params_config()
        params_conf.extend(arguments)
        is_grid = isinstance(self.sampler, functools.partial) and self.sampler.func == optuna.samplers.GridSampler
        space, fixed_params, fixed_overrides = create_params_from_overrides(params_conf)
        for name in fixed_params:  # a value fixed on the command line replaces the config's search range
            space.pop(name, None)
        if is_grid:
            grid = {name: self._to_grid_sampler_choices(d) for name, d in space.items()}
            self.sampler = self.sampler(grid)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in grid.values()))
        directions = self._get_directions()
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)

        study = optuna.create_study(
            study_name=self.study_name,
            storage=make_storage(self.storage),
            sampler=self.sampler,
            directions=directions,
            load_if_exists=True,
        )
        signature = sorted([*fixed_overrides, *(f"{k}={v}" for k, v in fixed_params.items())])
        previous = study.user_attrs.get("qt_fixed_overrides")
        if previous is None:
            study.set_user_attr("qt_fixed_overrides", signature)
        elif previous != signature:
            print(
                f"error: study '{study.study_name}' was created with overrides {previous}, this command has {signature}: "
                "rerun with the same overrides, or set hydra.sweeper.study_name=NEW for a new study",
                file=sys.stderr,
            )
            sys.exit(2)
        if study.trials:
            self._reconcile(study)
            if hasattr(self.sampler, "reseed_rng"):
                self.sampler.reseed_rng()  # do not re-propose the points of the interrupted run
        # the budget counts finished trials; interrupted ones are retried and do not count
        finished = sum(
            t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and not str(t.user_attrs.get("fail_reason", "")).startswith(INTERRUPTED))
            for t in study.trials
        )
        to_go = max(0, self.n_trials - finished)
        self.job_idx = next_job_index(sweep_dir)
        log.info(
            "study %s (%s): %d trials finished, %d to run; job dirs from %d; directions %s",
            study.study_name, self.storage, finished, to_go, self.job_idx, directions,
        )

        while to_go > 0:
            batch = min(to_go, self.n_jobs)
            trials = [study.ask() for _ in range(batch)]
            overrides = [list(o) for o in self._configure_trials(trials, space, fixed_params, fixed_overrides)]
            run_dirs = []
            for i, trial in enumerate(trials):
                subdir = trial.user_attrs.get("resume_subdir")
                if subdir is not None:
                    overrides[i].append(f"hydra.sweep.subdir={subdir}")
                run_dir = sweep_dir / (subdir if subdir is not None else str(self.job_idx + i))
                trial.set_user_attr("run_dir", str(run_dir))
                run_dirs.append(run_dir)
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            for trial, ret, run_dir in zip(trials, returns, run_dirs):
                try:
                    value = ret.return_value
                except Exception as e:  # noqa: BLE001 - the job raised: record it, go on
                    self._fail(study, trial.number, f"{type(e).__name__}: {e}")
                    continue
                self._record(study, trial.number, value, run_dir)
            to_go -= batch

        out = write_sweep_summary(sweep_dir, study, self._objective())
        complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
        if not complete:
            reasons = "; ".join(sorted({t.user_attrs.get("fail_reason", "unknown") for t in study.trials}))[:800]
            log.error("every trial failed (%d): %s", len(study.trials), reasons)
            print(
                f"error: every trial of study '{study.study_name}' failed ({len(study.trials)} trials): {reasons}. "
                f"Details per trial: {sweep_dir / 'trials.csv'}",
                file=sys.stderr,
            )
            sys.exit(1)
        if len(directions) == 1:
            results = {"name": "optuna", "best_params": study.best_trial.params, "best_value": study.best_trial.value}
            log.info("best value %s with %s (run dir %s)", study.best_value, study.best_params, out.get("best_run_dir"))
        else:
            results = {"name": "optuna", "solutions": [{"params": t.params, "values": t.values} for t in study.best_trials]}
            log.info("Pareto front: %d trials", len(study.best_trials))
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")


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
    ) -> None:
        sampler = instantiate(
            sampler, _execution_whitelist_=("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*")
        )
        self.sweeper = QtOptunaSweeperImpl(
            sampler, direction, storage, study_name, n_trials, n_jobs, max_failure_rate, custom_search_space, params
        )
