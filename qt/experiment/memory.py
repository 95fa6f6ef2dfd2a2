"""The memory guard: what a run will allocate, estimated from its config and its (cheap, built) target
before the circuit, the mapping or the optimizer exist, against the device's free memory.

Counted (float32 unless the circuit's dtype says otherwise):

* the target: its parameters; trained directly, their gradients and the optimizer's state; run
  by QT, the generated weights and their gradients; its activations for a training batch
  (kept for backward, and their gradients) and for an evaluation batch;
* the circuit: its simulation (state and what autograd keeps, :func:`estimate_memory_bytes`)
  and its angles with gradients and optimizer state;
* the mapping: its parameters with gradients and optimizer state, and its activations over
  every basis state (:func:`~qt.core.mapping.mapping_size`).

An estimate, not a bound: allocator overheads and the dataset (loaded already) are not in it,
so a run is refused above 90 % of the free memory.
"""

from __future__ import annotations

import logging

import psutil
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from qt.core.mapping import mapping_size, qubits_for
from qt.core.quantum.ansatz import build_ansatz
from qt.core.quantum.circuit import estimate_memory_bytes, resolve_backend
from qt.core.targets import count_weights
from qt.errors import ConfigError

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
    target = str(cfg.optimizer.get("_target_", ""))
    if target.endswith(".SGD"):
        return 1 if float(cfg.optimizer.get("momentum") or 0) > 0 else 0
    return 2


@torch.no_grad()
def probe_target(target: nn.Module, cfg: DictConfig) -> int:
    """Run the target on one image of the dataset's shape: one line if it does not take it or does not output the
    dataset's classes. Returns the values its layers output per image (activations, for the memory guard)."""
    shape, classes = list(cfg.dataset.shape), int(cfg.dataset.num_classes)
    sizes: list[int] = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(o.numel()) if torch.is_tensor(o) else None)
             for m in target.modules() if not list(m.children())]  # fmt: skip
    was_training = target.training
    try:
        target.eval()
        out = target(torch.zeros(1, *shape))
    except (RuntimeError, ValueError) as e:
        said = " ".join(str(e).split())[:200]
        raise ConfigError(f"the model does not take the dataset's {shape} images ({said}): match model.* to dataset.shape") from None
    finally:
        target.train(was_training)
        for h in hooks:
            h.remove()
    if out.dim() != 2 or out.shape[1] != classes:
        raise ConfigError(f"the model outputs {list(out.shape[1:])} values per image, the dataset has {classes} classes: set model.num_classes={classes}")
    return sum(sizes)


def estimate_bytes(cfg: DictConfig, target: nn.Module, per_image: int, device: torch.device, images: int | None = None) -> dict[str, int]:
    """Bytes per part of the run (see the module docstring); ``images``: the largest split (no batch is larger)."""
    n_weights, slots, t = count_weights(target), optimizer_slots(cfg), cfg.trainer
    batch, eval_batch = (min(int(b), images or int(b)) for b in (t.batch_size, t.eval_batch_size))
    parts = {
        "target activations": 4 * per_image * max(3 * batch, eval_batch),
        "target weights": 4 * n_weights * ((2 + slots) if cfg.mode == "classical" else 3),
    }
    if cfg.mode == "classical":
        return parts
    chunk = int(cfg.mapping.get("chunk", 1))
    n_qubits = qubits_for(n_weights, chunk)
    circuit = OmegaConf.to_container(cfg.circuit, resolve=True)
    circuit["backend"] = resolve_backend(circuit.get("backend", "auto"), device)
    angles = build_ansatz(
        circuit.get("rotation", "RY"), circuit.get("entangler", "CNOT"), circuit.get("layout", "chain"), n_qubits,
        circuit.get("n_blocks", 1), entangle=bool(circuit.get("entangle", True)), partitions=circuit.get("partitions", 1),
    ).n_params  # fmt: skip
    mapping_params, mapping_activations = mapping_size(OmegaConf.to_container(cfg.mapping, resolve=True), n_qubits, chunk)
    parts["circuit simulation"] = estimate_memory_bytes(n_qubits=n_qubits, **{k: v for k, v in circuit.items() if k != "_target_"})
    parts["circuit angles"] = (8 if circuit.get("dtype") == "float64" else 4) * angles * (2 + slots)
    parts["mapping parameters"] = 4 * mapping_params * (2 + slots)
    parts["mapping activations"] = mapping_activations
    return parts


def check_memory(cfg: DictConfig, target: nn.Module, per_image: int, device: torch.device, images: int | None = None) -> None:
    """One-line error, before the run's other parts are allocated, when they would not fit ``device``'s free memory."""
    parts = estimate_bytes(cfg, target, per_image, device, images)
    need, have = sum(parts.values()), available_memory_bytes(device)
    if have is None or need <= 0.9 * have:
        return
    top = sorted(parts.items(), key=lambda kv: -kv[1])[:2]
    shown = ", ".join(f"{name} {size / GIB:.1f} GiB" for name, size in top)
    density = (cfg.get("circuit") or {}).get("noise", {}).get("method") == "density" if cfg.get("mode") == "qt" else False
    raise ConfigError(
        f"this run needs ~{need / GIB:.1f} GiB ({shown}, ...) but {device.type} has {have / GIB:.1f} GiB free: "
        + ("a density matrix takes 4^n: use circuit.noise.method=trajectories, or " if density else "")
        + "use a smaller model, fewer n_blocks, a smaller mapping.chunk or mapping.hidden, or a smaller trainer.batch_size"
    )
