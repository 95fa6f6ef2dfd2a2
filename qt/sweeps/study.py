"""Sweep bookkeeping: persistent Optuna studies and the summary every sweep dir gets.

* :func:`make_storage`: an Optuna storage from a config value: an RDB URL
  (``sqlite:///${hydra.sweep.dir}/study.db`` in the named searches, ``postgresql://...``) or
  ``journal:PATH`` for Optuna's journal file (safe on shared file systems).
* :func:`make_pruner`: the Optuna pruner of a sweeper config (``hydra/sweeper/pruner``), or
  None where it prunes nothing; the sweep process and every job build it the same way.
* :func:`write_sweep_summary`: from a sweep dir's job dirs (the one results schema) and,
  for Optuna sweeps, the study: ``trials.csv`` (one row per trial: number, state (COMPLETE,
  PRUNED, FAIL), value(s), params, epochs trained, duration, run dir, reason),
  ``sweep_summary.json`` (best params and value, or the Pareto front; counts per state; the
  epochs all trials trained) and ``optimization_history.png``.
* :class:`SweepSummary`: a Hydra callback that writes that summary at the end of every
  multirun, whatever the sweeper.
"""

from __future__ import annotations

import json
import time
import logging
import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from qt.results.objectives import objective_directions, objective_names, objective_values, pareto_front
from qt.results.plots import pyplot, save_png
from qt.results.schema import atomic_write, read_summary, write_csv

log = logging.getLogger(__name__)


def make_storage(value: Any) -> Any:
    """Optuna storage for a config value (None: in memory)."""
    if value is None:
        return None
    text = str(value)
    if text.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = Path(text[len("journal:") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if not text.startswith("sqlite:///"):
        return text  # another RDB URL: Optuna builds it
    Path(text[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return sqlite_storage(text)


def sqlite_storage(url: str, attempts: int = 6):
    """An RDBStorage on a SQLite file that several processes may open at once (several sweep drivers, their jobs):
    writers wait for the lock (60 s) instead of failing, and two processes creating the schema of a new
    file at the same moment (one of them finds a table the other just made) retry."""
    import sqlalchemy
    from optuna.storages import RDBStorage

    for attempt in range(attempts):
        try:
            return RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as e:
            if "already exists" not in str(e) and "UNIQUE constraint" not in str(e) or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def make_pruner(pruner_cfg: Any):
    """The pruner a sweeper config names (``hydra.sweeper.pruner``), or None for none (``NopPruner``)."""
    if pruner_cfg is None or str(pruner_cfg.get("_target_", "")).endswith("NopPruner"):
        return None
    from hydra.utils import instantiate

    return instantiate(pruner_cfg, _execution_whitelist_=("optuna.pruners.*",))


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job dirs of a sweep (numbered subdirs holding a Hydra config), in job order."""
    dirs = [p for p in Path(sweep_dir).iterdir() if p.is_dir() and (p / ".hydra").is_dir()] if Path(sweep_dir).is_dir() else []
    return sorted(dirs, key=lambda p: (0, int(p.name)) if p.name.isdigit() else (1, p.name))


def _overrides(run_dir: Path) -> dict[str, str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return {}
    out = {}
    for item in OmegaConf.to_container(OmegaConf.load(path)):
        key, _, value = str(item).partition("=")
        if not key.startswith("hydra."):
            out[key.lstrip("+~")] = value
    return out


def _load_study(config: DictConfig):
    sweeper = config.hydra.get("sweeper") or {}
    if sweeper.get("storage") is None or sweeper.get("study_name") is None:
        return None
    import optuna

    try:
        study = optuna.load_study(study_name=sweeper.study_name, storage=make_storage(sweeper.storage))
    except KeyError:
        return None
    home = study.user_attrs.get("qt_sweep_dir")
    if home is not None and home != str(Path(config.hydra.sweep.dir).resolve()):
        return None  # another sweep dir's study (the sweeper refused this command)
    return study


def _study_rows(study, names: list[str]) -> list[dict]:
    """One row per trial of an Optuna study, with its run dir's status and reason."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        run_dir = t.user_attrs.get("run_dir")
        summary = read_summary(Path(run_dir)) if run_dir and Path(run_dir).exists() else None
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        rows.append({
            "trial": t.number,
            "state": t.state.name,
            "run_status": (summary or {}).get("status"),
            **{f"value_{n}": (t.values[i] if t.values else None) for i, n in enumerate(names)},
            **{f"param_{k}": v for k, v in sorted(t.params.items())},
            "epochs": (summary or {}).get("epochs_completed"),
            "duration_s": duration,
            "run_dir": run_dir,
            "reason": t.user_attrs.get("fail_reason") or (summary or {}).get("reason"),
        })
    return rows


def _job_rows(sweep_dir: Path, objective: Any, names: list[str]) -> list[dict]:
    """One row per job dir of a sweep without a study (grids, ad-hoc multiruns)."""
    rows = []
    for run_dir in job_dirs(sweep_dir):
        summary = read_summary(run_dir) or {}
        values = objective_values(summary, objective)
        values = values if isinstance(values, tuple) else (values,)
        completed = summary.get("status") == "completed"
        rows.append({
            "trial": int(run_dir.name) if run_dir.name.isdigit() else run_dir.name,
            "state": {"completed": "COMPLETE", "pruned": "PRUNED"}.get(summary.get("status"), "FAIL"),
            "run_status": summary.get("status", "incomplete"),
            **{f"value_{n}": (v if completed else None) for n, v in zip(names, values)},
            **{f"param_{k}": v for k, v in sorted(_overrides(run_dir).items())},
            "epochs": summary.get("epochs_completed"),
            "duration_s": summary.get("wall_time_s"),  # the run's whole wall time (all sessions)
            "run_dir": str(run_dir),
            "reason": summary.get("reason"),
        })
    return rows


def pareto_trials(study) -> list:
    """The completed trials of a multi-objective study that no other dominates (qt.results.objectives.pareto_front)."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    return [done[i] for i in pareto_front([tuple(t.values) for t in done], [d.name.lower() for d in study.directions])]


def _best(rows: list[dict], study, names: list[str]) -> dict:
    """The best trial (one objective) or the Pareto front (several), or why there is none."""
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    if study is not None and len(study.directions) > 1:
        return {"pareto_front": [{"trial": t.number, "values": t.values, "params": t.params} for t in pareto_trials(study)]}
    if not complete:
        return {"failure_reasons": sorted({str(r.get("reason")) for r in rows})}
    if study is not None:
        best = study.best_trial
        return {"best_trial": best.number, "best_value": best.value, "best_params": best.params,
                "best_run_dir": best.user_attrs.get("run_dir")}
    key = f"value_{names[0]}"
    row = (max if objective_directions(names)[0] == "maximize" else min)(complete, key=lambda r: r[key])
    return {"best_trial": row["trial"], "best_value": row[key], "best_run_dir": row["run_dir"],
            "best_params": {k[6:]: v for k, v in row.items() if k.startswith("param_")}}


def _plot_study(study, sweep_dir: Path, names: list[str]) -> None:
    """optimization_history.png (one objective) or pareto_front.png (several)."""
    import optuna

    plt = pyplot()
    if len(study.directions) == 1:
        ax, name = optuna.visualization.matplotlib.plot_optimization_history(study), "optimization_history.png"
    else:
        ax, name = optuna.visualization.matplotlib.plot_pareto_front(study, target_names=names), "pareto_front.png"
    try:
        ax.figure.tight_layout()
        save_png(ax.figure, sweep_dir / name)
    finally:
        plt.close(ax.figure)


def write_sweep_summary(sweep_dir: Path, study=None, objective: Any = "best_val_acc") -> dict:
    """Write trials.csv, sweep_summary.json and (for a study) its plot into ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    names = objective_names(objective)
    rows = _study_rows(study, names) if study is not None else _job_rows(sweep_dir, objective, names)
    write_csv(sweep_dir / "trials.csv", rows)
    states: dict[str, int] = {}
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
    epochs = sum(int(r["epochs"] or 0) for r in rows)  # what the search cost, pruned trials' epochs included
    out: dict[str, Any] = {"sweep_dir": str(sweep_dir), "objective": names, "n_trials": len(rows), "states": states, "epochs_run": epochs}
    out.update(_best(rows, study, names))
    text = json.dumps(out, indent=2, default=str) + "\n"
    atomic_write(sweep_dir / "sweep_summary.json", lambda f: f.write(text.encode()))  # several drivers may write it
    if study is not None and states.get("COMPLETE"):
        _plot_study(study, sweep_dir, names)
    return out


class SweepSummary(Callback):
    """Hydra callback: summarise every multirun into its sweep dir."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        try:
            study = _load_study(config)
            if study is None and not job_dirs(sweep_dir):
                return  # nothing ran here
            out = write_sweep_summary(sweep_dir, study, config.get("objective", "best_val_acc"))
        except Exception as e:  # noqa: BLE001 - a summary problem must not turn a finished sweep into a failure
            log.warning("could not write the sweep summary: %s", e)
            return
        best = out.get("best_value")
        log.info(
            "sweep summary: %s trials %s; best %s %s -> %s",
            out["n_trials"],
            out["states"],
            out["objective"],
            "n/a" if best is None or (isinstance(best, float) and math.isnan(best)) else best,
            sweep_dir / "sweep_summary.json",
        )
