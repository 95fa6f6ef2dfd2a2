"""The trainable quantum part of Quantum-Train: angles + a simulation backend."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from qt.core.checks import flag, number
from qt.errors import ConfigError
from qt.core.quantum.ansatz import build_ansatz, group_sizes
from qt.core.quantum.fused_backend import PLAN_MAX_QUBITS, SAVED_STATES_BYTES, SLOW_BITS, FusedStatevector, warm_kernels
from qt.core.quantum.gradients import Estimator, SPSASettings, check_gradient, estimated_probs, executions_per_step
from qt.core.quantum.noise import NoiseContext, NoiseModel, apply_readout, noisy_simulator
from qt.core.quantum.shots import sample_probs
from qt.core.quantum.torch_backend import TorchStatevector, default_group_size

#: ``auto``: ``fused`` for CPU tensors, ``torch`` for CUDA ones (chosen at each call, so ``.to(device)`` works)
BACKENDS = ("auto", "fused", "torch", "default.qubit", "lightning.qubit")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class QuantumCircuit(nn.Module):
    """A parameterised circuit with no data input; ``forward()`` returns its 2^n probabilities.

    Angles are drawn uniformly from [0, 2π) (``init_scale`` scales that range); ``freeze``
    keeps them fixed at that initialisation (the frozen-circuit control). With ``shots=N``
    training sees N-shot estimates of the probabilities (:func:`qt.core.quantum.shots.sample_probs`); evaluation
    and export (eval mode) use the exact distribution, the infinite-shot limit.

    ``partitions=K``: K sub-circuits on disjoint qubit groups (:func:`~qt.core.quantum.ansatz.build_ansatz`),
    each simulated alone (cost sum of 2^(n_k), not 2^n); the n-qubit probabilities are the
    Kronecker product of theirs (:class:`Partitioned`).

    ``gradient``: ``adjoint`` (exact), ``parameter_shift`` or ``spsa`` (estimated from circuit runs
    at shifted angles, each with ``shots`` samples when set; :mod:`qt.core.quantum.gradients`,
    ``spsa`` its settings). ``noise``: gate noise and readout error (:mod:`qt.core.quantum.noise`).
    """

    def __init__(
        self,
        n_qubits: int,
        n_blocks: int,
        rotation: str = "RY",
        entangler: str = "CNOT",
        layout: str = "chain",
        entangle: bool = True,
        backend: str = "auto",
        dtype: str = "float32",
        init_scale: float = 1.0,
        freeze: bool = False,
        group_size: int | None = None,
        shots: int | None = None,
        partitions: int = 1,
        gradient: str = "adjoint",
        spsa: dict | None = None,
        noise: dict | None = None,
    ):
        super().__init__()
        if shots is not None and int(shots) < 1:
            raise ConfigError(f"circuit.shots must be a positive number of measurements or null for exact probabilities (got {shots})")
        self.shots = None if shots is None else int(shots)
        if backend not in BACKENDS:
            raise ConfigError(f"unknown circuit backend '{backend}': use circuit.backend={', '.join(BACKENDS)}")
        if dtype not in DTYPES:
            raise ConfigError(f"unknown circuit dtype '{dtype}': use circuit.dtype=float32 or float64")
        init_scale = number(init_scale, "circuit.init_scale", hint="angles start in [0, 2*pi*init_scale)")
        entangle = flag(entangle, "circuit.entangle", hint="false is variant=no_entanglement")
        self.ansatz = build_ansatz(rotation, entangler, layout, n_qubits, n_blocks, entangle=entangle, partitions=partitions)
        self.backend_name = backend
        self.dtype = DTYPES[dtype]
        self.angles = nn.ParameterList(
            nn.Parameter(torch.rand(shape, dtype=self.dtype) * (2 * math.pi * init_scale), requires_grad=not freeze)
            for shape in self.ansatz.angle_shapes()
        )
        self.noise = NoiseModel.from_config(noise)
        self.noise_context = NoiseContext()
        self.simulator = make_simulator(self.ansatz, backend, self.dtype, group_size, self.noise, self.noise_context)
        self.gradient = check_gradient(gradient)
        self.spsa = SPSASettings.from_config(spsa)
        self.estimator = None
        if self.gradient != "adjoint":
            self.estimator = Estimator(self.gradient, self.simulator, self.ansatz, self.ansatz.angle_shapes(), self.shots, self.spsa)
            # training steps taken (SPSA's schedule); in the state dict, so a resumed run continues it
            self.register_buffer("hardware_step", torch.zeros((), dtype=torch.int64))

    @property
    def n_qubits(self) -> int:
        return self.ansatz.n_qubits

    def forward(self) -> torch.Tensor:
        self.noise_context.training = self.training
        angles = list(self.angles)
        if self.estimator is not None and self.training and torch.is_grad_enabled() and angles[0].requires_grad:
            probs = estimated_probs(self.estimator, angles, int(self.hardware_step))
            self.hardware_step += 1
            return probs
        probs = self.simulator.probs(angles)
        if self.shots is None or not self.training:
            return probs
        return sample_probs(probs, self.shots)

    def qpu(self, steps: int) -> dict:
        """What ``steps`` training steps would cost on a processor (summary.json ``qpu``); a frozen circuit needs its forward only."""
        trains = any(a.requires_grad for a in self.angles)
        per_step = executions_per_step(self.gradient, self.ansatz, self.spsa) if trains else max(len(self.ansatz.groups), 1)
        return {
            "gradient": self.gradient,
            "counted_as": ("parameter_shift" if self.gradient == "adjoint" else self.gradient) if trains else "forward (frozen)",
            "executions_per_step": per_step,
            "steps": int(steps),
            "circuit_executions": per_step * int(steps),
            "shots_per_execution": self.shots,
            "shots": None if self.shots is None else self.shots * per_step * int(steps),
            "noise": dataclasses.asdict(self.noise) if self.noise.any else None,
        }


def make_simulator(ansatz, backend: str, dtype: torch.dtype, group_size: int | None = None, noise: NoiseModel | None = None, context: NoiseContext | None = None):
    """The object whose ``probs(angles)`` simulates ``ansatz`` on ``backend`` (under ``noise``, when it has any)."""
    if len(ansatz.groups) > 1:
        return Partitioned(ansatz, backend, dtype, group_size, noise, context)
    if noise is not None and noise.gate_noise:
        return noisy_simulator(ansatz, noise, context or NoiseContext(), backend, dtype)
    if noise is not None and noise.readout > 0:
        return Readout(make_simulator(ansatz, backend, dtype, group_size), noise.readout)
    if backend in ("default.qubit", "lightning.qubit"):
        from qt.core.quantum.pennylane_backend import PennyLaneBackend

        return PennyLaneBackend(ansatz, device_name=backend)
    if backend == "torch":
        return TorchStatevector(ansatz, dtype=dtype, group_size=group_size)
    if backend == "fused":
        return FusedStatevector(ansatz, dtype=dtype)
    return ByDevice(ansatz, dtype, group_size)


class Partitioned:
    """A distributed ansatz: each sub-circuit simulated alone on ``backend``, the probabilities combined.

    Sub-circuit k acts on wires ``groups[k]``, wire 0 most significant, so the probability of
    basis state i = (i_0, ..., i_{K-1}) (the bits of each group in turn) is the product of the
    sub-circuits' p_k(i_k): the Kronecker product p_0 (x) p_1 (x) ... (x) p_{K-1}, itself a
    probability distribution over the 2^n basis states (the distribution of the product state
    the K circuits prepare). Photonic Quantum-Train (arXiv 2505.08474) is described as dividing
    each sub-distribution by its mean before the outer product (docs/family.md: not checked in
    code); that is 2^n times this, a constant qt's rescaling (``gamma * 2^(n-1) * p``) absorbs.
    """

    def __init__(self, ansatz, backend: str, dtype: torch.dtype, group_size: int | None, noise: NoiseModel | None = None, context: NoiseContext | None = None):
        self.ansatz = ansatz  # each sub-circuit under the noise (readout per bit commutes with the Kronecker product)
        self.parts = [(make_simulator(sub, backend, dtype, group_size, noise, context), slices) for sub, slices in ansatz.parts()]

    def probs(self, angles: list[torch.Tensor]) -> torch.Tensor:
        out = None
        for simulator, slices in self.parts:
            # each sub-circuit's gates are a contiguous slice of every angle tensor (views: one autograd graph)
            p = simulator.probs([a[:, s] for a, s in zip(angles, slices)])
            out = p if out is None else (out[:, None] * p[None, :]).reshape(-1)
        return out


class Readout:
    """A noiseless simulator's probabilities with each measured bit flipped with probability ``e``."""

    def __init__(self, simulator, e: float):
        self.simulator, self.e = simulator, e

    def probs(self, angles: list[torch.Tensor]) -> torch.Tensor:
        return apply_readout(self.simulator.probs(angles), self.e)


class ByDevice:
    """``circuit.backend=auto``: at each call, the backend :func:`resolve_backend` names for the angles' device."""

    def __init__(self, ansatz, dtype: torch.dtype, group_size: int | None):
        self.ansatz, self.dtype, self.group_size = ansatz, dtype, group_size
        self.simulators: dict[str, FusedStatevector | TorchStatevector] = {}  # built on first use
        if not torch.cuda.is_available():  # it will run on CPU: load the kernels now, not in the first training step
            warm_kernels(ansatz.is_real, dtype)

    def probs(self, angles: list[torch.Tensor]) -> torch.Tensor:
        name = resolve_backend("auto", angles[0].device)
        if name not in self.simulators:
            self.simulators[name] = make_simulator(self.ansatz, name, self.dtype, self.group_size)
        return self.simulators[name].probs(angles)


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend that ``auto`` means on ``device``."""
    if backend != "auto":
        return backend
    return "fused" if device.type == "cpu" else "torch"


def estimate_memory_bytes(
    n_qubits: int,
    n_blocks: int,
    rotation: str = "RY",
    entangler: str = "CNOT",
    layout: str = "chain",
    entangle: bool = True,
    backend: str = "fused",
    dtype: str = "float32",
    group_size: int | None = None,
    partitions: int = 1,
    noise: dict | None = None,
    **_: object,
) -> int:
    """Peak memory of one differentiable simulation: the state times the tensors autograd keeps.

    Takes the circuit config's keys, so it can be checked before anything is allocated
    (``backend`` as resolved for the device: see :func:`resolve_backend`).
    """
    if int(partitions) > 1:  # each sub-circuit alone, then the Kronecker products (the last one 2^n) and their gradients
        kw = dict(rotation=rotation, entangler=entangler, layout=layout, entangle=entangle, backend=backend, dtype=dtype, group_size=group_size, noise=noise)
        subs = sum(estimate_memory_bytes(k, n_blocks, **kw) for k in group_sizes(n_qubits, int(partitions)))
        return subs + 2**n_qubits * (8 if dtype == "float64" else 4) * 4
    a = build_ansatz(rotation, entangler, layout, n_qubits, n_blocks, entangle=bool(entangle))
    wide = 2 if dtype == "float64" else 1
    model = NoiseModel.from_config(noise)
    if model.gate_noise and model.resolve(n_qubits) == "density":  # rho (complex) and autograd's copy per gate and channel
        gates = a.n_blocks * sum(len(layer.wires) for layer in a.block)
        return int(4**n_qubits * 8 * wide * (4 * gates + 2) * 1.5)
    if model.gate_noise:  # trajectories: each one's final state kept for its backward, as one fused circuit
        return int(2**n_qubits * 4 * wide * (model.trajectories * (1 if a.is_real else 2) + 13) * 1.5)
    if backend in ("fused", "auto"):
        # real state: state, scratch, probabilities, saved state, its copy, adjoint, gradient input; x2 for complex
        itemsize, kept = 4 * wide, (7 if a.is_real else 13)
        layers = a.n_blocks * (2 if 2 * SLOW_BITS <= n_qubits <= PLAN_MAX_QUBITS else 1)  # planned: split around a relabelling
        if a.is_real and n_qubits > 1 and layers * 2**n_qubits * itemsize <= SAVED_STATES_BYTES:
            kept += layers  # the state after each rotation layer, kept for the backward (fused_backend.Program)
    elif backend == "lightning.qubit":
        itemsize, kept = 16, 6  # forward state, adjoint bra/ket, observable, probabilities
    elif backend == "default.qubit":
        itemsize, kept = 16, a.n_blocks * sum(max(len(layer.wires), 1) for layer in a.block) + 2
    else:
        itemsize = (4 if a.is_real else 8) * wide
        n_groups = math.ceil(n_qubits / (group_size or default_group_size(n_qubits)))
        per_block = sum(
            n_groups if layer.gate in ("RY", "U3") else (1 if layer.gate == "CNOT" else len(layer.wires))
            for layer in a.block
        )
        kept = a.n_blocks * per_block + 2
    return int(2**n_qubits * itemsize * kept * 1.5)
