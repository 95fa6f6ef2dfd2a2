"""Objectives: the summary fields a run is judged by, their directions, and Pareto fronts (the one definition of each)."""

from __future__ import annotations

import math
from typing import Any


#: summary fields a run can be judged by (``objective=NAME``, or a list for multi-objective
#: searches), each with the direction a sweep optimises it in: the one definition of both
OBJECTIVES = {
    "best_val_acc": "maximize",
    "best_val_mse": "minimize",  # task=sequence
    "best_val_return": "maximize",  # task=rl
    "val_loss": "minimize",
    "train_loss": "minimize",
    "trainable_params": "minimize",
    "compression_ratio": "maximize",
    "train_time_s": "minimize",
    "wall_time_s": "minimize",
}


#: objectives a run has after every epoch, so a sweep's pruner can compare runs mid-training:
#: the value of the model the run would keep if it stopped there (best validation epoch so far;
#: without a validation split, the last epoch), from that epoch's metrics.csv row. train_loss
#: is the epoch's running mean here, where the finished run re-evaluates the kept model.
EPOCH_OBJECTIVES = {"best_val_acc": "val_acc", "best_val_mse": "val_mse", "best_val_return": "val_return", "val_loss": "val_loss", "train_loss": "train_loss"}

#: the metrics.csv column that picks a task's kept epoch, and whether higher is better (qt.training.tasks)
MONITORS = {"val_acc": True, "val_mse": False, "val_return": True}


def epoch_objective(rows: list[dict], objective: str) -> float:
    """``objective`` after the last of ``rows`` (metrics.csv rows so far), as a sweep's pruner sees it."""
    kept = rows[-1]
    for column, higher in MONITORS.items():
        scored = [r for r in rows if r.get(column) is not None]
        if scored:  # the first best, as the loop keeps
            kept = max(scored, key=lambda r: r[column]) if higher else min(scored, key=lambda r: r[column])
            break
    return float(kept[EPOCH_OBJECTIVES[objective]])


def objective_names(objective: Any) -> list[str]:
    """``objective`` (a name or a list of names) as a list."""
    return [objective] if isinstance(objective, str) else list(objective)


def objective_directions(objective: Any) -> list[str]:
    """The direction ("maximize" / "minimize") of each objective, in order."""
    return [OBJECTIVES[name] for name in objective_names(objective)]


def objective_values(summary: dict | None, objective: Any) -> float | tuple[float, ...]:
    """The objective(s) of a run from its summary; NaN unless the run completed (a sweep records NaN as failed)."""
    completed = bool(summary) and summary.get("status") == "completed"
    values = []
    for name in objective_names(objective):
        value = (summary or {}).get(name, ((summary or {}).get("params") or {}).get(name))
        values.append(float(value) if completed and value is not None else math.nan)
    return values[0] if isinstance(objective, str) else tuple(values)


def pareto_front(points: list[tuple[float, ...]], directions: list[str]) -> list[int]:
    """Indices of the points that no other point dominates (as good in every objective, better in one)."""
    sign = [1.0 if d == "maximize" else -1.0 for d in directions]
    scored = [tuple(s * v for s, v in zip(sign, p)) for p in points]

    def dominates(a: tuple, b: tuple) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [i for i, p in enumerate(scored) if not any(dominates(q, p) for q in scored)]
