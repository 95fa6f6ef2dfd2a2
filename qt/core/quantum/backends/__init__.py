"""Simulators behind one interface: a registry of backends, each stating what it supports and what memory it needs.

As PennyLane separates devices from operations, an :class:`~qt.core.quantum.ansatz.Ansatz` says *what* runs (its
:meth:`~qt.core.quantum.ansatz.Ansatz.ops`, the one gate encoding) and a backend *how*. Every backend builds a
simulator, an object whose ``probs(angles)`` returns the 2^n probabilities, differentiable in torch. A
:class:`Backend` entry states:

* ``devices``: the torch device types its simulator runs on; ``auto_for``: where ``circuit.backend=auto`` picks it;
* ``dtypes``: the ``circuit.dtype`` values it simulates in (the PennyLane devices compute in complex128 either way);
* ``exact_gradient``: how it differentiates (``circuit.gradient=adjoint``; ``parameter_shift`` and ``spsa`` need only
  probabilities, which every backend gives);
* ``noise``: the ``circuit.noise.method`` values it simulates itself (``selectable=False``: a backend reached only
  through its noise method, not a ``circuit.backend`` value);
* ``partitions``: whether ``circuit.partitions`` may run its sub-circuits on it;
* ``memory_bytes``: the peak memory of one differentiable simulation, for the memory guard.

:func:`simulator` is the one place that picks a simulator for a circuit (``QuantumCircuit`` asks it);
:func:`memory_bytes` asks the backend it would pick for its memory. A new backend is one :func:`register` call.
Shot sampling is not a backend's business: :mod:`qt.core.quantum.shots` turns any backend's probabilities into
what a device returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from qt.core.quantum.ansatz import Ansatz
from qt.core.quantum.backends import density, fused, pennylane_devices, torch_statevector, trajectories
from qt.core.quantum.noise import NoiseContext, NoiseModel, apply_readout
from qt.errors import ConfigError

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class Options:
    """What a simulator is built with besides its ansatz (the circuit's settings)."""

    dtype: torch.dtype = torch.float32
    group_size: int | None = None  # the torch backend's qubits per local operator (None: automatic)
    noise: NoiseModel = NoiseModel()
    context: NoiseContext | None = None  # shared by a circuit's noisy simulators (training or evaluation)


@dataclass(frozen=True)
class Backend:
    """A registered simulator and its capabilities (module docstring)."""

    name: str
    summary: str
    build: Callable[[Ansatz, Options], object]
    memory_bytes: Callable[[Ansatz, Options], int]
    devices: tuple[str, ...]
    exact_gradient: str
    dtypes: tuple[str, ...] = ("float32", "float64")
    noise: tuple[str, ...] = ()
    auto_for: tuple[str, ...] = ()
    partitions: bool = True
    selectable: bool = True
    warm: Callable[[Ansatz, Options], None] | None = None


REGISTRY: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Adds ``backend`` (a name not taken, ``auto`` reserved)."""
    if backend.name == "auto" or backend.name in REGISTRY:
        raise ValueError(f"backend name '{backend.name}' is taken")
    REGISTRY[backend.name] = backend
    return backend


def names() -> tuple[str, ...]:
    """The ``circuit.backend`` values: ``auto`` and every selectable backend."""
    return ("auto", *(b.name for b in REGISTRY.values() if b.selectable))


def get(name: str) -> Backend:
    """The backend ``circuit.backend=name`` selects (``auto`` is resolved per device: :func:`resolve`)."""
    if name not in REGISTRY or not REGISTRY[name].selectable:
        raise ConfigError(f"unknown circuit backend '{name}': use circuit.backend={', '.join(names())}")
    return REGISTRY[name]


def resolve(name: str, device: torch.device | str) -> str:
    """The backend that ``name`` means on ``device``: itself, or for ``auto`` the backend registered for the device type."""
    kind = torch.device(device).type
    if name != "auto":
        return get(name).name
    for backend in REGISTRY.values():
        if kind in backend.auto_for:
            return backend.name
    raise ConfigError(f"no backend runs circuit.backend=auto on {kind}: set circuit.backend to one that does")


def check_device(name: str, device: torch.device | str) -> None:
    """One-line error when backend ``name`` (resolved for ``device``) cannot run there."""
    kind = torch.device(device).type
    backend = REGISTRY[resolve(name, device)]
    if kind not in backend.devices:
        fits = [b.name for b in REGISTRY.values() if b.selectable and kind in b.devices]
        raise ConfigError(f"circuit.backend={backend.name} runs on {', '.join(backend.devices)}, not {kind}: use circuit.backend=auto or {' or '.join(fits)}")


def choose(name: str, n_qubits: int, noise: NoiseModel) -> Backend | None:
    """The backend that simulates an ``n_qubits`` circuit under ``noise`` when ``circuit.backend=name``; None: ``auto``
    without gate noise, decided at each call by the angles' device (:class:`ByDevice`).

    Gate noise runs on the backend asked for when it simulates the noise method itself, else on the (not
    selectable) backend registered for that method; ``auto`` means the CPU's backend, where trajectories run.
    """
    asked = get(name) if name != "auto" else None
    if not noise.gate_noise:
        return asked
    method = noise.resolve(n_qubits)
    asked = asked or REGISTRY[resolve("auto", "cpu")]
    if method in asked.noise:
        return asked
    for backend in REGISTRY.values():
        if not backend.selectable and method in backend.noise:
            return backend
    able = [b.name for b in REGISTRY.values() if b.selectable and method in b.noise]
    raise ConfigError(
        f"circuit.noise by {method} runs on the {', '.join(able)} backend, not '{name}': "
        f"set circuit.backend={able[0]} (CPU), or circuit.noise.method=density for a small circuit"
    )


def simulator(ansatz: Ansatz, name: str = "auto", options: Options = Options()):
    """The object whose ``probs(angles)`` simulates ``ansatz`` on backend ``name`` with ``options`` (noise included)."""
    if len(ansatz.groups) > 1:
        return Partitioned(ansatz, name, options)
    backend = choose(name, ansatz.n_qubits, options.noise)
    sim = ByDevice(ansatz, options) if backend is None else backend.build(ansatz, options)
    if not options.noise.gate_noise and options.noise.readout > 0:  # gate-noise simulators apply their readout
        sim = Readout(sim, options.noise.readout)
    return sim


class Partitioned:
    """A distributed ansatz: each sub-circuit simulated alone on backend ``name``, the probabilities combined.

    Sub-circuit k acts on wires ``groups[k]``, wire 0 most significant, so the probability of
    basis state i = (i_0, ..., i_{K-1}) (the bits of each group in turn) is the product of the
    sub-circuits' p_k(i_k): the Kronecker product p_0 (x) p_1 (x) ... (x) p_{K-1}, itself a
    probability distribution over the 2^n basis states (the distribution of the product state
    the K circuits prepare). Photonic Quantum-Train (arXiv 2505.08474) is described as dividing
    each sub-distribution by its mean before the outer product (docs/family.md: not checked in
    code); that is 2^n times this, a constant qt's rescaling (``gamma * 2^(n-1) * p``) absorbs.
    """

    def __init__(self, ansatz: Ansatz, name: str, options: Options):
        self.ansatz = ansatz  # each sub-circuit under the noise (readout per bit commutes with the Kronecker product)
        for sub, _ in ansatz.parts():
            backend = choose(name, sub.n_qubits, options.noise)
            if backend is not None and not backend.partitions:
                raise ConfigError(f"circuit.partitions runs its sub-circuits on backends that support it, not '{backend.name}': use circuit.partitions=1")
        self.parts = [(simulator(sub, name, options), slices) for sub, slices in ansatz.parts()]

    def probs(self, angles: list[torch.Tensor]) -> torch.Tensor:
        out = None
        for sim, slices in self.parts:
            # each sub-circuit's gates are a contiguous slice of every angle tensor (views: one autograd graph)
            p = sim.probs([a[:, s] for a, s in zip(angles, slices)])
            out = p if out is None else (out[:, None] * p[None, :]).reshape(-1)
        return out


class Readout:
    """A noiseless simulator's probabilities with each measured bit flipped with probability ``e``."""

    def __init__(self, sim, e: float):
        self.simulator, self.e = sim, e

    def probs(self, angles: list[torch.Tensor]) -> torch.Tensor:
        return apply_readout(self.simulator.probs(angles), self.e)


class ByDevice:
    """``circuit.backend=auto``: at each call, the backend :func:`resolve` names for the angles' device."""

    def __init__(self, ansatz: Ansatz, options: Options):
        self.ansatz, self.options = ansatz, options
        self.simulators: dict[str, object] = {}  # built on first use
        if not torch.cuda.is_available():  # it will run on CPU: load its kernels now, not in the first training step
            cpu = REGISTRY[resolve("auto", "cpu")]
            if cpu.warm is not None:
                cpu.warm(ansatz, options)

    def probs(self, angles: list[torch.Tensor]) -> torch.Tensor:
        name = resolve("auto", angles[0].device)
        if name not in self.simulators:
            self.simulators[name] = REGISTRY[name].build(self.ansatz, self.options)
        return self.simulators[name].probs(angles)


def memory_bytes(ansatz: Ansatz, name: str = "auto", options: Options = Options()) -> int:
    """Peak memory of one differentiable simulation of ``ansatz`` on backend ``name`` (``auto``: the CPU's), as the
    backend :func:`simulator` picks states it (``Backend.memory_bytes``); a partitioned ansatz: its sub-circuits, then
    the Kronecker products (the last one 2^n) and their gradients."""
    if len(ansatz.groups) > 1:
        subs = sum(memory_bytes(sub, name, options) for sub, _ in ansatz.parts())
        return subs + 2**ansatz.n_qubits * 4 * _wide(options) * 4
    return (choose(name, ansatz.n_qubits, options.noise) or REGISTRY[resolve("auto", "cpu")]).memory_bytes(ansatz, options)


def _wide(options: Options) -> int:
    return 2 if options.dtype == torch.float64 else 1


def _fused_build(ansatz: Ansatz, options: Options):
    if options.noise.gate_noise:
        return trajectories.FusedTrajectories(ansatz, options.noise, options.context or NoiseContext(), options.dtype)
    return fused.FusedStatevector(ansatz, dtype=options.dtype)


def _fused_memory(ansatz: Ansatz, options: Options) -> int:
    if options.noise.gate_noise:
        return trajectories.memory_bytes(ansatz, options.noise, _wide(options))
    return fused.memory_bytes(ansatz, _wide(options))


register(Backend(
    name="fused",
    summary="compiled CPU kernels (numba): the whole circuit and its adjoint gradient as one call each",
    build=_fused_build,
    memory_bytes=_fused_memory,
    devices=("cpu",),
    exact_gradient="adjoint method in the kernels",
    noise=("trajectories",),
    auto_for=("cpu",),
    warm=lambda ansatz, options: fused.warm_kernels(ansatz.is_real, options.dtype),
))  # fmt: skip
register(Backend(
    name="torch",
    summary="torch state vector, gates merged into partition operators; CUDA's backend and the fused one's reference",
    build=lambda ansatz, options: torch_statevector.TorchStatevector(ansatz, dtype=options.dtype, group_size=options.group_size),
    memory_bytes=lambda ansatz, options: torch_statevector.memory_bytes(ansatz, _wide(options), options.group_size),
    devices=("cpu", "cuda"),
    exact_gradient="torch autograd",
    auto_for=("cuda",),
))  # fmt: skip
register(Backend(
    name="default.qubit",
    summary="PennyLane's default.qubit (reference)",
    build=lambda ansatz, options: pennylane_devices.PennyLaneBackend(ansatz, device_name="default.qubit"),
    memory_bytes=lambda ansatz, options: pennylane_devices.memory_bytes(ansatz, "default.qubit"),
    devices=("cpu",),
    exact_gradient="PennyLane backprop through torch",
))  # fmt: skip
register(Backend(
    name="lightning.qubit",
    summary="PennyLane Lightning (reference)",
    build=lambda ansatz, options: pennylane_devices.PennyLaneBackend(ansatz, device_name="lightning.qubit"),
    memory_bytes=lambda ansatz, options: pennylane_devices.memory_bytes(ansatz, "lightning.qubit"),
    devices=("cpu",),
    exact_gradient="Lightning's adjoint method, as a vector-Jacobian product",
))  # fmt: skip
register(Backend(
    name="density",
    summary="exact density matrix in torch (circuit.noise.method=density): 4^n memory, small circuits",
    build=lambda ansatz, options: density.DensityMatrix(ansatz, options.noise, options.dtype),
    memory_bytes=lambda ansatz, options: density.memory_bytes(ansatz, _wide(options)),
    devices=("cpu", "cuda"),
    exact_gradient="torch autograd",
    noise=("density",),
    selectable=False,
))  # fmt: skip
