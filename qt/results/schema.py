"""The one results schema: what every run writes into its run dir, and every tool reads.

Run dir layout::

    .hydra/config.yaml      the composed config (Hydra)
    train.log               the log (Hydra)
    metrics.csv             one row per finished epoch, columns METRIC_COLUMNS (epoch_train_time_s:
                            the epoch's training steps; validation and checkpoints not included), then a
                            task's own (TASK_METRICS: task=sequence's train_mse, val_mse, ...)
    summary.json            SUMMARY_KEYS (``init``: first-step loss and per-tensor weight scale at init), then a
                            task's own (TASK_SUMMARY_KEYS); rewritten at start (status "running") and at the end
    curves.png              loss and accuracy curves
    generator_rank.json     written by ``python -m qt.tools.rank`` after the run: the effective dimension of its generator
    test_predictions.npz    per test image, in the test set's order: ``label`` and ``predicted`` class of the kept
                            model (completed classification runs; the paired tests over seeds and images read them)
    checkpoints/last.pt     full training state for resume (written atomically)
    checkpoints/best.pt     learner state at the best validation accuracy (written atomically)

Times in summary.json: ``train_time_s`` is the time spent in training steps (forward,
backward, optimizer), ``wall_time_s`` the whole run (data loading, training, validation,
checkpoints, plots, final evaluation), both summed over resumed sessions (a killed session
counts up to its last checkpoint); ``step_time_s`` is the median training step.
``qpu`` (QT runs with a circuit, else null): what the training steps would cost on a quantum
processor, from the config (``QuantumCircuit.qpu``): the gradient method (``adjoint`` counted as
``parameter_shift``), circuit executions per step and in total, shots per execution and in
total (null: exact probabilities), the noise model. ``status`` is one of STATUSES. Older or half-written run dirs are detected with
:func:`read_summary` (schema_version, missing file) rather than crashed on.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qt.errors import QTError

log = logging.getLogger(__name__)

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

#: the metrics of each task besides classification's (qt.training.tasks): metrics.csv ``train_X`` / ``val_X``,
#: summary.json ``train_X`` / ``test_X``, ``best_val_X`` for the monitored one and ``val_X`` for the others
TASK_METRICS = {"sequence": ("mse", "mae"), "rl": ("return", "return_sampled")}
#: the summary keys of those tasks, written after :data:`SUMMARY_KEYS` when a run has them (task=rl's own: the first
#: training episode whose last-100 mean reached the environment's threshold, the episodes played, the critic's size)
TASK_SUMMARY_KEYS = {
    task: [f"best_val_{metrics[0]}", *(f"val_{m}" for m in metrics[1:]), *(f"{part}_{m}" for part in ("test", "train") for m in metrics),
           *(["solved_episode", "episodes", "critic_params"] if task == "rl" else [])]
    for task, metrics in TASK_METRICS.items()
}

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
    "qpu",
    "data_sizes",
    "teacher",
    "started_at",
    "finished_at",
    "versions",
    "config",
]


def atomic_write(path: Path, write) -> None:
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
    atomic_write(Path(path), lambda f: torch.save(obj, f))


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
        said = " ".join(str(e).split())[:200]
        raise QTError(f"{path} is not a readable torch file ({type(e).__name__}: {said}): use a file qt wrote") from None
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
    """summary.json: every key of :data:`SUMMARY_KEYS` (null where the run has none), then its task's own keys."""
    extra = [keys for keys in TASK_SUMMARY_KEYS.values() if set(keys) & set(summary)]
    unknown = set(summary) - set(SUMMARY_KEYS) - {k for keys in extra for k in keys}
    if unknown or len(extra) > 1:
        raise KeyError(f"summary keys outside the schema: {sorted(unknown) or extra}")
    full = {k: summary.get(k) for k in SUMMARY_KEYS + (extra[0] if extra else [])}
    full["schema_version"] = SCHEMA_VERSION
    text = json.dumps(_clean(full), indent=2, sort_keys=False) + "\n"
    atomic_write(Path(run_dir) / "summary.json", lambda f: f.write(text.encode()))


def read_summary(run_dir: Path) -> dict | None:
    """The run's summary; None when the run dir has none (never started, or not a run) or an unreadable one
    (not JSON: edited by hand or cut short outside qt, whose writes are atomic)."""
    path = Path(run_dir) / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("%s is not readable JSON: the run is treated as having no summary", path)
        return None
    return summary if isinstance(summary, dict) else None


#: the per-image test predictions of a completed run
PREDICTIONS = "test_predictions.npz"
#: the effective dimension of a run's generator (``qt.tools.rank``)
RANK = "generator_rank.json"


def write_predictions(run_dir: Path, label: torch.Tensor, predicted: torch.Tensor) -> None:
    """The kept model's class for every test image, beside the label (int16, compressed: a few KB for 10,000 images)."""
    arrays = {"label": label.detach().cpu().numpy().astype(np.int16), "predicted": predicted.detach().cpu().numpy().astype(np.int16)}
    atomic_write(Path(run_dir) / PREDICTIONS, lambda f: np.savez_compressed(f, **arrays))


def read_predictions(run_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(label, predicted) per test image of a run; None for a run without them (older, or not completed)."""
    path = Path(run_dir) / PREDICTIONS
    if not path.exists():
        return None
    with np.load(path) as z:
        return z["label"], z["predicted"]


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """A CSV of ``rows`` (missing values empty), written atomically; ``columns`` default: every key, first seen first."""
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="raise")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    atomic_write(Path(path), lambda f: f.write(buf.getvalue().encode()))


def write_metrics(run_dir: Path, rows: list[dict]) -> None:
    """Rewrite metrics.csv from all epoch rows so far (atomically; rows are few): :data:`METRIC_COLUMNS`, then a
    task's own (``train_mse``, ``val_mse``, ... for ``task=sequence``: :data:`TASK_METRICS`)."""
    extra = [k for k in dict.fromkeys(k for row in rows for k in row) if k not in METRIC_COLUMNS]
    unknown = set(extra) - {f"{part}_{m}" for ms in TASK_METRICS.values() for m in ms for part in ("train", "val")}
    if unknown:
        raise KeyError(f"metrics columns outside the schema: {sorted(unknown)}")
    write_csv(Path(run_dir) / "metrics.csv", rows, METRIC_COLUMNS + extra)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as {dotted.key: value} (lists are values, not nested)."""
    if not isinstance(node, dict):
        return {prefix[:-1]: node}
    out: dict[str, Any] = {}
    for k, v in node.items():
        out.update(flatten(v, f"{prefix}{k}."))
    return out
