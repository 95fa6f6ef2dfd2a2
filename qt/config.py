"""Config validation: impossible values become one-line errors that say what to do."""

from __future__ import annotations


import os
from collections.abc import Sequence
from typing import Any
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import execution_whitelist, get_class
from omegaconf import DictConfig, OmegaConf

from qt.errors import ConfigError
from qt.results import OBJECTIVES, objective_names

#: the config tree (conf/train.yaml and its groups)
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

MODES = ("qt", "classical")
#: where a QT run's weights come from: the circuit, the equal-budget classical generator, or HashedNets (controls)
GENERATORS = ("quantum", "classical", "hashed")
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
    "max_trainable_params",
    "logger",
)

#: keys that change nothing a run computes: where it reads data and logs, its budget guard, threads,
#: device and simulation backend (equal results to float rounding), the seed (the replicate axis)
RESULT_FREE_KEYS = (
    "paths", "logger", "objective", "max_trainable_params", "seed", "trainer.seed", "trainer.threads", "trainer.device",
    "trainer.progress", "trainer.checkpoint_every", "trainer.resume", "trainer.eval_batch_size", "circuit.backend",
    "circuit.group_size",
)  # fmt: skip
#: the keys that make a run a control of the QT config it otherwise equals (what variant_of reads)
CONTROL_KEYS = ("mode", "generator", "circuit.freeze", "circuit.entangle")


def variant_of(cfg: Any) -> str:
    """The control a config is, read from the keys that make it (``mode``, ``generator``, ``circuit.freeze``, ``circuit.entangle``).

    ``variant=NAME`` sets those keys; a run launched with them directly (``mode=classical``)
    is the same control and is labelled the same.
    """
    if cfg.get("mode") == "classical":
        return "classical"
    circuit = cfg.get("circuit") or {}
    frozen = bool(circuit.get("freeze"))
    generator = cfg.get("generator", "quantum")
    if generator == "hashed":
        return "hashed"
    if generator == "classical":
        return "fixed_vector" if frozen else "classical_generator"
    if frozen:
        return "frozen"
    return "qt" if circuit.get("entangle", True) else "no_entanglement"


def _positive(value, name: str, hint: str, integer: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "a positive integer" if integer else "positive"
        raise ConfigError(f"{name} must be {kind} (got {value!r}): {hint}")


def validate(cfg: DictConfig) -> None:
    names = objective_names(cfg.get("objective", "best_val_acc"))
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown or not names:
        raise ConfigError(f"unknown objective {unknown or names}: choose from {', '.join(OBJECTIVES)}")
    if cfg.mode not in MODES:
        raise ConfigError(f"unknown mode '{cfg.mode}': use mode=qt or mode=classical")
    if cfg.get("generator", "quantum") not in GENERATORS:
        raise ConfigError(f"unknown generator '{cfg.generator}': use generator={' or '.join(GENERATORS)} (or a variant: variant=classical_generator, hashed)")
    t = cfg.trainer
    _positive(t.epochs, "trainer.epochs", "set trainer.epochs=1 or more", integer=True)
    _positive(t.batch_size, "trainer.batch_size", "set e.g. trainer.batch_size=128", integer=True)
    _positive(t.eval_batch_size, "trainer.eval_batch_size", "set e.g. trainer.eval_batch_size=2000", integer=True)
    if t.clip_norm is not None:
        _positive(t.clip_norm, "trainer.clip_norm", "set a positive norm, or trainer.clip_norm=null to disable clipping")
    if t.threads is not None:
        _positive(t.threads, "trainer.threads", "set trainer.threads=N or null for torch's default", integer=True)
    if t.get("test_subset") is not None:
        _positive(t.test_subset, "trainer.test_subset", "set a number of test images, or trainer.test_subset=null", integer=True)
    if cfg.dataset.get("val_fraction", 0.2) == 0 and {"best_val_acc", "val_loss"} & set(names):
        raise ConfigError(
            "dataset.val_fraction=0 leaves no validation split to judge the run by: set objective=train_loss "
            "(as experiment=paper_* do) or a val_fraction above 0"
        )
    if t.device not in DEVICES:
        raise ConfigError(f"unknown trainer.device '{t.device}': use cpu, cuda or auto")
    _positive(cfg.optimizer.get("lr"), "optimizer.lr", "set e.g. optimizer.lr=1e-2")
    budget = cfg.get("max_trainable_params")
    if budget is not None:
        _positive(budget, "max_trainable_params", "set a parameter budget, or max_trainable_params=null for none", integer=True)
    if cfg.mode == "qt":
        n_blocks = cfg.circuit.get("n_blocks")
        if not (isinstance(n_blocks, int) and not isinstance(n_blocks, bool) and n_blocks >= 1):
            raise ConfigError(f"n_blocks must be an integer >= 1 (got {n_blocks!r}): set n_blocks=1 or more")
        if not isinstance(cfg.circuit.get("entangle", True), bool):
            raise ConfigError(f"circuit.entangle must be true or false (got {cfg.circuit.entangle!r}): false is variant=no_entanglement")
        scale = cfg.circuit.get("init_scale", 1.0)
        if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale >= 0):
            raise ConfigError(f"circuit.init_scale must be a number >= 0 (got {scale!r}): angles start in [0, 2*pi*init_scale)")
        chunk = cfg.mapping.get("chunk", 1)
        if not (isinstance(chunk, int) and chunk >= 1):
            raise ConfigError(f"mapping.chunk must be an integer >= 1 (got {chunk!r})")


def _scheduler_resume_free(container: dict) -> tuple[str, ...]:
    """Keys of a qt scheduler that may change on resume (its ``resume_free``, e.g. the cosine's T_max)."""
    target = (container.get("scheduler") or {}).get("_target_")
    if not (isinstance(target, str) and target.startswith("qt.")):
        return ()
    return tuple(getattr(get_class(target), "resume_free", ()))


def fingerprint(cfg: DictConfig) -> dict:
    """The resolved config minus keys that may change on resume: what a resumed run must match."""
    container = OmegaConf.to_container(cfg, resolve=True)
    for dotted in (*RESUME_FREE_KEYS, *(f"scheduler.{k}" for k in _scheduler_resume_free(container))):
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


def trusted():
    """Context for building objects from a config outside ``hydra.main`` (tools, export): the same
    execution whitelist the entry point gives Hydra, so no config can name an untrusted callable."""
    return execution_whitelist(trusted_targets())


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``python -m qt.train OVERRIDES`` composes (for tools that build a run's objects without running it)."""
    with initialize_config_dir(config_dir=str(CONF_DIR)):
        return compose(config_name="train", overrides=list(overrides))


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as {dotted.key: value} (lists are values, not nested)."""
    if not isinstance(node, dict):
        return {prefix[:-1]: node}
    out: dict[str, Any] = {}
    for k, v in node.items():
        out.update(flatten(v, f"{prefix}{k}."))
    return out


def override_options(value: str) -> list[str]:
    """The options of a ``group=...`` override: one, a sweep's ``a,b`` or a list ``[a,b]``."""
    return [v.strip() for v in value.strip("[]").split(",") if v.strip()]


def option_keys(group: str, option: str, conf_dir: Path = CONF_DIR) -> set[str]:
    """Dotted config keys a group option's YAML file sets (its package applied; options it extends included)."""
    path = conf_dir / group / f"{option}.yaml"
    if not path.is_file():
        return set()
    text = path.read_text()
    body = OmegaConf.to_container(OmegaConf.create(text)) or {}
    keys: set[str] = set()
    for entry in body.pop("defaults", None) or []:
        if isinstance(entry, str) and entry != "_self_" and "/" not in entry:
            keys |= option_keys(group, entry, conf_dir)  # an option of the same group it extends
    body.pop("hydra", None)
    prefix = "" if "@package _global_" in text else f"{group}."
    return keys | set(flatten(body, prefix))


def experiment_choices(experiment: str, conf_dir: Path = CONF_DIR) -> dict[str, str]:
    """The group options an experiment file selects (its ``override /GROUP: OPTION`` entries)."""
    path = conf_dir / "experiment" / f"{experiment}.yaml"
    body = OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else {}
    out = {}
    for entry in (body or {}).get("defaults") or []:
        if isinstance(entry, dict):
            for key, option in entry.items():
                out[key.removeprefix("override ").lstrip("/")] = str(option)
    return out


def experiment_conflict(experiment: str | None, overrides: Sequence[str], conf_dir: Path = CONF_DIR) -> str | None:
    """One-line message when the experiment file would silently replace values of a group option the user chose.

    Experiment files are merged last, so ``experiment=mnist_1500 optimizer=sgd`` would train SGD
    at the experiment's Adam learning rate without a word. A value the user typed as well
    (``optimizer.lr=0.1``) settles it.
    """
    if not experiment:
        return None
    set_by_experiment = option_keys("experiment", experiment, conf_dir)
    own = experiment_choices(experiment, conf_dir)
    pairs = [o.lstrip("+~").split("=", 1) for o in overrides if "=" in o]
    typed = [key for key, _ in pairs if not (conf_dir / key).is_dir()]  # values, not group choices
    for group, value in pairs:
        if group == "experiment" or group.startswith("hydra") or not (conf_dir / group).is_dir():
            continue
        for option in override_options(value):
            if option == own.get(group):
                continue  # the experiment's own choice: its values are meant for it
            clash = sorted(
                k for k in set_by_experiment & option_keys(group, option, conf_dir)
                if not any(k == t or k.startswith(t + ".") for t in typed)
            )
            if clash:
                return (
                    f"experiment={experiment} sets {', '.join(clash)} for its own {group}, which would silently replace "
                    f"the value{'s' if len(clash) > 1 else ''} of {group}={option}: give {clash[0]}=VALUE too, or drop {group}={option}"
                )
    return None
