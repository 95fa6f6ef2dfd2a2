"""The rules a value of the model's config must follow, in one place: each check names the key, says what
was given and what to do, in one line (a :class:`~qt.errors.ConfigError`).

The classes that take these values (circuit, mapping) check them on construction, so a
Python user gets the same line; ``qt.experiment.validation.validate`` calls the same checks on a
composed config before anything is built or loaded.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from qt.errors import ConfigError


@dataclass(frozen=True)
class Keys:
    """How a message names a setting, so that one rule speaks to whoever gave the value.

    Rules are stated with the config's dotted keys (``trainer.epochs``, ``mapping.hidden``); the
    command line shows them as they are (:data:`CLI`), the Python API by its own arguments
    (``epochs=``, ``mapping={'hidden': ...}``: ``qt.api.API_KEYS``). ``rename`` maps a dotted key
    to ``(name, how to set it)``; ``None`` keeps the CLI's.
    """

    rename: Callable[[str], tuple[str, Callable[[Any], str]] | None] = field(default=lambda key: None)
    #: how the caller writes "no value": YAML's null, Python's None
    null: str = "null"

    def name(self, key: str) -> str:
        """What the caller calls ``key``: ``trainer.epochs`` or ``epochs``."""
        found = self.rename(key)
        return key if found is None else found[0]

    def set(self, key: str, value: Any) -> str:
        """How the caller gives ``key`` a value: ``trainer.epochs=1``, ``epochs=1``, ``mapping={'hidden': [20, 20]}``."""
        found = self.rename(key)
        return f"{key}={value}" if found is None else found[1](value)


#: the command line's names: the dotted keys themselves
CLI = Keys()


def renamed(names: Mapping[str, str], groups: Sequence[str] = ()) -> Callable[[str], tuple[str, Callable[[Any], str]] | None]:
    """A :class:`Keys` renaming: ``names`` maps dotted keys (or a ``prefix.*``) to keyword arguments;
    ``groups``' keys are entries of a dict argument (``mapping.hidden`` -> ``mapping={'hidden': ...}``)."""

    def rename(key: str) -> tuple[str, Callable[[Any], str]] | None:
        group, _, leaf = key.partition(".")
        arg = names.get(key) or (leaf and names.get(f"{group}.*") and leaf)
        if arg:
            return arg, lambda value: f"{arg}={value}"
        if leaf and group in groups:
            path = leaf.split(".")

            def nested(value: Any) -> str:
                text = repr(value) if isinstance(value, str) and value.isidentifier() and value not in ("None", "True", "False") else value
                for part in reversed(path):
                    text = f"{{'{part}': {text}}}"
                return f"{group}={text}"

            return nested("..."), nested
        return None

    return rename


def whole(value: Any, key: str, least: int = 1, hint: str = "") -> int:
    """An integer (not a bool, not 2.5) of at least ``least``."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= least
    if not ok:
        raise ConfigError(f"{key} must be an integer >= {least} (got {value!r})" + (f": {hint}" if hint else ""))
    return int(value)


def number(value: Any, key: str, least: float = 0.0, strict: bool = False, hint: str = "") -> float:
    """A real number of at least ``least`` (above it, with ``strict``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value > least if strict else value >= least)
    if not ok:
        bound = f"> {least:g}" if strict else f">= {least:g}"
        raise ConfigError(f"{key} must be a number {bound} (got {value!r})" + (f": {hint}" if hint else ""))
    return float(value)


def flag(value: Any, key: str, hint: str = "") -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false (got {value!r})" + (f": {hint}" if hint else ""))
    return value


def choice(value: Any, key: str, options: Sequence[str]) -> str:
    if value not in options:
        raise ConfigError(f"unknown {key} '{value}': use {key}={' or '.join(map(str, options))}")
    return value


def settings(cfg: Any, key: str, block: type) -> dict:
    """A settings block (``circuit.noise``, ``circuit.spsa``) as a dict completed with the defaults of the dataclass
    ``block`` that states it; an unknown key is refused naming the known ones."""
    defaults = {f.name: f.default for f in fields(block)}
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown {key} key(s) {', '.join(unknown)}: use {', '.join(defaults)}")
    return {**defaults, **cfg}


#: a constructor parameter without a default
REQUIRED = inspect.Parameter.empty


def constructor_defaults(cls: type) -> dict[str, Any]:
    """Every setting a class's constructor takes, with its default (:data:`REQUIRED` for none): the class's own
    parameters over its bases' (a subclass passing ``**kwargs`` up), in the order the bases declare them."""
    out: dict[str, Any] = {}
    for c in reversed(cls.__mro__):
        if "__init__" in vars(c) and c is not object:
            params = list(inspect.signature(c.__init__).parameters.values())[1:]  # without self
            out.update({p.name: p.default for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)})
    return out


def with_defaults(cls: type, values: Mapping, group: str, keys: Keys = CLI, own: Sequence[str] = ()) -> dict[str, Any]:
    """``values`` (a config group's settings, ``_target_`` and Hydra's other ``_`` keys left out) completed with the
    constructor's defaults; a key the constructor does not take is refused in one line naming the ones it does
    (``own``: parameters qt sets itself, not listed)."""
    defaults = constructor_defaults(cls)
    given = {k: v for k, v in values.items() if not str(k).startswith("_")}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        shown = ", ".join(k for k in defaults if k not in own)
        raise ConfigError(f"{keys.name(f'{group}.{unknown[0]}')} is not a setting of {cls.__name__}: use {shown}")
    return {**{k: v for k, v in defaults.items() if v is not REQUIRED}, **given}
