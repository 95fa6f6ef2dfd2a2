"""The one place a composed config is checked, before anything is loaded or built.

Every value passes through here:

1. **Types**, from the code that takes the value: each config group with a ``_target_``
   (dataset, model, circuit, mapping, optimizer, scheduler, loss, loggers) is checked against
   the type hints of its class's constructor, the ``trainer`` group against ``TrainerConfig``'s
   fields and the top-level keys against :data:`TOP_LEVEL`. ``mapping.hidden=abc`` or
   ``trainer.seed=abc`` is one line naming the key and the type it needs.
2. **Ranges and choices**: the rules of ``qt.core.checks`` that the classes apply when built,
   here applied before any data is read.
3. **Consistency** between keys: an objective the run can be judged by, normalisation that
   matches the image's channels.

What only the built objects can tell (a target too deep for the image, one whose outputs are
not the dataset's classes, the memory a run needs) is checked by ``qt.experiment.build``
before training. Every problem is a :class:`~qt.errors.ConfigError`: one line, exit status 2.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Sequence
from typing import Any, Union

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from qt.core.checks import flag, number, whole
from qt.core.quantum.ansatz import check_blocks
from qt.core.quantum.gradients import SPSASettings, check_gradient
from qt.core.quantum.noise import NoiseModel
from qt.errors import ConfigError
from qt.experiment.variants import GENERATORS
from qt.results.objectives import OBJECTIVES, objective_names
from qt.training.state import TrainerConfig

MODES = ("qt", "classical")
DEVICES = ("cpu", "cuda", "auto")
#: the groups built from a ``_target_``, checked against their class's constructor
TARGET_GROUPS = ("dataset", "model", "circuit", "mapping", "optimizer", "scheduler", "loss")
#: top-level keys and their types
TOP_LEVEL = {"seed": int, "n_blocks": int, "mode": str, "generator": str, "max_trainable_params": int | None}


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if hint is type(None):
        return "null"
    if origin in (list, tuple, Sequence, typing.Sequence) or hint in (list, tuple):
        inner = [a for a in args if a is not Ellipsis]
        plural = {int: "integers", float: "numbers", bool: "true/false values", str: "strings"}
        return f"a list of {plural.get(inner[0], _describe(inner[0]))}" if inner else "a list"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, getattr(hint, "__name__", str(hint)))


def conforms(value: Any, hint: Any) -> bool:
    """Whether a config value is of a type hint's kind (ints pass for floats; unknown hints pass)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    if origin in (Union, types.UnionType):
        return any(conforms(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence, typing.Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        inner = [a for a in args if a is not Ellipsis]
        return not inner or all(conforms(v, inner[0]) for v in value)
    return True  # a hint this check does not know: the class itself decides


def _hints(cls: type) -> dict[str, Any]:
    """The constructor's type hints, the class's own first, then its bases' (a subclass passing ``**kwargs`` up)."""
    if hasattr(cls, "__dataclass_fields__"):
        sources = [cls]
    else:
        sources = [c.__init__ for c in reversed(cls.__mro__) if "__init__" in vars(c) and c is not object]
    hints: dict[str, Any] = {}
    for source in sources:
        try:
            hints.update(typing.get_type_hints(source))
        except Exception:  # noqa: BLE001 - hints that do not resolve (a third-party class): that class unchecked
            continue
    return {k: v for k, v in hints.items() if k != "return"}


def _check_node(node: dict, where: str, hints: dict[str, Any]) -> None:
    for key, value in node.items():
        if key.startswith("_") or key not in hints or conforms(value, hints[key]):
            continue
        shown = f"'{value}'" if isinstance(value, str) else repr(value)
        raise ConfigError(f"{where}.{key} must be {_describe(hints[key])} (got {shown}): fix {where}.{key}=...")


def check_types(container: dict) -> None:
    """Every value against the type the code that takes it declares."""
    for key, hint in TOP_LEVEL.items():
        if key in container and not conforms(container[key], hint):
            raise ConfigError(f"{key} must be {_describe(hint)} (got {container[key]!r}): fix {key}=...")
    _check_node(container.get("trainer") or {}, "trainer", _hints(TrainerConfig))
    nodes = [(g, container.get(g)) for g in TARGET_GROUPS]
    nodes += [(f"logger.{k}", v) for k, v in (container.get("logger") or {}).items()]
    for where, node in nodes:
        if not isinstance(node, dict) or not isinstance(node.get("_target_"), str):
            continue
        try:
            cls = get_class(node["_target_"])
        except Exception:  # noqa: BLE001 - an unknown or untrusted _target_: building it says so
            continue
        _check_node(node, where, _hints(cls) if inspect.isclass(cls) else {})


def check_values(cfg: DictConfig) -> None:
    """Ranges, choices and consistency: the rules of qt.core.checks, before anything is built."""
    names = objective_names(cfg.get("objective", "best_val_acc"))
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown or not names:
        raise ConfigError(f"unknown objective {unknown or names}: choose from {', '.join(OBJECTIVES)}")
    if cfg.mode not in MODES:
        raise ConfigError(f"unknown mode '{cfg.mode}': use mode=qt or mode=classical")
    if cfg.get("generator", "quantum") not in GENERATORS:
        raise ConfigError(f"unknown generator '{cfg.generator}': use generator={' or '.join(GENERATORS)} (or a variant: variant=classical_generator, hashed)")
    t = cfg.trainer
    whole(t.epochs, "trainer.epochs", hint="set trainer.epochs=1 or more")
    whole(t.batch_size, "trainer.batch_size", hint="set e.g. trainer.batch_size=128")
    whole(t.eval_batch_size, "trainer.eval_batch_size", hint="set e.g. trainer.eval_batch_size=2000")
    whole(t.seed, "trainer.seed", least=0, hint="seeds are integers >= 0")
    whole(t.checkpoint_every, "trainer.checkpoint_every", least=0, hint="0 writes last.pt at epoch ends only")
    optional = (("clip_norm", "a positive norm"), ("threads", "N threads"), ("test_subset", "a number of test images"),
                ("limit_train_batches", "a number of steps"))  # fmt: skip
    for key, what in optional:
        if t.get(key) is not None:
            check = number if key == "clip_norm" else whole
            hint = f"set {what}, or trainer.{key}=null" + (" to disable clipping" if key == "clip_norm" else "")
            check(t[key], f"trainer.{key}", **({"strict": True} if key == "clip_norm" else {}), hint=hint)
    if t.device not in DEVICES:
        raise ConfigError(f"unknown trainer.device '{t.device}': use cpu, cuda or auto")
    if cfg.dataset.get("val_fraction", 0.2) == 0 and {"best_val_acc", "val_loss"} & set(names):
        raise ConfigError(
            "dataset.val_fraction=0 leaves no validation split to judge the run by: set objective=train_loss "
            "(as experiment=paper_* do) or a val_fraction above 0"
        )
    number(cfg.optimizer.get("lr"), "optimizer.lr", strict=True, hint="set e.g. optimizer.lr=1e-2")
    budget = cfg.get("max_trainable_params")
    if budget is not None:
        whole(budget, "max_trainable_params", hint="set a parameter budget, or max_trainable_params=null for none")
    if cfg.mode == "qt":  # the rules the circuit and the mapping apply when built
        check_blocks(cfg.circuit.get("n_blocks"))
        flag(cfg.circuit.get("entangle", True), "circuit.entangle", hint="false is variant=no_entanglement")
        whole(cfg.circuit.get("partitions", 1), "circuit.partitions", hint="1 (one circuit) up to the number of qubits")
        number(cfg.circuit.get("init_scale", 1.0), "circuit.init_scale", hint="angles start in [0, 2*pi*init_scale)")
        check_gradient(cfg.circuit.get("gradient", "adjoint"))
        SPSASettings.from_config(cfg.circuit.get("spsa"))
        NoiseModel.from_config(cfg.circuit.get("noise"))
        whole(cfg.mapping.get("chunk", 1), "mapping.chunk", hint="K target weights per basis state")
        for width in cfg.mapping.get("hidden") or []:
            whole(width, "mapping.hidden widths", hint="e.g. mapping.hidden=[20,20]")


def validate(cfg: DictConfig) -> None:
    """Types, then ranges and consistency: the first problem as one line (ConfigError)."""
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except Exception as e:  # noqa: BLE001 - an interpolation that does not resolve
        raise ConfigError(f"the config does not resolve ({' '.join(str(e).split())[:300]}): fix the value it names") from None
    check_types(container)
    check_values(cfg)
