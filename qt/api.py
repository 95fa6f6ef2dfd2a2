"""qt as a library: Quantum-Train any torch network in any training loop, or in qt's loop without Hydra.

    from qt import QuantumTrain, fit

    model = QuantumTrain(MyNet(), n_blocks=16)          # circuit + mapping generate MyNet's weights
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = F.cross_entropy(model(x), y)                 # an ordinary nn.Module: any loop, Lightning, ...
    network = model.export()                            # MyNet with the learned weights, no quantum part

    results = fit(model, ((x_train, y_train), (x_val, y_val), (x_test, y_test)), epochs=5, lr=1e-2)

``circuit`` and ``mapping`` take the names of the config group options (``conf/circuit``,
``conf/mapping``: the same defaults as ``python -m qt.train``), a dict of keyword arguments
on top of the default option, or a factory ``f(n_qubits=..., ...) -> nn.Module``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import OmegaConf
from torch import nn

from qt.core.learners import ClassicalLearner, Learner, QTLearner
from qt.errors import ConfigError
from qt.experiment.build import resolve_device
from qt.experiment.config import CONF_DIR, compose_config
from qt.training.callbacks import Callback, Checkpoint, EpochLog, KeepBest, MetricsFiles, ProgressBar
from qt.training.data import DataSplits, Split
from qt.training.loop import Trainer
from qt.training.state import TrainerConfig

DEFAULT_OPTIONS = {"circuit": "ry_cnot", "mapping": "medium"}


def preset(group: str, choice: str | dict | None) -> tuple[Callable[..., nn.Module], dict]:
    """The class and keyword arguments of a ``circuit`` or ``mapping`` option (``conf/GROUP/NAME.yaml``, composed
    as ``python -m qt.train GROUP=NAME`` composes it), or of the default option updated by a dict."""
    name, extra = (choice, {}) if isinstance(choice, str) else (DEFAULT_OPTIONS[group], dict(choice or {}))
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        options = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        raise ConfigError(f"unknown {group} '{name}': choose one of {options}, or pass a dict of its arguments")
    values = OmegaConf.to_container(compose_config([f"{group}={name}"])[group], resolve=True)
    target = get_class(values.pop("_target_"))
    values = {k: v for k, v in values.items() if k not in ("n_blocks", "chunk")}  # n_blocks, chunk: arguments
    return target, {**values, **extra}


class QuantumTrain(QTLearner):
    """Quantum-Train a torch network: a circuit on ceil(log2 M) qubits and a mapping model generate its M weights.

    An ``nn.Module``: ``forward(x)`` generates the weights and runs ``target`` with them
    (functionally: the target's own parameters are never trained). Its trainable parameters
    are the circuit's angles and the mapping's weights. ``export()`` returns the target with
    the learned weights as a plain module.
    """

    def __init__(
        self,
        target: nn.Module,
        n_blocks: int = 16,
        circuit: str | dict | Callable[..., nn.Module] = "ry_cnot",
        mapping: str | dict | Callable[..., nn.Module] = "medium",
        chunk: int = 1,
    ):
        if not callable(circuit):
            cls, kwargs = preset("circuit", circuit)
            circuit = partial(cls, n_blocks=int(n_blocks), **kwargs)
        if not callable(mapping):
            cls, kwargs = preset("mapping", mapping)
            mapping = partial(cls, **kwargs)
        super().__init__(target, circuit=circuit, mapping=mapping, chunk=int(chunk))


def as_splits(data: DataSplits | Sequence, num_classes: int | None = None) -> DataSplits:
    """``data`` as qt's splits: DataSplits as is, or ``(train, val, test)`` pairs of tensors (an empty or None val: no validation)."""
    if isinstance(data, DataSplits):
        return data
    if len(data) != 3:
        raise ConfigError("data must be DataSplits or three (x, y) pairs: (train, val, test); val may be None")
    train, val, test = (Split(*pair) if pair is not None else None for pair in data)
    val = val or Split(train.x[:0], train.y[:0])
    classes = num_classes or int(max(int(s.y.max()) for s in (train, test) if len(s)) + 1)
    return DataSplits(train, val, test, classes, "tensors")


def fit(
    model: nn.Module,
    data: DataSplits | Sequence,
    *,
    epochs: int = 10,
    lr: float = 1e-2,
    optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    scheduler: Callable[..., Any] | None = None,
    loss_fn: nn.Module | None = None,
    run_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    **trainer: Any,
) -> dict:
    """Train ``model`` (a :class:`QuantumTrain`, or any classifier, trained directly) in qt's loop; returns its metrics.

    ``optimizer``: a factory of the parameters (default Adam at ``lr``); ``scheduler`` a factory
    of the optimizer (default none). ``trainer``: any :class:`~qt.training.state.TrainerConfig`
    field (``batch_size``, ``clip_norm``, ``seed``, ``device``: ``auto`` takes a GPU when torch sees one, ...). With ``run_dir``, the run
    writes qt's checkpoints (and resumes from them), metrics.csv and curves.png there; without,
    nothing is written. The model kept is the best validation epoch's (without a validation
    split, the last), and ``model`` holds it on return.
    """
    unknown = set(trainer) - set(TrainerConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"fit() got unknown trainer settings {sorted(unknown)}: use fields of qt.training.state.TrainerConfig")
    learner = model if isinstance(model, Learner) else ClassicalLearner(model)
    cfg = TrainerConfig(**{"epochs": epochs, "progress": False, **trainer})
    keep = Checkpoint(run_dir, every=cfg.checkpoint_every) if run_dir is not None else KeepBest()
    side = [keep, MetricsFiles(run_dir)] if run_dir is not None else [keep]
    t = Trainer(
        learner, as_splits(data), optimizer or partial(torch.optim.Adam, lr=lr), scheduler, cfg, resolve_device(cfg.device), loss_fn,
        callbacks=[*side, ProgressBar(cfg.progress), EpochLog(), *callbacks],
    )  # fmt: skip
    if run_dir is not None and cfg.resume:
        keep.restore(t)
    t.fit()
    keep.load_best(t)
    return {**t.progress(), **t.final_metrics(), "rows": t.state.rows, "initial_loss": t.state.initial_loss, "chance_loss": math.log(t.data.num_classes)}
