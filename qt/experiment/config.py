"""Config validation: impossible values become one-line errors that say what to do."""

from __future__ import annotations


import os
from collections.abc import Sequence
from typing import Any
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import execution_whitelist, get_class
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf

from qt.errors import ConfigError, QTError
from qt.results.schema import flatten

def _conf_dir() -> Path:
    """The config tree: ``qt/conf`` in an installed wheel, else the top-level ``conf/`` of a source checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise ImportError(f"qt's configs (conf/train.yaml) are neither in {package / 'conf'} nor in {package.parent / 'conf'}: reinstall qt")


#: the config tree (conf/train.yaml and its groups)
CONF_DIR = _conf_dir()

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


def _scheduler_resume_free(container: dict) -> tuple[str, ...]:
    """Keys of a qt scheduler that may change on resume (its ``resume_free``, e.g. the cosine's T_max)."""
    target = (container.get("scheduler") or {}).get("_target_")
    if not (isinstance(target, str) and target.startswith("qt.")):
        return ()
    return tuple(getattr(get_class(target), "resume_free", ()))


def fingerprint(cfg: DictConfig) -> dict:
    """The resolved config minus keys that may change on resume: what a resumed run must match."""
    return resume_bound(OmegaConf.to_container(cfg, resolve=True))


def resume_bound(container: dict) -> dict:
    """A resolved config (a dict, changed in place) without the keys that may change on resume."""
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
    try:
        with trusted():
            return hydra_instantiate(node, **kwargs)
    except QTError:
        raise
    except (TypeError, ValueError, InstantiationException) as e:  # a value the class refuses: one line naming the group
        cause = e.__cause__ if isinstance(e, InstantiationException) and e.__cause__ else e
        if isinstance(cause, QTError):
            raise cause from None
        if not isinstance(cause, (TypeError, ValueError, InstantiationException)):
            raise  # not a refused value but a fault: its traceback is the report
        key = node._get_full_key(None) if isinstance(node, DictConfig) else "config"
        said = " ".join(line for line in str(cause).splitlines() if not line.strip().startswith("full_key:"))
        said = " ".join(said.split())[:300]
        raise ConfigError(f"{key} cannot be built ({type(cause).__name__}: {said}): check the {key}.* values") from None


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


def _composed(overrides: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the group options Hydra chose, {dotted key: value} unresolved) for ``overrides``, inside Hydra's main or not."""
    from hydra import compose as hydra_compose
    from hydra.core.global_hydra import GlobalHydra

    def run() -> DictConfig:
        return hydra_compose(config_name="train", overrides=list(overrides), return_hydra_config=True)

    if GlobalHydra.instance().is_initialized():
        cfg = run()
    else:
        with initialize_config_dir(config_dir=str(CONF_DIR)):
            cfg = run()
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    container = OmegaConf.to_container(cfg, resolve=False)
    container.pop("hydra")
    return choices, flatten(container)


def _one_value(override: str) -> str | None:
    """A sweep override as one of its values (``seed=0,1`` -> ``seed=0``); None for sweep functions (``range(...)``)."""
    key, _, value = override.partition("=")
    if "(" in value:
        return None
    if "," in value and not value.strip().startswith(("[", "{", "'", '"')):
        value = value.split(",")[0]
    return f"{key}={value}"


def experiment_conflict(experiment: str | None, overrides: Sequence[str], conf_dir: Path = CONF_DIR) -> str | None:
    """One-line message when the experiment would silently replace values of a group option the user chose.

    Experiment files are merged last, so ``experiment=mnist_1500 optimizer=sgd`` would train SGD
    at the experiment's Adam learning rate without a word. Decided from what Hydra composes:
    for each group option on the command line, the keys that option sets are compared with
    and without the experiment (its whole defaults tree: files it includes, their choices);
    a key the experiment changes is a conflict, unless the user typed its value too
    (``optimizer.lr=0.1``). The experiment's own choices compose to the same values, so
    choosing them again (``experiment=mnist_large optimizer=adam``) is no conflict.
    """
    if not experiment:
        return None
    kept = [o for o in overrides if "=" in o and not o.lstrip("+~").startswith(("hydra", "experiment="))]
    pairs = [o.lstrip("+~").split("=", 1) for o in kept]
    typed = [key for key, _ in pairs if not (conf_dir / key).is_dir()]  # values, not group choices
    chosen = [(group, value) for group, value in pairs if (conf_dir / group).is_dir()]
    if not chosen:
        return None  # no group option chosen beside the experiment: nothing to compose
    own, _ = _composed([f"experiment={experiment}"])  # the experiment's choices, through its whole defaults tree
    for group, value in chosen:
        for option in override_options(value):
            if own.get(group) == option:
                continue  # the experiment's own choice: its values are meant for it
            base = [c for o in kept if not o.lstrip("+~").startswith(f"{group}=") and (c := _one_value(o))]
            prefix = "+" if any(o.startswith(f"+{group}=") for o in kept) else ""
            base.append(f"{prefix}{group}={option}")
            # without the experiment's values, but in its task (task=rl: keys typed for that task compose without it)
            choices = [f"task={own['task']}"] if own.get("task") and "task" not in {c for c, _ in chosen} else []
            (_, alone), (_, composed) = _composed([*choices, *base]), _composed([f"experiment={experiment}", *base])
            clash = sorted(
                k for k in option_keys(group, option, conf_dir)
                if alone.get(k) != composed.get(k) and not any(k == t or k.startswith(t + ".") for t in typed)
            )
            if clash:
                return (
                    f"experiment={experiment} sets {', '.join(clash)} for its own {group}, which would silently replace "
                    f"the value{'s' if len(clash) > 1 else ''} of {group}={option}: give {clash[0]}=VALUE too, or drop {group}={option}"
                )
    return None
