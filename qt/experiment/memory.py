"""The memory guard: what a run will allocate, estimated from its config and its (cheap, built) target
before the circuit, the mapping or the optimizer exist, against the device's free memory.

Counted (float32 unless the circuit's dtype says otherwise):

* the target: its parameters; trained directly, their gradients and the optimizer's state; run
  by QT, the generated weights and their gradients; its activations for a training batch
  (kept for backward, and their gradients) and for an evaluation batch;
* the circuit: its simulation (state and what autograd keeps, ``QuantumCircuit.memory_bytes``: its backend's own)
  and its angles with gradients and optimizer state;
* the mapping: its parameters with gradients and optimizer state, and its activations over
  every basis state (:func:`~qt.core.mapping.mapping_size`).

An estimate, not a bound: allocator overheads and the dataset (loaded already) are not in it,
so a run is refused above 90 % of the free memory.
"""

from __future__ import annotations

import logging
from typing import Any

import psutil
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from qt.core.mapping import mapping_size, qubits_for
from qt.core.quantum.ansatz import build_ansatz
from qt.core.quantum.backends import check_device, resolve
from qt.core.quantum.circuit import QuantumCircuit
from qt.core.targets import count_weights
from qt.core.checks import CLI, Keys
from qt.errors import ConfigError
from qt.training.tasks import Classification, Task

log = logging.getLogger(__name__)
GIB = 2**30


def available_memory_bytes(device: torch.device) -> int | None:
    """Free memory of ``device`` in bytes (psutil on the host: Linux, macOS, Windows); None if unreadable."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        return int(psutil.virtual_memory().available)
    except Exception as e:  # noqa: BLE001 - an unreadable host: say so, do not guess
        log.warning("cannot read the available memory (%s): the memory guard is off for this run", e)
        return None


def optimizer_slots(cfg: DictConfig) -> int:
    """Tensors the optimizer keeps per parameter: Adam and AdamW 2, SGD 1 with momentum (else 0), others 2."""
    return slots_of(str(cfg.optimizer.get("_target_", "")), cfg.optimizer.get("momentum"))


def slots_of(optimizer: str, momentum: Any = None) -> int:
    """Tensors the optimizer named ``optimizer`` (a qualified class name) keeps per parameter."""
    if optimizer.endswith(".SGD"):
        return 1 if float(momentum or 0) > 0 else 0
    return 2


@torch.no_grad()
def measure_target(target: nn.Module, example: torch.Tensor) -> tuple[list[int], int]:
    """Run ``target`` (in eval mode, put back after) on one example: (its output's shape per example, the values its
    layers output for it, i.e. activations for the memory guard). Raises what the target raises on that input."""
    sizes: list[int] = []

    def count(module, inputs, out) -> None:
        out = out[0] if isinstance(out, tuple) else out  # an LSTM's (outputs, (h, c))
        if torch.is_tensor(out):
            sizes.append(out.numel())

    hooks = [m.register_forward_hook(count)
             for m in target.modules() if not list(m.children())]  # fmt: skip
    was_training = target.training
    try:
        target.eval()
        out = target(example)
    finally:
        target.train(was_training)
        for h in hooks:
            h.remove()
    return list(out.shape[1:]) if out.dim() >= 1 else [], sum(sizes)


def probe_target(target: nn.Module, cfg: DictConfig, task: Task) -> int:
    """Run the target on one example of the dataset's shape: one line if it does not take it or does not output what
    the task needs (the dataset's classes; a sequence's shape). Returns the values its layers output per example
    (activations, for the memory guard)."""
    shape, expected = list(cfg.dataset.shape), task.output_shape(cfg.dataset)
    try:
        outputs, per_image = measure_target(target, torch.zeros(1, *shape))
    except (RuntimeError, ValueError) as e:
        said = " ".join(str(e).split())[:200]
        raise ConfigError(f"the model does not take the dataset's {shape} examples ({said}): match model.* to dataset.shape") from None
    if outputs != expected:
        if isinstance(task, Classification):
            raise ConfigError(f"the model outputs {outputs} values per image, the dataset has {expected[0]} classes: set model.num_classes={expected[0]}")
        raise ConfigError(f"the model outputs {outputs} per example, task={task.name} needs {expected} (dataset.shape): match model.* to the dataset")
    return per_image


def target_bytes(n_weights: int, per_image: int, batch: int, eval_batch: int, slots: int, classical: bool) -> dict[str, int]:
    """The target's part of a run: its activations for a training batch (and their gradients) or an evaluation batch,
    and its weights: trained directly with gradients and optimizer state, generated by QT with their gradients."""
    return {
        "target activations": 4 * per_image * max(3 * batch, eval_batch),
        "target weights": 4 * n_weights * ((2 + slots) if classical else 3),
    }


def circuit_bytes(circuit: dict, n_qubits: int, slots: int, device: torch.device) -> dict[str, int]:
    """The circuit's part of a QT run (``circuit``: the circuit group's settings): its simulation, its angles with
    their gradients and optimizer state; a one-line error when its backend does not run on ``device``."""
    circuit = {k: v for k, v in circuit.items() if not k.startswith("_")}  # _target_ and Hydra's other flags
    check_device(circuit.get("backend", "auto"), device)
    circuit["backend"] = resolve(circuit.get("backend", "auto"), device)
    angles = build_ansatz(
        circuit.get("rotation", "RY"), circuit.get("entangler", "CNOT"), circuit.get("layout", "chain"), n_qubits,
        circuit.get("n_blocks", 1), entangle=bool(circuit.get("entangle", True)), partitions=circuit.get("partitions", 1),
    ).n_params  # fmt: skip
    return {
        "circuit simulation": QuantumCircuit.memory_bytes(n_qubits=n_qubits, **circuit),
        "circuit angles": (8 if circuit.get("dtype") == "float64" else 4) * angles * (2 + slots),
    }


def mapping_bytes(mapping: dict, n_qubits: int, slots: int, device: torch.device) -> dict[str, int]:
    """The mapping's part of a QT run (``mapping``: the mapping group's settings, its ``_target_`` naming the network):
    its parameters with gradients and optimizer state, its activations over every basis state."""
    params, activations = mapping_size(mapping, n_qubits, int(mapping.get("chunk", 1)), device.type)
    return {"mapping parameters": 4 * params * (2 + slots), "mapping activations": activations}


def estimate_bytes(cfg: DictConfig, target: nn.Module, per_image: int, device: torch.device, images: int | None = None) -> dict[str, int]:
    """Bytes per part of the run (see the module docstring); ``images``: the largest split (no batch is larger)."""
    n_weights, slots, t = count_weights(target), optimizer_slots(cfg), cfg.trainer
    batch, eval_batch = (min(int(b), images or int(b)) for b in (t.batch_size, t.eval_batch_size))
    parts = target_bytes(n_weights, per_image, batch, eval_batch, slots, classical=cfg.mode == "classical")
    if cfg.mode == "classical":
        return parts
    mapping = OmegaConf.to_container(cfg.mapping, resolve=True)
    n_qubits = qubits_for(n_weights, int(mapping.get("chunk", 1)))
    circuit = OmegaConf.to_container(cfg.circuit, resolve=True)
    return parts | circuit_bytes(circuit, n_qubits, slots, device) | mapping_bytes(mapping, n_qubits, slots, device)


def refuse_oversized(parts: dict[str, int], device: torch.device, keys: Keys = CLI, density: bool = False, what: str = "this run") -> None:
    """One-line error when ``parts`` (bytes) would not fit ``device``'s free memory (above 90 % of it)."""
    need, have = sum(parts.values()), available_memory_bytes(device)
    if have is None or need <= 0.9 * have:
        return
    top = sorted(parts.items(), key=lambda kv: -kv[1])[:2]
    shown = ", ".join(f"{name} {size / GIB:.1f} GiB" for name, size in top)
    k = keys.name
    raise ConfigError(
        f"{what} needs ~{need / GIB:.1f} GiB ({shown}, ...) but {device.type} has {have / GIB:.1f} GiB free: "
        + (f"a density matrix takes 4^n: use {keys.set('circuit.noise.method', 'trajectories')}, or " if density else "")
        + f"use a smaller model, fewer {k('n_blocks')}, a smaller {k('mapping.chunk')} or {k('mapping.hidden')}, or a smaller {k('trainer.batch_size')}"
    )


def check_memory(cfg: DictConfig, target: nn.Module, per_image: int, device: torch.device, images: int | None = None) -> None:
    """One-line error, before the run's other parts are allocated, when they would not fit ``device``'s free memory."""
    density = (cfg.get("circuit") or {}).get("noise", {}).get("method") == "density" if cfg.get("mode") == "qt" else False
    refuse_oversized(estimate_bytes(cfg, target, per_image, device, images), device, density=density)
