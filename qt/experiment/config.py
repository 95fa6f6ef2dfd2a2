"""Config validation: impossible values become one-line errors that say what to do."""

from __future__ import annotations


import os
from collections.abc import Sequence
from typing import Any
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import execution_whitelist, get_class
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf

from qt.core.checks import flag, number, whole
from qt.core.quantum.ansatz import check_blocks
from qt.errors import ConfigError
from qt.experiment.variants import GENERATORS
from qt.results.schema import flatten
from qt.results.objectives import OBJECTIVES, objective_names

def _conf_dir() -> Path:
    """The config tree: ``qt/conf`` in an installed wheel, else the top-level ``conf/`` of a source checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise ImportError(f"qt's configs (conf/train.yaml) are neither in {package / 'conf'} nor in {package.parent / 'conf'}: reinstall qt")


#: the config tree (conf/train.yaml and its groups)
CONF_DIR = _conf_dir()

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


def validate(cfg: DictConfig) -> None:
    """Every value the run depends on, checked before anything is loaded or built: one line per problem (ConfigError)."""
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
    if t.clip_norm is not None:
        number(t.clip_norm, "trainer.clip_norm", strict=True, hint="set a positive norm, or trainer.clip_norm=null to disable clipping")
    if t.threads is not None:
        whole(t.threads, "trainer.threads", hint="set trainer.threads=N or null for torch's default")
    if t.get("test_subset") is not None:
        whole(t.test_subset, "trainer.test_subset", hint="set a number of test images, or trainer.test_subset=null")
    if cfg.dataset.get("val_fraction", 0.2) == 0 and {"best_val_acc", "val_loss"} & set(names):
        raise ConfigError(
            "dataset.val_fraction=0 leaves no validation split to judge the run by: set objective=train_loss "
            "(as experiment=paper_* do) or a val_fraction above 0"
        )
    if t.device not in DEVICES:
        raise ConfigError(f"unknown trainer.device '{t.device}': use cpu, cuda or auto")
    number(cfg.optimizer.get("lr"), "optimizer.lr", strict=True, hint="set e.g. optimizer.lr=1e-2")
    budget = cfg.get("max_trainable_params")
    if budget is not None:
        whole(budget, "max_trainable_params", hint="set a parameter budget, or max_trainable_params=null for none")
    if cfg.mode == "qt":  # the rules the circuit and the mapping apply when built, checked before anything is loaded
        check_blocks(cfg.circuit.get("n_blocks"))
        flag(cfg.circuit.get("entangle", True), "circuit.entangle", hint="false is variant=no_entanglement")
        number(cfg.circuit.get("init_scale", 1.0), "circuit.init_scale", hint="angles start in [0, 2*pi*init_scale)")
        whole(cfg.mapping.get("chunk", 1), "mapping.chunk", hint="K target weights per basis state")


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


def instantiate(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` under :func:`trusted`: the one way qt builds an object from a config node,
    inside ``hydra.main`` or not (no caller has to enter the whitelist first)."""
    with trusted():
        return hydra_instantiate(node, **kwargs)


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``python -m qt.train OVERRIDES`` composes (for tools that build a run's objects without running it)."""
    with initialize_config_dir(config_dir=str(CONF_DIR)):
        return compose(config_name="train", overrides=list(overrides))


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
