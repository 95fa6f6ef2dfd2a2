"""Config validation: impossible values become one-line errors that say what to do."""

from __future__ import annotations


import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from qt.errors import ConfigError

#: the config tree (conf/train.yaml and its groups)
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

MODES = ("qt", "classical")
DEVICES = ("cpu", "cuda", "auto")
#: keys that do not change a run's trajectory: they may differ when resuming
RESUME_FREE_KEYS = (
    "trainer.epochs",
    "trainer.progress",
    "trainer.checkpoint_every",
    "trainer.resume",
    "trainer.threads",
    "paths",
    "objective",
)


def _positive(value, name: str, hint: str, integer: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "a positive integer" if integer else "positive"
        raise ConfigError(f"{name} must be {kind} (got {value!r}): {hint}")


def validate(cfg: DictConfig) -> None:
    from qt.run import OBJECTIVES

    objective = cfg.get("objective", "best_val_acc")
    names = [objective] if isinstance(objective, str) else list(objective)
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown or not names:
        raise ConfigError(f"unknown objective {unknown or names}: choose from {', '.join(OBJECTIVES)}")
    if cfg.mode not in MODES:
        raise ConfigError(f"unknown mode '{cfg.mode}': use mode=qt or mode=classical")
    if cfg.get("generator", "quantum") not in ("quantum", "classical"):
        raise ConfigError(f"unknown generator '{cfg.generator}': use generator=quantum or classical (or variant=classical_generator)")
    t = cfg.trainer
    _positive(t.epochs, "trainer.epochs", "set trainer.epochs=1 or more", integer=True)
    _positive(t.batch_size, "trainer.batch_size", "set e.g. trainer.batch_size=128", integer=True)
    _positive(t.eval_batch_size, "trainer.eval_batch_size", "set e.g. trainer.eval_batch_size=2000", integer=True)
    if t.clip_norm is not None:
        _positive(t.clip_norm, "trainer.clip_norm", "set a positive norm, or trainer.clip_norm=null to disable clipping")
    if t.threads is not None:
        _positive(t.threads, "trainer.threads", "set trainer.threads=N or null for torch's default", integer=True)
    if t.device not in DEVICES:
        raise ConfigError(f"unknown trainer.device '{t.device}': use cpu, cuda or auto")
    _positive(cfg.optimizer.get("lr"), "optimizer.lr", "set e.g. optimizer.lr=1e-2")
    if cfg.mode == "qt":
        n_blocks = cfg.circuit.get("n_blocks")
        if not (isinstance(n_blocks, int) and not isinstance(n_blocks, bool) and n_blocks >= 1):
            raise ConfigError(f"n_blocks must be an integer >= 1 (got {n_blocks!r}): set n_blocks=1 or more")
        chunk = cfg.mapping.get("chunk", 1)
        if not (isinstance(chunk, int) and chunk >= 1):
            raise ConfigError(f"mapping.chunk must be an integer >= 1 (got {chunk!r})")


def fingerprint(cfg: DictConfig) -> dict:
    """The resolved config minus keys that may change on resume: what a resumed run must match."""
    container = OmegaConf.to_container(cfg, resolve=True)
    for dotted in RESUME_FREE_KEYS:
        node = container
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return container


def diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        key = f"{prefix}{k}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_keys(va, vb, key + ".")
        elif va != vb:
            out.append(key)
    return out


def trusted_targets() -> tuple[str, ...]:
    """Packages whose callables configs may name as ``_target_`` (Hydra's execution whitelist).

    Add your own target networks or optimizers with the environment variable
    ``QT_TRUSTED_TARGETS`` (comma-separated, e.g. ``mylab.models.*``): trust comes from
    the shell, never from a config.
    """
    extra = [t.strip() for t in os.environ.get("QT_TRUSTED_TARGETS", "").split(",") if t.strip()]
    return ("qt.*", "torch.optim.*", "torch.nn.*", *extra)


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``python -m qt.train OVERRIDES`` composes (for tools that build a run's objects without running it)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name="train", overrides=list(overrides))
