"""The one results schema: what every run writes into its run dir, and every tool reads.

Run dir layout::

    .hydra/config.yaml      the composed config (Hydra)
    train.log               the log (Hydra)
    metrics.csv             one row per finished epoch, columns METRIC_COLUMNS (epoch_train_time_s:
                            the epoch's training steps; validation and checkpoints not included)
    summary.json            SUMMARY_KEYS (``init``: first-step loss and per-tensor weight scale at init); rewritten at start (status "running") and at the end
    curves.png              loss and accuracy curves
    checkpoints/last.pt     full training state for resume (written atomically)
    checkpoints/best.pt     learner state at the best validation accuracy (written atomically)

Times in summary.json: ``train_time_s`` is the time spent in training steps (forward,
backward, optimizer), ``wall_time_s`` the whole run (data loading, training, validation,
checkpoints, plots, final evaluation), both summed over resumed sessions (a killed session
counts up to its last checkpoint); ``step_time_s`` is the median training step.
``status`` is one of STATUSES. Older or half-written run dirs are detected with
:func:`read_summary` (schema_version, missing file) rather than crashed on.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from qt.errors import QTError

#: 2: ``train_time_s`` (training steps) and ``wall_time_s`` (the whole run) replace v1's ``wall_time_s``
SCHEMA_VERSION = 2
STATUSES = ("running", "completed", "pruned", "diverged", "failed")  # pruned: an Optuna pruner stopped it (sweeps)

METRIC_COLUMNS = [
    "epoch",
    "step",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "grad_norm_circuit",
    "grad_norm_mapping",
    "grad_norm_target",
    "epoch_train_time_s",
    "steps_per_s",
]

SUMMARY_KEYS = [
    "schema_version",
    "status",
    "reason",
    "mode",
    "params",
    "init",
    "best_val_acc",
    "best_epoch",
    "val_loss",
    "test_acc",
    "test_loss",
    "test_subset_acc",
    "train_acc",
    "train_loss",
    "epochs_completed",
    "steps",
    "train_time_s",
    "wall_time_s",
    "step_time_s",
    "data_sizes",
    "teacher",
    "started_at",
    "finished_at",
    "versions",
    "config",
]


#: summary fields a run can be judged by (``objective=NAME``, or a list for multi-objective
#: searches), each with the direction a sweep optimises it in: the one definition of both
OBJECTIVES = {
    "best_val_acc": "maximize",
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
EPOCH_OBJECTIVES = {"best_val_acc": "val_acc", "val_loss": "val_loss", "train_loss": "train_loss"}


def epoch_objective(rows: list[dict], objective: str) -> float:
    """``objective`` after the last of ``rows`` (metrics.csv rows so far), as a sweep's pruner sees it."""
    kept = rows[-1]
    if any(r.get("val_acc") is not None for r in rows):
        kept = max((r for r in rows if r.get("val_acc") is not None), key=lambda r: r["val_acc"])  # first best, as the loop keeps
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


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(obj: dict, path: Path) -> None:
    """torch.save to a temp file in the same folder, then rename: a kill never leaves half a file."""
    _atomic_write(Path(path), lambda f: torch.save(obj, f))


def load_checkpoint(path: Path) -> dict:
    """A file qt wrote (checkpoint or export), loaded as tensors and plain values only.

    ``weights_only=True``: unpickling arbitrary objects can run code from the file, and qt
    never stores any. A file that holds them, or is no torch file, is a one-line QTError.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise QTError(
            f"{path} holds Python objects other than tensors and plain values, which qt never writes: not loaded "
            "(unpickling it could run code from it); use a file qt wrote"
        ) from None
    except Exception as e:  # noqa: BLE001 - not a torch file (torch raises KeyError, RuntimeError, EOFError, ...)
        raise QTError(f"{path} is not a readable torch file ({type(e).__name__}): use a file qt wrote") from None
    if not isinstance(obj, dict):
        raise QTError(f"{path} does not hold a dict of tensors and values as qt's files do: use a file qt wrote")
    return obj


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_summary(run_dir: Path, summary: dict) -> None:
    unknown = set(summary) - set(SUMMARY_KEYS)
    if unknown:
        raise KeyError(f"summary keys outside the schema: {sorted(unknown)}")
    full = {k: summary.get(k) for k in SUMMARY_KEYS}
    full["schema_version"] = SCHEMA_VERSION
    text = json.dumps(_clean(full), indent=2, sort_keys=False) + "\n"
    _atomic_write(Path(run_dir) / "summary.json", lambda f: f.write(text.encode()))


def read_summary(run_dir: Path) -> dict | None:
    """The run's summary, or None when the run dir has none (never started, or not a run)."""
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def write_metrics(run_dir: Path, rows: list[dict]) -> None:
    """Rewrite metrics.csv from all epoch rows so far (atomically; rows are few)."""

    def write(f):
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, extrasaction="raise")
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in METRIC_COLUMNS})
        f.write(buf.getvalue().encode())

    _atomic_write(Path(run_dir) / "metrics.csv", write)


def plot_curves(run_dir: Path, rows: list[dict]) -> None:
    """curves.png: loss and accuracy per epoch, train and val."""
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, label in ((axes[0], "loss", "cross-entropy"), (axes[1], "acc", "accuracy")):
        ax.plot(epochs, [r[f"train_{key}"] for r in rows], "o-", label="train")
        if any(r.get(f"val_{key}") is not None for r in rows):  # no validation split: train only
            ax.plot(epochs, [r[f"val_{key}"] for r in rows], "s-", label="val")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()

    def write(f):
        fig.savefig(f, format="png", dpi=100)

    _atomic_write(Path(run_dir) / "curves.png", write)
    plt.close(fig)
