"""The one builder from a composed config to the objects of a run: device, learner, loss, optimizer, scheduler.

Every tool that needs a run's objects (``qt.run``, ``qt.export``, ``qt.bench``,
``qt.probe_init``) builds them here, so a config means the same thing everywhere. The
guards that can refuse a config before anything is allocated live here too: memory
(circuit and mapping over all basis states against the device's free memory) and the
trainable-parameter budget.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from qt.core.checks import CLI, Keys
from qt.experiment.config import instantiate
from qt.experiment.memory import check_memory, probe_target
from qt.experiment.controls import qt_learner
from qt.experiment.validation import FILL
from qt.errors import ConfigError, QTError
from qt.core.learners import ClassicalLearner, Learner
from qt.training.loggers import Loggers
from qt.results.compat import upgrade, upgrade_group
from qt.results.schema import load_checkpoint, read_summary
from qt.training.data import DataSplits
from qt.training.tasks import Classification, Task

log = logging.getLogger(__name__)


@dataclass
class Optimization:
    """What trains a learner: the training loss, and factories the trainer applies to its parameters."""

    loss: torch.nn.Module | None
    optimizer: Callable
    scheduler: Callable | None


def build_loggers(cfg: DictConfig) -> Loggers:
    """The ``logger`` group: one tracker per entry (``csv``, the default, adds none to the results schema)."""
    nodes = (cfg.get("logger") or {}).values()
    loggers = [instantiate(node) for node in nodes if isinstance(node, DictConfig) and "_target_" in node]
    for logger in loggers:
        if logger.requires and importlib.util.find_spec(logger.requires) is None:
            raise ConfigError(f"logger={logger.name} needs the {logger.requires} package: pip install -e \".[{logger.name}]\"")
    return Loggers(loggers)


def build_data(cfg: DictConfig) -> DataSplits:
    """The ``dataset`` group, loaded: train, val and test splits in memory (``task=rl``: the environment)."""
    data = instantiate(cfg.dataset).load()
    log.info("data %s: %s", data.name, data.sizes())
    if not isinstance(data, DataSplits):  # an environment (task=rl): episodes, not splits
        return data
    if len(data.train) == 0 or (len(data.val) == 0 and float(cfg.dataset.get("val_fraction", 0.2)) > 0):
        raise ConfigError(f"dataset {data.name} has an empty train or val split {data.sizes()}: change dataset.val_fraction")
    return data


def build_task(cfg: DictConfig) -> Task:
    """The ``task`` group (a config written before tasks existed: classification)."""
    return instantiate(cfg.task) if cfg.get("task") is not None else Classification()


def build_loss(cfg: DictConfig) -> torch.nn.Module:
    """The ``loss`` group; a distillation teacher given as a run dir or export file is built here (read, never written).
    None for a task whose algorithm defines its loss (``task=rl``: no loss group)."""
    if cfg.get("loss") is None:
        return None
    teacher = cfg.loss.get("teacher")
    if teacher is None:
        return instantiate(cfg.loss)
    return instantiate(cfg.loss, teacher=build_teacher(teacher), source=str(teacher))


def build_optimization(cfg: DictConfig) -> Optimization:
    """The ``loss``, ``optimizer`` and ``scheduler`` groups as objects (``scheduler=none``: no schedule).

    The optimizer and scheduler factories are tried once on a throwaway parameter, so a value
    they refuse (``optimizer.betas=[2]``) stops the run here in one line, not in the trainer.
    """
    opt = Optimization(
        loss=build_loss(cfg),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
    )
    for key, make in (("optimizer", lambda: opt.optimizer([torch.nn.Parameter(torch.zeros(1))])),
                      ("scheduler", lambda: opt.scheduler(opt.optimizer([torch.nn.Parameter(torch.zeros(1))])))):  # fmt: skip
        if key == "scheduler" and opt.scheduler is None:
            continue
        try:
            make()
        except (ValueError, TypeError, KeyError) as e:
            said = " ".join(str(e).split())[:300]
            raise ConfigError(f"{key} cannot be built ({type(e).__name__}: {said}): check the {key}.* values") from None
    return opt


def resolve_device(name: str, keys: Keys = CLI) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"{keys.set('trainer.device', 'cuda')} but torch sees no CUDA GPU: use {keys.set('trainer.device', 'cpu')} (or auto), "
            "or install a CUDA build of torch"
        )
    return torch.device(name)


def build_learner(cfg: DictConfig, device: torch.device | None = None, images: int | None = None) -> Learner:
    """The learner for ``cfg.mode``. The target is built first and tried on one image (shape and classes);
    with ``device``, the whole run's memory is checked before anything else is allocated (``images``: the
    largest split's size, which caps a batch)."""
    target = instantiate(cfg.model)
    per_image = probe_target(target, cfg, build_task(cfg))
    if device is not None:
        check_memory(cfg, target, per_image, device, images)
    if cfg.mode == "classical":
        return ClassicalLearner(target)
    chunk = int(cfg.mapping.get("chunk", 1))
    circuit, mapping = instantiate(cfg.circuit, _partial_=True), instantiate(cfg.mapping, _partial_=True)
    cut = list(cfg.get("cut_gradient") or [])
    names = [name for name, _ in target.named_parameters()]
    unknown = [c for c in cut if not any(n == c or n.startswith(f"{c}.") for n in names)]
    if unknown:
        raise ConfigError(f"cut_gradient names {unknown[0]!r}, which is no tensor or module of the target: use names from {', '.join(names[:6])}, ...")
    return qt_learner(target, cfg.get("generator", "quantum"), circuit, mapping, chunk, seed=int(cfg.trainer.seed), cut_gradient=cut)


def fill_blocks(cfg: DictConfig) -> None:
    """``n_blocks: fill`` made a number, in place: the most blocks whose QT config stays within ``max_trainable_params``.

    The QT side's budget filled as ``model=cnn_budget``/``compact`` fill the classical side's: a search may vary the
    mapping, the circuit or the target and every point trains at (just under) the budget. Counted for the QT config
    itself (generator ``quantum``, circuit trainable), so its controls get the same block count and pair with it.
    A validated config (``validate`` checks it at one block) is assumed.
    """
    if cfg.get("n_blocks") != FILL:
        return
    budget = int(cfg.max_trainable_params)

    def trainable(n_blocks: int) -> int:
        probe = cfg.copy()
        probe.n_blocks, probe.mode, probe.generator = n_blocks, "qt", "quantum"
        probe.circuit.freeze = False
        with torch.random.fork_rng(devices=[]):
            return int(build_learner(probe).param_table()["trainable_params"])

    one, two = trainable(1), trainable(2)
    per_block, fixed = two - one, 2 * one - two
    if one > budget:
        raise ConfigError(
            f"n_blocks=fill: one block already gives {one:,} trainable parameters (mapping and circuit), over "
            f"max_trainable_params={budget:,}: choose a smaller mapping or raise the budget"
        )
    n = max(1, (budget - fixed) // per_block)
    while n > 1 and trainable(n) > budget:  # the count is linear in blocks; this guards against one that is not
        n -= 1
    cfg.n_blocks = n
    log.info("n_blocks=fill: %d blocks (%s trainable of max_trainable_params=%s)", n, f"{fixed + n * per_block:,}", f"{budget:,}")


def run_config(run_dir: Path) -> DictConfig:
    """The config a run dir was trained with (``.hydra/config.yaml``), under today's names (:mod:`qt.results.compat`)."""
    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.exists():
        raise QTError(f"{run_dir} is not a qt run dir (no .hydra/config.yaml): pass the folder a run wrote")
    return OmegaConf.create(upgrade(OmegaConf.to_container(OmegaConf.load(path))))  # an older qt's run: today's names


def build_export(run_dir: Path) -> dict:
    """A run's export, in memory: the target's config and the weights generated at the kept epoch (no quantum part)."""
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    best = run_dir / "checkpoints" / "best.pt"
    if not best.exists():
        raise QTError(f"{run_dir} has no checkpoints/best.pt (the run finished no epoch): train it first")
    learner = build_learner(cfg)
    learner.load_state_dict(load_checkpoint(best)["learner"])
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    return {
        "state_dict": learner.export_state_dict(),
        "model": model_cfg,
        "model_kwargs": {k: v for k, v in model_cfg.items() if k != "_target_"},
        "source_run": str(run_dir.resolve()),
        "mode": cfg.mode,
        "summary": read_summary(run_dir),
    }


def build_network(export: dict, source: str | Path) -> torch.nn.Module:
    """The plain torch network of an export (eval mode), built only if its ``_target_`` is trusted."""
    if not (isinstance(export.get("model"), dict) and isinstance(export.get("state_dict"), dict)):
        raise QTError(f"{source} is not a qt export (no 'model' config and 'state_dict'): use a file written by python -m qt.export")
    try:
        model = instantiate(upgrade_group("model", export["model"]))
        model.load_state_dict(export["state_dict"])
    except Exception as e:  # noqa: BLE001 - an untrusted _target_, a model that does not build, mismatched weights
        said = " ".join(str(e).split()) or type(e).__name__
        raise QTError(f"{source}: cannot rebuild its network ({said[:300]}): use a file written by python -m qt.export") from None
    return model.eval()


def build_teacher(path: str | Path) -> torch.nn.Module:
    """A distillation teacher: a qt run dir (its kept model, exported in memory) or a file from ``python -m qt.export``."""
    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / "checkpoints" / "best.pt").exists():
            raise ConfigError(f"loss.teacher={path} has no checkpoints/best.pt: point it at a finished qt run dir or an exported .pt")
        return build_network(build_export(path), path)
    if not path.is_file():
        raise ConfigError(f"loss.teacher={path} does not exist: give a qt run dir (e.g. of mode=classical) or a file from qt.export")
    return build_network(load_checkpoint(path), path)


def check_budget(cfg: DictConfig, table: dict) -> None:
    """One-line error when a QT learner has more trainable parameters than ``max_trainable_params``."""
    budget = cfg.get("max_trainable_params")
    if budget is None or table["mode"] != "qt" or table["trainable_params"] <= budget:
        return
    raise ConfigError(
        f"this config has {table['trainable_params']:,} trainable parameters (generator {table['qnn_params']:,}, "
        f"mapping {table['mapping_params']:,}), over max_trainable_params={budget:,}: lower n_blocks or the mapping's "
        "widths, or lift the budget with max_trainable_params=null"
    )
