"""The rules a value of the model's config must follow, in one place: each check names the key, says what
was given and what to do, in one line (a :class:`~qt.errors.ConfigError`).

The classes that take these values (circuit, mapping) check them on construction, so a
Python user gets the same line; ``qt.experiment.validation.validate`` calls the same checks on a
composed config before anything is built or loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qt.errors import ConfigError


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


def settings(cfg: Any, key: str, known: Sequence[str]) -> dict:
    """A settings block (``circuit.noise``, ``circuit.spsa``) as a dict; an unknown key is refused naming the known ones."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(known))
    if unknown:
        raise ConfigError(f"unknown {key} key(s) {', '.join(unknown)}: use {', '.join(known)}")
    return cfg
