"""The trainable quantum part of Quantum-Train: angles + a simulation backend."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import torch
from torch import nn

from qt.core.checks import CLI, Keys, choice, flag, number, whole, with_defaults
from qt.core.quantum import backends
from qt.core.quantum.ansatz import build_ansatz, check_blocks, check_gates
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

    #: constructor arguments qt sets itself (from the target), not config settings
    OWN_ARGUMENTS = ("n_qubits",)
    #: settings given as a block of their own (``circuit.noise.*``), each with its fields and defaults
    SETTINGS_BLOCKS = {"noise": NoiseModel, "spsa": SPSASettings}

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
        s = self.check_settings({k: v for k, v in locals().items() if k not in ("self", "__class__")})
        self.shots, self.noise, self.gradient, self.spsa = s["shots"], s["noise"], s["gradient"], s["spsa"]
        self.ansatz = build_ansatz(rotation, entangler, layout, n_qubits, s["n_blocks"], entangle=s["entangle"], partitions=s["partitions"])
        self.backend_name = backend
        self.dtype = backends.DTYPES[dtype]
        self.angles = nn.ParameterList(
            nn.Parameter(torch.rand(shape, dtype=self.dtype) * (2 * math.pi * s["init_scale"]), requires_grad=not freeze)
            for shape in self.ansatz.angle_shapes()
        )
        self.noise_context = NoiseContext()
        options = backends.Options(dtype=self.dtype, group_size=group_size, noise=self.noise, context=self.noise_context)
        self.simulator = backends.simulator(self.ansatz, backend, options)  # the registry picks (qt.core.quantum.backends)
        self.estimator = None
        if self.gradient != "adjoint":
            self.estimator = Estimator(self.gradient, self.simulator, self.ansatz, self.ansatz.angle_shapes(), self.shots, self.spsa)
            # training steps taken (SPSA's schedule); in the state dict, so a resumed run continues it
            self.register_buffer("hardware_step", torch.zeros((), dtype=torch.int64))

    @classmethod
    def check_settings(cls, settings: Mapping, keys: Keys = CLI) -> dict:
        """``settings`` (the circuit config's keys, or the constructor's arguments; its defaults for the rest) with every
        rule of the circuit's values checked, as the values the constructor uses (``noise`` a :class:`NoiseModel`,
        ``spsa`` :class:`SPSASettings`). The one statement of those rules: the constructor calls it, and so does the
        validation of a config (CLI and API) before anything is built. ``n_qubits`` (the target's) may be absent;
        that partitions fit the qubits is checked when the ansatz is built."""
        s = with_defaults(cls, settings, "circuit", keys, own=cls.OWN_ARGUMENTS)
        key = lambda name: keys.name(f"circuit.{name}")  # noqa: E731
        s["n_blocks"] = check_blocks(s.get("n_blocks"))
        s["entangle"] = flag(s["entangle"], key("entangle"), hint="false is variant=no_entanglement")
        s["partitions"] = whole(s["partitions"], key("partitions"), hint="1 (one circuit) up to the number of qubits")
        s["init_scale"] = number(s["init_scale"], key("init_scale"), hint="angles start in [0, 2*pi*init_scale)")
        s["freeze"] = flag(s["freeze"], key("freeze"), hint="true keeps the angles at their initialisation (variant=frozen)")
        if s["shots"] is not None:
            s["shots"] = whole(s["shots"], key("shots"), hint=f"a number of measurements, or {keys.set('circuit.shots', keys.null)} for exact probabilities")
        if s["group_size"] is not None:
            s["group_size"] = whole(s["group_size"], key("group_size"), hint="the torch backend's qubits per local operator")
        choice(s["dtype"], key("dtype"), tuple(backends.DTYPES))
        if s["backend"] != "auto":
            backends.get(s["backend"])
        check_gates(s["rotation"], s["entangler"], s["layout"])
        s["gradient"] = check_gradient(s["gradient"])
        s["spsa"] = SPSASettings.from_config(s["spsa"])
        s["noise"] = NoiseModel.from_config(s["noise"])
        return s

    @classmethod
    def memory_bytes(cls, n_qubits: int, **settings) -> int:
        """Peak memory of one differentiable simulation of the circuit these settings would build (the circuit config's
        keys, :meth:`check_settings`), before anything is allocated; ``backend`` as resolved for the device
        (:func:`qt.core.quantum.backends.resolve`). The backend states it (:func:`qt.core.quantum.backends.memory_bytes`)."""
        s = cls.check_settings(settings)
        ansatz = build_ansatz(s["rotation"], s["entangler"], s["layout"], n_qubits, s["n_blocks"], entangle=s["entangle"], partitions=s["partitions"])
        options = backends.Options(dtype=backends.DTYPES[s["dtype"]], group_size=s["group_size"], noise=s["noise"])
        return backends.memory_bytes(ansatz, s["backend"], options)

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
