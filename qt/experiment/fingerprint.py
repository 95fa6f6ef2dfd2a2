"""What a run made from Python objects is, as data: the fingerprint ``qt.fit`` keeps in ``last.pt`` and checks before
it resumes a run dir, as the command line checks its composed config (:func:`qt.experiment.config.fingerprint`).

A fit's fingerprint holds the model's structure and trainable counts (with a :class:`~qt.api.QuantumTrain`,
its circuit and mapping settings), the trainer settings that change what a run computes (those the
command line may change on resume, such as ``epochs``, are left out), the optimizer, scheduler and loss
factories by qualified name and bound arguments, and the data: sizes, shapes, dtypes and a SHA-256 of
every split. The weights a model starts from are not in it: a script that resumes builds a fresh model,
and the run dir's checkpoint replaces them.

A callable that cannot be named (a lambda, a function defined inside another) is described as
``{"unverifiable": its name}``: a run that holds one cannot be checked, so resuming it takes an explicit
opt-in (``fit(..., allow_unverified=True)``).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qt.core.learners import ClassicalLearner
from qt.errors import ConfigError
from qt.experiment.config import RESUME_FREE_KEYS, diff_keys
from qt.results.compat import current_targets
from qt.results.schema import load_checkpoint
from qt.training.data import DataSplits
from qt.training.state import TrainerConfig

UNVERIFIABLE = "unverifiable"
#: marks a fingerprint written by ``qt.fit`` (the command line's is a composed config)
WRITTEN_BY = "qt.fit"


def qualified(obj: Any) -> str:
    """``module.QualName`` of a class or function."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def digest(*tensors: torch.Tensor) -> str:
    """SHA-256 of tensors' shapes, dtypes and bytes."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(repr((list(t.shape), str(t.dtype))).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _attributes(obj: Any) -> dict:
    """An object's public settings: the plain values among its attributes (a loss's ``label_smoothing``, ...)."""
    plain = (bool, int, float, str, type(None), list, tuple)
    return {k: describe(v) for k, v in sorted(vars(obj).items()) if not k.startswith("_") and k != "training" and isinstance(v, plain)}


def describe(obj: Any) -> Any:
    """``obj`` as plain data a later call can compare with: values as they are, tensors by digest, classes and
    functions by qualified name, ``functools.partial`` by its function and bound arguments (those its class lists
    in ``resume_free`` left out, like the cosine schedule's ``T_max``), modules by class, settings and state digest."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [describe(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): describe(v) for k, v in obj.items()}
    if isinstance(obj, torch.Tensor):
        return {"tensor": list(obj.shape), "dtype": str(obj.dtype), "sha256": digest(obj)}
    if isinstance(obj, functools.partial):
        free = getattr(obj.func, "resume_free", ())
        bound = {k: describe(v) for k, v in obj.keywords.items() if k not in free}
        return {"factory": describe(obj.func), **({"args": describe(obj.args)} if obj.args else {}), **bound}
    if isinstance(obj, nn.Module):
        return {"class": qualified(type(obj)), **_attributes(obj), "state": digest(*obj.state_dict().values())}
    if inspect.isclass(obj) or inspect.isroutine(obj):
        name = qualified(obj)
        return {UNVERIFIABLE: name} if "<lambda>" in name or "<locals>" in name else name
    if callable(obj):
        return {"class": describe(type(obj)), **_attributes(obj)}
    return repr(obj)


def unverifiable(fp: Any, prefix: str = "") -> list[str]:
    """Dotted keys of the parts of a fingerprint that could not be named."""
    if isinstance(fp, dict):
        if UNVERIFIABLE in fp and len(fp) == 1:
            return [prefix.rstrip(".") or "(all)"]
        return [k for key, v in fp.items() for k in unverifiable(v, f"{prefix}{key}.")]
    if isinstance(fp, list):
        return [k for i, v in enumerate(fp) for k in unverifiable(v, f"{prefix}{i}.")]
    return []


def data_fingerprint(data: DataSplits) -> dict:
    """Sizes, shapes, dtypes and a digest of each split, and the number of classes."""
    out: dict[str, Any] = {"num_classes": int(data.num_classes)}
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        out[name] = {"size": len(split), "x": [*split.x.shape[1:]], "x_dtype": str(split.x.dtype), "y_dtype": str(split.y.dtype),
                     "sha256": digest(split.x, split.y)}  # fmt: skip
    return out


def model_fingerprint(learner: nn.Module) -> dict:
    """The learner's kind, the target's structure and shapes, the trainable counts, and a QuantumTrain's settings."""
    target = learner.target
    table = learner.param_table()
    out = {
        "learner": qualified(type(learner)),
        "target": {"class": qualified(type(target)), "structure": repr(target), "shapes": {n: list(s) for n, s in learner.shapes}},
        **{k: table[k] for k in ("target_weights", "trainable_params", "qnn_params", "mapping_params")},
    }
    settings = getattr(learner, "settings", None)
    if settings is not None:
        out["settings"] = describe(settings)
    elif not isinstance(learner, ClassicalLearner):
        out["structure"] = repr(learner)
    return out


def fit_fingerprint(learner: nn.Module, data: DataSplits, cfg: TrainerConfig, optimizer: Callable, scheduler: Callable | None,
                    loss_fn: nn.Module | None) -> dict:  # fmt: skip
    """What a ``qt.fit`` run computes (see the module docstring); trainer settings at the top level, by their argument names."""
    trainer = {k: v for k, v in asdict(cfg).items() if f"trainer.{k}" not in RESUME_FREE_KEYS}
    return {
        "written_by": WRITTEN_BY,
        "model": model_fingerprint(learner),
        **trainer,
        "optimizer": describe(optimizer),
        "scheduler": describe(scheduler),
        "loss_fn": describe(loss_fn),
        "data": data_fingerprint(data),
    }


def check_fit_run_dir(run_dir: Path, fp: dict, resume: bool, allow_unverified: bool) -> bool:
    """Whether ``run_dir`` holds a run ``fp`` may continue (False: none there); a :class:`ConfigError` naming what
    differs, and what to do, for any other run there."""
    last = Path(run_dir) / "checkpoints" / "last.pt"
    if not last.exists():
        return False
    where = f"run_dir={run_dir}"
    if not resume:
        raise ConfigError(f"resume=False, but {where} holds a run that starting over would overwrite: pass another run_dir, or delete that folder to start over")
    stored = current_targets(load_checkpoint(last).get("fingerprint") or {})  # classes renamed since keep matching
    if stored and stored.get("written_by") != WRITTEN_BY:
        raise ConfigError(f"{where} holds a command-line run (python -m qt.train), not a fit() run: pass another run_dir")
    if not stored:
        if allow_unverified:
            return True
        raise ConfigError(
            f"{where} holds a run written without a fingerprint (by an earlier qt), so these settings cannot be checked against it: "
            "pass allow_unverified=True to resume it anyway, or another run_dir"
        )
    hidden = sorted(set(unverifiable(stored)) | set(unverifiable(fp)))
    differing = [k for k in diff_keys(stored, fp) if not any(k == h or k.startswith(h + ".") for h in hidden)]
    if differing:
        shown = ", ".join(differing[:4]) + (" ..." if len(differing) > 4 else "")
        raise ConfigError(f"{where} holds a run with other settings (differs in {shown}): pass another run_dir, or resume=False with an empty one")
    if hidden and not allow_unverified:
        raise ConfigError(
            f"{where} holds a run whose {', '.join(hidden)} cannot be named (a lambda or a local function), so it cannot be checked "
            "against this call: pass allow_unverified=True to resume it anyway, or a functools.partial of a named class or function"
        )
    return True
