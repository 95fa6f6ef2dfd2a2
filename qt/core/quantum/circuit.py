"""The trainable quantum part of Quantum-Train: angles + a simulation backend."""

from __future__ import annotations

import dataclasses
import inspect
import math

import torch
from torch import nn

from qt.core.checks import flag, number
from qt.errors import ConfigError
from qt.core.quantum import backends
from qt.core.quantum.ansatz import build_ansatz
from qt.core.quantum.gradients import Estimator, SPSASettings, check_gradient, estimated_probs, executions_per_step
from qt.core.quantum.noise import NoiseContext, NoiseModel
from qt.core.quantum.shots import sample_probs


class QuantumCircuit(nn.Module):
    """A parameterised circuit with no data input; ``forward()`` returns its 2^n probabilities.

    ``backend``: a name in the registry of :mod:`qt.core.quantum.backends` (``auto``: ``fused`` for CPU tensors,
    ``torch`` for CUDA ones, chosen at each call, so ``.to(device)`` works).

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
        if dtype not in backends.DTYPES:
            raise ConfigError(f"unknown circuit dtype '{dtype}': use circuit.dtype=float32 or float64")
        init_scale = number(init_scale, "circuit.init_scale", hint="angles start in [0, 2*pi*init_scale)")
        entangle = flag(entangle, "circuit.entangle", hint="false is variant=no_entanglement")
        self.ansatz = build_ansatz(rotation, entangler, layout, n_qubits, n_blocks, entangle=entangle, partitions=partitions)
        self.backend_name = backend
        self.dtype = backends.DTYPES[dtype]
        self.angles = nn.ParameterList(
            nn.Parameter(torch.rand(shape, dtype=self.dtype) * (2 * math.pi * init_scale), requires_grad=not freeze)
            for shape in self.ansatz.angle_shapes()
        )
        self.noise = NoiseModel.from_config(noise)
        self.noise_context = NoiseContext()
        options = backends.Options(dtype=self.dtype, group_size=group_size, noise=self.noise, context=self.noise_context)
        self.simulator = backends.simulator(self.ansatz, backend, options)  # the registry picks (qt.core.quantum.backends)
        self.gradient = check_gradient(gradient)
        self.spsa = SPSASettings.from_config(spsa)
        self.estimator = None
        if self.gradient != "adjoint":
            self.estimator = Estimator(self.gradient, self.simulator, self.ansatz, self.ansatz.angle_shapes(), self.shots, self.spsa)
            # training steps taken (SPSA's schedule); in the state dict, so a resumed run continues it
            self.register_buffer("hardware_step", torch.zeros((), dtype=torch.int64))

    @classmethod
    def memory_bytes(cls, *args, **settings) -> int:
        """Peak memory of one differentiable simulation of the circuit these constructor arguments would build (the
        circuit config's keys; the constructor's defaults for the rest), before anything is allocated; ``backend`` as
        resolved for the device (:func:`qt.core.quantum.backends.resolve`). The backend states it
        (:func:`qt.core.quantum.backends.memory_bytes`)."""
        known = inspect.signature(cls).parameters
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ConfigError(f"circuit.{unknown[0]} is not a circuit setting: remove it (the settings: {', '.join(k for k in known if k != 'n_qubits')})")
        bound = inspect.signature(cls).bind(*args, **settings)
        bound.apply_defaults()
        a = bound.arguments
        if a["dtype"] not in backends.DTYPES:
            raise ConfigError(f"unknown circuit dtype '{a['dtype']}': use circuit.dtype=float32 or float64")
        ansatz = build_ansatz(
            a["rotation"], a["entangler"], a["layout"], a["n_qubits"], a["n_blocks"], entangle=bool(a["entangle"]), partitions=a["partitions"]
        )
        options = backends.Options(dtype=backends.DTYPES[a["dtype"]], group_size=a["group_size"], noise=NoiseModel.from_config(a["noise"]))
        return backends.memory_bytes(ansatz, a["backend"], options)

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
