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
from functools import partial

import psutil
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qt.errors import ConfigError
from qt.generators import ClassicalGenerator
from qt.learner import ClassicalLearner, HashedLearner, Learner, QTLearner
from qt.loggers import Loggers
from qt.mapping import activation_bytes, qubits_for
from qt.models import count_weights
from qt.quantum.circuit import estimate_memory_bytes, resolve_backend

log = logging.getLogger(__name__)


@dataclass
class Optimization:
    """What trains a learner: the training loss, and factories the trainer applies to its parameters."""

    loss: torch.nn.Module
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


def build_optimization(cfg: DictConfig) -> Optimization:
    """The ``loss``, ``optimizer`` and ``scheduler`` groups as objects (``scheduler=none``: no schedule)."""
    return Optimization(
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but torch sees no CUDA GPU: use trainer.device=cpu (or auto), or install a CUDA build of torch")
    return torch.device(name)


def available_memory_bytes(device: torch.device) -> int | None:
    """Free memory of ``device`` in bytes (psutil on the host: Linux, macOS, Windows); None if unreadable."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        return int(psutil.virtual_memory().available)
    except Exception as e:  # noqa: BLE001 - an unreadable host: say so, do not guess
        log.warning("cannot read the available memory (%s): the memory guard is off for this run", e)
        return None


def build_learner(cfg: DictConfig, device: torch.device | None = None) -> Learner:
    """The learner for ``cfg.mode``; with ``device``, first checks the circuit fits its memory."""
    target = instantiate(cfg.model)
    if cfg.mode == "classical":
        return ClassicalLearner(target)
    chunk = int(cfg.mapping.get("chunk", 1))
    if device is not None:
        check_memory(cfg, count_weights(target), chunk, device)
    circuit = instantiate(cfg.circuit, _partial_=True)
    generator = cfg.get("generator", "quantum")
    if generator == "classical":
        circuit = partial(equal_budget_generator, circuit, seed=int(cfg.trainer.seed))
    learner = QTLearner(target, circuit=circuit, mapping=instantiate(cfg.mapping, _partial_=True), chunk=chunk)
    if generator == "hashed":  # the QT config's trainable count, shared by hashing instead
        return HashedLearner(target, n_values=learner.param_table()["trainable_params"], seed=int(cfg.trainer.seed))
    return learner


def equal_budget_generator(circuit_factory, n_qubits: int, seed: int) -> torch.nn.Module:
    """The classical-generator control with exactly the parameter count of the circuit it replaces.

    Its random features and initial theta are drawn from the run's seed: each seed of a control
    is its own random generator, and the same seed gives the same one.
    """
    circuit = circuit_factory(n_qubits=n_qubits)
    frozen = not any(p.requires_grad for p in circuit.parameters())
    return ClassicalGenerator(n_qubits, n_params=circuit.ansatz.n_params, feature_seed=seed, freeze=frozen)


def check_memory(cfg: DictConfig, n_weights: int, chunk: int, device: torch.device) -> None:
    """One-line error, before any allocation, when the circuit cannot be simulated on ``device``."""
    n_qubits = qubits_for(n_weights, chunk)
    circuit = OmegaConf.to_container(cfg.circuit, resolve=True)
    circuit["backend"] = resolve_backend(circuit.get("backend", "auto"), device)
    need = estimate_memory_bytes(n_qubits=n_qubits, **{k: v for k, v in circuit.items() if k != "_target_"})
    need += activation_bytes(n_qubits, cfg.mapping.get("hidden", []), chunk)
    have = available_memory_bytes(device)
    if have is not None and need > 0.9 * have:
        raise ConfigError(
            f"the target has {n_weights:,} weights -> {n_qubits} qubits; simulating them on {circuit.get('backend')} "
            f"needs ~{need / 2**30:.1f} GiB but {device.type} has {have / 2**30:.1f} GiB free: use a smaller model, "
            "mapping.chunk=K (K weights per basis state) or fewer n_blocks"
        )


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
