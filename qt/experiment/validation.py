"""The one place a composed config is checked, before anything is loaded or built.

Every value passes through here:

1. **Types**, from the code that takes the value: each config group with a ``_target_``
   (dataset, model, circuit, mapping, optimizer, scheduler, loss, loggers) is checked against
   the type hints of its class's constructor, the ``trainer`` group against ``TrainerConfig``'s
   fields and the top-level keys against :data:`TOP_LEVEL`. ``mapping.hidden=abc`` or
   ``trainer.seed=abc`` is one line naming the key and the type it needs.
2. **Ranges and choices**: the rules the classes apply when built, here applied before any data
   is read: the circuit's and the mapping's own ``check_settings`` (each rule stated once, in the
   class), the trainer's and the top level's below.
3. **Consistency** between keys: an objective the run can be judged by, normalisation that
   matches the image's channels, a dataset and a loss made for the task.

What only the built objects can tell (a target too deep for the image, one whose outputs are
not the dataset's classes, the memory a run needs) is checked by ``qt.experiment.build``
before training. Every problem is a :class:`~qt.errors.ConfigError`: one line, exit status 2.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Union

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from qt.core.checks import CLI, Keys, number, whole
from qt.core.mapping import MappingBase
from qt.core.quantum.circuit import QuantumCircuit
from qt.errors import ConfigError
from qt.experiment.controls import GENERATORS
from qt.results.objectives import OBJECTIVES, objective_names
from qt.training.state import TrainerConfig
from qt.training.tasks import Classification, Task

MODES = ("qt", "classical")
DEVICES = ("cpu", "cuda", "auto")
#: the groups built from a ``_target_``, checked against their class's constructor
TARGET_GROUPS = ("task", "dataset", "model", "circuit", "mapping", "optimizer", "scheduler", "loss")
#: top-level keys and their types
TOP_LEVEL = {"seed": int, "n_blocks": int | str, "mode": str, "generator": str, "max_trainable_params": int | None,
             "cut_gradient": list[str] | None}


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


def constructor_hints(cls: type) -> dict[str, Any]:
    """The constructor's type hints, the class's own first, then its bases' (a subclass passing ``**kwargs`` up)."""
    if hasattr(cls, "__dataclass_fields__"):
        sources = [cls]
    else:
        sources = [c.__init__ for c in reversed(cls.__mro__) if "__init__" in vars(c) and c is not object]
    hints: dict[str, Any] = {}
    variadic = {"return"}
    for source in sources:
        try:
            hints.update(typing.get_type_hints(source))
        except Exception:  # noqa: BLE001 - hints that do not resolve (a third-party class): that class unchecked
            continue
        if not isinstance(source, type):  # *args / **kwargs are no settings
            variadic |= {p.name for p in inspect.signature(source).parameters.values() if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return {k: v for k, v in hints.items() if k not in variadic}


def check_node(node: Mapping, where: str, hints: dict[str, Any], keys: Keys = CLI) -> None:
    """Each value of a config node (``where``: its dotted key) against the type its taker declares in ``hints``."""
    for key, value in node.items():
        if key.startswith("_") or key not in hints or conforms(value, hints[key]):
            continue
        shown = f"'{value}'" if isinstance(value, str) else repr(value)
        dotted = f"{where}.{key}"
        raise ConfigError(f"{keys.name(dotted)} must be {_describe(hints[key])} (got {shown}): fix {keys.set(dotted, '...')}")


def check_class_node(node: Mapping, where: str, keys: Keys = CLI) -> None:
    """A node with a ``_target_`` against its class's constructor hints (an unknown class: left to building it)."""
    if not isinstance(node, Mapping) or not isinstance(node.get("_target_"), str):
        return
    try:
        cls = get_class(node["_target_"])
    except Exception:  # noqa: BLE001 - an unknown or untrusted _target_: building it says so
        return
    check_node(node, where, constructor_hints(cls) if inspect.isclass(cls) else {}, keys)


def trainer_hints() -> dict[str, Any]:
    """The ``trainer`` settings' types (:class:`~qt.training.state.TrainerConfig`'s fields)."""
    return constructor_hints(TrainerConfig)


def check_types(container: dict) -> None:
    """Every value against the type the code that takes it declares."""
    for key, hint in TOP_LEVEL.items():
        if key in container and not conforms(container[key], hint):
            raise ConfigError(f"{key} must be {_describe(hint)} (got {container[key]!r}): fix {key}=...")
    check_node(container.get("trainer") or {}, "trainer", trainer_hints())
    nodes = [(g, container.get(g)) for g in TARGET_GROUPS]
    nodes += [(f"logger.{k}", v) for k, v in (container.get("logger") or {}).items()]
    for where, node in nodes:
        check_class_node(node, where)


def check_trainer(t: Mapping, keys: Keys = CLI) -> None:
    """The ranges and choices of the ``trainer`` settings (the CLI's ``trainer.*``, the API's ``fit`` arguments)."""

    def key(name: str) -> str:
        return keys.name(f"trainer.{name}")

    def set_(name: str, value: Any) -> str:
        return keys.set(f"trainer.{name}", value)

    whole(t["epochs"], key("epochs"), hint=f"set {set_('epochs', 1)} or more")
    whole(t["batch_size"], key("batch_size"), hint=f"set e.g. {set_('batch_size', 128)}")
    whole(t["eval_batch_size"], key("eval_batch_size"), hint=f"set e.g. {set_('eval_batch_size', 2000)}")
    whole(t["seed"], key("seed"), least=0, hint="seeds are integers >= 0")
    whole(t["checkpoint_every"], key("checkpoint_every"), least=0, hint="0 writes last.pt at epoch ends only")
    optional = (("clip_norm", "a positive norm"), ("threads", "N threads"), ("test_subset", "a number of test images"),
                ("limit_train_batches", "a number of steps"))  # fmt: skip
    for name, what in optional:
        if t.get(name) is not None:
            check = number if name == "clip_norm" else whole
            hint = f"set {what}, or {set_(name, keys.null)}" + (" to disable clipping" if name == "clip_norm" else "")
            check(t[name], key(name), **({"strict": True} if name == "clip_norm" else {}), hint=hint)
    if t["device"] not in DEVICES:
        raise ConfigError(f"unknown {key('device')} '{t['device']}': use cpu, cuda or auto")


def check_lr(lr: Any, keys: Keys = CLI) -> float:
    """The optimizer's learning rate: a number above 0."""
    return number(lr, keys.name("optimizer.lr"), strict=True, hint=f"set e.g. {keys.set('optimizer.lr', '1e-2')}")


def settings_class(node: Mapping, default: type) -> type:
    """The class a circuit or mapping node builds (its ``_target_``; ``default`` without one, as an API factory's)."""
    target = node.get("_target_")
    cls = get_class(target) if isinstance(target, str) else default
    return cls if hasattr(cls, "check_settings") else default


def check_qt_settings(circuit: Mapping, mapping: Mapping, keys: Keys = CLI) -> None:
    """The circuit's and the mapping's rules (their classes' ``check_settings``: the rules their constructors apply),
    before either is built, CLI and API alike."""
    settings_class(circuit, QuantumCircuit).check_settings(circuit, keys)
    settings_class(mapping, MappingBase).check_settings(mapping, keys)


def check_blocks_home(cfg: DictConfig) -> None:
    """``n_blocks`` has one home, the top-level key the user types; the circuit's reads it (``${n_blocks}``). A
    ``circuit.n_blocks`` that says otherwise would leave the run's config with two block counts: refused."""
    circuit = cfg.get("circuit")
    if circuit is None or "n_blocks" not in circuit or OmegaConf.is_interpolation(circuit, "n_blocks"):
        return
    if circuit.n_blocks != cfg.get("n_blocks"):
        raise ConfigError(f"circuit.n_blocks={circuit.n_blocks} but n_blocks={cfg.get('n_blocks')}: set the block count as n_blocks={circuit.n_blocks} (the circuit reads it)")


def _class_of(node: Any, default: type | None = None) -> type | None:
    target = node.get("_target_") if isinstance(node, Mapping) else None
    try:
        return get_class(target) if isinstance(target, str) else default
    except Exception:  # noqa: BLE001 - an unknown _target_: building it says so
        return None


def check_task(cfg: DictConfig, objectives: list[str]) -> None:
    """A dataset, a loss and objectives made for the run's task (``task=sequence dataset=mnist`` is one line)."""
    task_class = _class_of(cfg.get("task"), Classification)
    if task_class is None or not issubclass(task_class, Task):
        raise ConfigError(f"task._target_ {cfg.task.get('_target_')!r} is no qt task: use task=classification or task=sequence")
    task = task_class()
    data_class = _class_of(cfg.get("dataset"))
    made_for = getattr(data_class, "task", "classification") if data_class is not None else task.name
    if made_for != task.name:
        raise ConfigError(f"dataset={cfg.dataset.get('name') or cfg.dataset.get('id') or getattr(data_class, 'name', '?')} is data for task={made_for}, not task={task.name}: "
                          f"choose one of the task's datasets (e.g. dataset={task.example_dataset}) or task={made_for}")  # fmt: skip
    loss_class = _class_of(cfg.get("loss"))
    if loss_class is not None and loss_class.__name__ not in task.losses and loss_class.__module__.startswith("qt."):
        raise ConfigError(f"loss {loss_class.__name__} does not train task={task.name}: use {' or '.join(f'loss={x.lower()}' for x in task.losses[:1])} (the task's default)")
    judged = [n for n in objectives if n.startswith("best_val_") and n not in task.objectives]
    if judged:
        raise ConfigError(f"objective {judged[0]} is not measured by task={task.name}: use objective={task.objectives[0]}")
    if cfg.trainer.get("test_subset") is not None and task.name != "classification":
        raise ConfigError(f"trainer.test_subset reports accuracy on test images: task={task.name} has none; set trainer.test_subset=null")


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
    check_trainer(cfg.trainer)
    if cfg.get("cut_gradient") and (cfg.mode != "qt" or cfg.get("generator", "quantum") == "hashed"):
        raise ConfigError("cut_gradient stops the gradient of generated weights: it needs mode=qt and a generator "
                          "that generates them (not variant=classical or hashed); set cut_gradient=null")  # fmt: skip
    if cfg.dataset.get("val_fraction", 0.2) == 0 and {"best_val_acc", "best_val_mse", "val_loss"} & set(names):
        raise ConfigError(
            "dataset.val_fraction=0 leaves no validation split to judge the run by: set objective=train_loss "
            "(as experiment=paper_* do) or a val_fraction above 0"
        )
    check_lr(cfg.optimizer.get("lr"))
    budget = cfg.get("max_trainable_params")
    if budget is not None:
        whole(budget, "max_trainable_params", hint="set a parameter budget, or max_trainable_params=null for none")
    if cfg.mode == "qt":  # the rules the circuit and the mapping apply when built
        check_blocks_home(cfg)
        check_qt_settings(cfg.circuit, cfg.mapping)


#: ``n_blocks: fill``: the most blocks within ``max_trainable_params`` (``qt.experiment.build.fill_blocks``)
FILL = "fill"


def validate(cfg: DictConfig) -> None:
    """Types, then ranges and consistency: the first problem as one line (ConfigError).

    ``n_blocks=fill`` needs a budget, and the rest of the config is checked as it would be at one block.
    """
    blocks = cfg.get("n_blocks")
    if isinstance(blocks, str):
        if blocks != FILL:
            raise ConfigError(f"n_blocks must be an integer or fill (got '{blocks}'): e.g. n_blocks=16, or n_blocks=fill with max_trainable_params=N")
        if cfg.get("max_trainable_params") is None:
            raise ConfigError("n_blocks=fill fills a trainable budget: set max_trainable_params=N (e.g. 697)")
        probe = cfg.copy()
        probe.n_blocks = 1
        return validate(probe)
    check_task(cfg, objective_names(cfg.get("objective", "best_val_acc")))  # first: another task's groups may not resolve
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except Exception as e:  # noqa: BLE001 - an interpolation that does not resolve
        said = " ".join(str(e).split())[:300]
        if str(getattr(e, "full_key", "")).startswith("model.") and "dataset." in said:
            raise ConfigError(f"{e.full_key} reads a dataset key this dataset lacks ({said[:120]}): the model is not made for "
                              f"this dataset's task; choose one that is (task=sequence: model=lstm)") from None  # fmt: skip
        raise ConfigError(f"the config does not resolve ({said}): fix the value it names") from None
    check_types(container)
    check_values(cfg)
