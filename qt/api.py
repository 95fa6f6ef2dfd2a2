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

The API is as safe as the command line: its arguments go through the CLI's validation
(:mod:`qt.experiment.validation`) and memory guard, refusals are one-line
:class:`~qt.errors.ConfigError`s naming the API's own arguments (``lr=``, ``mapping={'hidden': ...}``),
and ``fit(run_dir=...)`` resumes only a run of the same settings
(:mod:`qt.experiment.fingerprint`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import OmegaConf
from torch import nn

from qt.core.checks import Keys, renamed, with_defaults
from qt.core.learners import ClassicalLearner, Learner, QTLearner
from qt.core.mapping import MappingBase, qubits_for
from qt.core.quantum.ansatz import check_blocks
from qt.core.quantum.circuit import QuantumCircuit
from qt.core.targets import count_weights
from qt.errors import ConfigError
from qt.experiment.build import resolve_device
from qt.experiment.config import CONF_DIR, compose_config
from qt.experiment.fingerprint import check_fit_run_dir, fit_fingerprint, qualified, unverifiable
from qt.experiment.memory import circuit_bytes, mapping_bytes, measure_target, refuse_oversized, slots_of, target_bytes
from qt.experiment.validation import (
    check_class_node, check_lr, check_node, check_qt_settings, check_trainer, trainer_hints,
)  # fmt: skip
from qt.training.callbacks import Callback, Checkpoint, EpochLog, KeepBest, MetricsFiles, ProgressBar
from qt.training.data import DataSplits, Split
from qt.training.loop import Trainer
from qt.training.state import TrainerConfig

log = logging.getLogger(__name__)

DEFAULT_OPTIONS = {"circuit": "ry_cnot", "mapping": "medium"}
#: how a refusal names a setting given through this API: fit's keyword arguments, QuantumTrain's dicts
API_KEYS = Keys(renamed({"trainer.*": "*", "optimizer.lr": "lr", "n_blocks": "n_blocks", "circuit.n_blocks": "n_blocks"}, ("circuit", "mapping")), null="None")
#: what QuantumTrain sets itself: the circuit's size (n_blocks=), the qubits (from the target), the mapping's shapes
OWN_ARGUMENTS = {"circuit": ("n_blocks", *QuantumCircuit.OWN_ARGUMENTS), "mapping": MappingBase.OWN_ARGUMENTS}


def option_settings(group: str, choice: str | Mapping) -> dict:
    """The settings of a ``circuit`` or ``mapping`` option with its ``_target_`` (``conf/GROUP/NAME.yaml``, composed as
    ``python -m qt.train GROUP=NAME`` composes it), or of the default option updated by a dict."""
    if not isinstance(choice, (str, Mapping)):
        raise ConfigError(f"{group} must be an option name of conf/{group}, a dict of its settings or a factory (got {type(choice).__name__})")
    name, extra = (choice, {}) if isinstance(choice, str) else (DEFAULT_OPTIONS[group], dict(choice))
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        options = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        raise ConfigError(f"unknown {group} '{name}': choose one of {options}, or pass a dict of its arguments")
    values = OmegaConf.to_container(compose_config([f"{group}={name}"])[group], resolve=True)
    values.pop("n_blocks", None)  # the CLI's ${n_blocks}: here QuantumTrain's argument
    cls = get_class(values["_target_"])
    for key in extra:
        if key in OWN_ARGUMENTS[group]:
            raise ConfigError(f"{group}={{'{key}': ...}} is set by QuantumTrain itself" + (": give QuantumTrain(target, n_blocks=...)" if key == "n_blocks" else ""))
        if key.startswith("_"):
            raise ConfigError(f"{group}={{'{key}': ...}} is not a setting: give the option's settings, its class comes from the option")
    with_defaults(cls, extra, group, API_KEYS, own=OWN_ARGUMENTS[group])  # an unknown key: one line naming the settings
    return {**values, **extra}


def check_module(obj: Any, argument: str, what: str) -> nn.Module:
    """A target or model argument: an ``nn.Module`` with parameters."""
    if not isinstance(obj, nn.Module):
        raise ConfigError(f"{argument} must be a torch nn.Module (got {type(obj).__name__}): pass {what}")
    if not any(True for _ in obj.parameters()):
        raise ConfigError(f"{argument} {type(obj).__name__} has no parameters, so there are no weights to train: pass {what}")
    return obj


class QuantumTrain(QTLearner):
    """Quantum-Train a torch network: a circuit on ceil(log2 M) qubits and a mapping model generate its M weights.

    An ``nn.Module``: ``forward(x)`` generates the weights and runs ``target`` with them
    (functionally: the target's own parameters are never trained). Its trainable parameters
    are the circuit's angles and the mapping's weights. ``export()`` returns the target with
    the learned weights as a plain module.

    ``mapping={'chunk': K}`` (the CLI's ``mapping.chunk``) makes each basis state emit K weights
    (a factory: ``functools.partial(F, chunk=K)``). The settings are checked, and the memory the
    circuit and mapping need is checked against the host's, before either is built.
    """

    def __init__(
        self,
        target: nn.Module,
        n_blocks: int = 16,
        circuit: str | dict | Callable[..., nn.Module] = "ry_cnot",
        mapping: str | dict | Callable[..., nn.Module] = "medium",
        *,
        chunk: None = None,
    ):
        if chunk is not None:
            raise ConfigError(f"chunk is a mapping setting (the CLI's mapping.chunk): give mapping={{'chunk': {chunk!r}}}")
        check_module(target, "target", "the network whose weights QT generates, e.g. QuantumTrain(MyNet())")
        n_blocks = check_blocks(n_blocks)
        circuit_settings = None if callable(circuit) else {**option_settings("circuit", circuit), "n_blocks": n_blocks}
        mapping_settings = None if callable(mapping) else option_settings("mapping", mapping)
        for group, node in (("circuit", circuit_settings), ("mapping", mapping_settings)):
            if node is not None:
                check_class_node(node, group, API_KEYS)
        chunk = (mapping_settings or {}).get("chunk", getattr(mapping, "keywords", {}).get("chunk", 1))
        check_qt_settings(circuit_settings or {"n_blocks": n_blocks}, {**(mapping_settings or {}), "chunk": chunk}, API_KEYS)
        guard_memory(count_weights(target), circuit_settings, mapping_settings, chunk, slots=2, device=torch.device("cpu"),
                     what=f"QuantumTrain({type(target).__name__})")  # fmt: skip
        if circuit_settings is not None:
            circuit = partial(get_class(circuit_settings["_target_"]), **{k: v for k, v in circuit_settings.items() if k != "_target_"})
        if mapping_settings is not None:
            mapping = partial(get_class(mapping_settings["_target_"]), **{k: v for k, v in mapping_settings.items() if k not in ("_target_", "chunk")})
        super().__init__(target, circuit=circuit, mapping=mapping, chunk=int(chunk))
        #: what generates the weights, for fit's fingerprint: settings (a preset or dict) or the factory itself
        self.settings = {"n_blocks": n_blocks, "circuit": circuit_settings or circuit, "mapping": mapping_settings or mapping, "chunk": int(chunk)}


def guard_memory(n_weights: int, circuit: dict | None, mapping: dict | None, chunk: int, slots: int, device: torch.device,
                 what: str, extra: dict[str, int] | None = None) -> None:  # fmt: skip
    """The CLI's memory guard over what is known of a QT learner (a factory's own part is not estimated) and ``extra``."""
    n_qubits = qubits_for(n_weights, chunk)
    parts = dict(extra or {})
    if circuit is not None:
        parts |= circuit_bytes(circuit, n_qubits, slots, device)
    if mapping is not None:
        parts |= mapping_bytes({**mapping, "chunk": chunk}, n_qubits, slots, device)
    refuse_oversized(parts, device, API_KEYS, density=((circuit or {}).get("noise") or {}).get("method") == "density", what=what)


def as_splits(data: DataSplits | Sequence, num_classes: int | None = None) -> DataSplits:
    """``data`` as qt's splits: DataSplits as is, or ``(train, val, test)`` pairs of tensors (an empty or None val: no validation)."""
    if isinstance(data, DataSplits):
        return data
    if not isinstance(data, Sequence) or len(data) != 3:
        raise ConfigError("data must be DataSplits or three (x, y) pairs: (train, val, test); val may be None")
    splits = []
    for name, pair in zip(("train", "val", "test"), data):
        if pair is None:
            splits.append(None)
            continue
        if not (isinstance(pair, Sequence) and len(pair) == 2 and all(isinstance(t, torch.Tensor) for t in pair)):
            raise ConfigError(f"data's {name} split must be an (x, y) pair of tensors (got {type(pair).__name__}): give (inputs, labels)")
        splits.append(Split(*pair))
    train, val, test = splits
    if train is None or test is None:
        raise ConfigError("data's train and test splits are required: give (train, val, test) pairs; only val may be None")
    val = val or Split(train.x[:0], train.y[:0])
    classes = num_classes or int(max(int(s.y.max()) for s in (train, test) if len(s)) + 1)
    return DataSplits(train, val, test, classes, "tensors")


def check_data(learner: Learner, data: DataSplits) -> tuple[int, int]:
    """The data against the model: it takes the inputs, and every label is one of its outputs. Returns (classes the
    model scores, values its layers output per input: the memory guard's activations)."""
    if len(data.train) == 0:
        raise ConfigError("data's train split is empty: give at least one (input, label) pair to train on")
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        if len(split.x) != len(split.y):
            raise ConfigError(f"data's {name} split has {len(split.x)} inputs but {len(split.y)} labels: give one label per input")
        if len(split.y) and (split.y.dim() != 1 or split.y.is_floating_point() or split.y.dtype == torch.bool):
            raise ConfigError(f"data's {name} labels must be a 1-d integer tensor of class indices (got {split.y.dtype}, shape {list(split.y.shape)})")
    x = data.train.x[:1]
    try:
        outputs, per_input = measure_target(learner.target, x.to(next(learner.target.parameters()).device))
    except (RuntimeError, ValueError) as e:
        said = " ".join(str(e).split())[:200]
        raise ConfigError(f"the model does not take data's {list(x.shape[1:])} inputs ({said}): give inputs of the shape it takes") from None
    if len(outputs) != 1:
        raise ConfigError(f"the model outputs {outputs} values per input: fit trains classifiers, one score per class")
    classes = outputs[0]
    for name in ("train", "val", "test"):
        y = getattr(data, name).y
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
            raise ConfigError(
                f"data's {name} labels run from {int(y.min())} to {int(y.max())}, but the model outputs {classes} class scores: "
                f"labels must be 0..{classes - 1} (give the model {max(int(y.max()) + 1, classes)} outputs, or relabel the data)"
            )
    return classes, per_input


def check_fit_settings(trainer: dict, lr: float | None, optimizer: Callable | None) -> TrainerConfig:
    """fit's trainer settings and learning rate by the CLI's rules (types, then ranges), named as fit's arguments."""
    unknown = set(trainer) - set(TrainerConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"fit() got unknown trainer settings {sorted(unknown)}: use fields of qt.training.state.TrainerConfig")
    if lr is not None and optimizer is not None:
        raise ConfigError("fit() got both lr= and optimizer=: give the learning rate inside the factory, e.g. optimizer=partial(torch.optim.SGD, lr=0.1)")
    if lr is not None:
        check_lr(lr, API_KEYS)
    if optimizer is not None and not callable(optimizer):
        raise ConfigError(f"optimizer must be a factory of the parameters (got {type(optimizer).__name__}): e.g. partial(torch.optim.Adam, lr=1e-2)")
    check_node(trainer, "trainer", trainer_hints(), API_KEYS)
    cfg = TrainerConfig(**trainer)
    check_trainer(vars(cfg), API_KEYS)
    return cfg


def fit(
    model: nn.Module,
    data: DataSplits | Sequence,
    *,
    epochs: int = 10,
    lr: float | None = None,
    optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    scheduler: Callable[..., Any] | None = None,
    loss_fn: nn.Module | None = None,
    run_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    allow_unverified: bool = False,
    **trainer: Any,
) -> dict:
    """Train ``model`` (a :class:`QuantumTrain`, or any classifier, trained directly) in qt's loop; returns its metrics.

    ``optimizer``: a factory of the parameters (default Adam at ``lr``, default 1e-2; give one or the
    other); ``scheduler`` a factory of the optimizer (default none). ``trainer``: any
    :class:`~qt.training.state.TrainerConfig` field (``batch_size``, ``clip_norm``, ``seed``, ``device``:
    ``auto`` takes a GPU when torch sees one, ...). The model kept is the best validation epoch's
    (without a validation split, the last), and ``model`` holds it on return. Every argument is checked
    before training, by the command line's rules.

    ``run_dir``: the run writes qt's checkpoints, metrics.csv and curves.png there, with a fingerprint of
    this call (model structure and settings, trainer settings, data digest, factories by name and bound
    arguments). Called again with a run dir that holds a run, ``fit`` resumes it only if the fingerprint
    matches: an interrupted run continues, a completed one is returned without training (a larger
    ``epochs`` extends it), and the log says which; any other run there is a ConfigError naming what
    differs (``resume=False`` refuses any run there). A factory that cannot be named (a lambda) cannot
    be checked: resuming such a run needs ``allow_unverified=True``. Without ``run_dir`` nothing is written.
    """
    cfg = check_fit_settings({"epochs": epochs, "progress": False, **trainer}, lr, optimizer)
    check_module(model, "model", "a QuantumTrain(...) or a classifier to train directly")
    learner = model if isinstance(model, Learner) else ClassicalLearner(model)
    device = resolve_device(cfg.device, API_KEYS)
    splits = as_splits(data, num_classes=1)  # the classes are the model's outputs, read next
    classes, per_input = check_data(learner, splits)
    if not isinstance(data, DataSplits):
        splits.num_classes = classes
    optimizer = optimizer or partial(torch.optim.Adam, lr=1e-2 if lr is None else float(lr))
    guard_fit_memory(learner, splits, cfg, optimizer, per_input, device)
    keep, side, resumable = KeepBest(), [], False
    if run_dir is not None:
        fp = fit_fingerprint(learner, splits, cfg, optimizer, scheduler, loss_fn)
        resumable = check_fit_run_dir(Path(run_dir), fp, cfg.resume, allow_unverified)
        hidden = unverifiable(fp)
        if hidden and not resumable:
            log.warning("fit: %s cannot be named (a lambda or a local function): resuming %s will need allow_unverified=True", ", ".join(hidden), run_dir)
        keep = Checkpoint(run_dir, fp, every=cfg.checkpoint_every)
        side = [MetricsFiles(run_dir)]
    t = Trainer(learner, splits, optimizer, scheduler, cfg, device, loss_fn, callbacks=[keep, *side, ProgressBar(cfg.progress), EpochLog(), *callbacks])
    if resumable and keep.restore(t) and t.state.epoch >= cfg.epochs:
        log.info("%s already holds a completed %d-epoch run of these settings: returning its results (nothing trained)", run_dir, t.state.epoch)
    elif resumable:
        log.info("continuing the run in %s at epoch %d of %d", run_dir, t.state.epoch + 1, cfg.epochs)
    t.fit()
    keep.load_best(t)
    return {**t.progress(), **t.final_metrics(), "rows": t.state.rows, "initial_loss": t.state.initial_loss, "chance_loss": math.log(t.data.num_classes)}


def guard_fit_memory(learner: Learner, data: DataSplits, cfg: TrainerConfig, optimizer: Callable, per_input: int, device: torch.device) -> None:
    """The memory guard for a whole fit (the model's activations at ``batch_size``, its weights, the generator), before training."""
    factory = getattr(optimizer, "func", optimizer)
    slots = slots_of(qualified(factory), getattr(optimizer, "keywords", {}).get("momentum"))
    images = max(len(data.train), len(data.val), len(data.test))
    batch, eval_batch = min(cfg.batch_size, images), min(cfg.eval_batch_size, images)
    target = target_bytes(learner.n_weights, per_input, batch, eval_batch, slots, classical=isinstance(learner, ClassicalLearner))
    settings = getattr(learner, "settings", None) or {}
    circuit, mapping = (s if isinstance(s, dict) else None for s in (settings.get("circuit"), settings.get("mapping")))
    guard_memory(learner.n_weights, circuit, mapping, settings.get("chunk", 1), slots, device, "this fit", extra=target)
