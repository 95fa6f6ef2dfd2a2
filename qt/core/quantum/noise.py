"""Gate noise and readout error (``circuit.noise``): trajectories on the fused backend, or an exact density matrix.

The noise model, after **every gate** (rotations, CNOTs, CU3s):

* ``depolarizing`` p1, after each one-qubit gate: rho -> (1 - p1) rho + p1/3 (X rho X + Y rho Y + Z rho Z)
  (PennyLane's ``DepolarizingChannel``);
* ``depolarizing_2q`` p2 (null: the same as p1), after each two-qubit gate on its two wires:
  rho -> (1 - p2) rho + p2/15 sum over the 15 two-qubit Paulis P != I(x)I of P rho P;
* ``amplitude_damping`` g, on every wire a gate touches: Kraus K0 = [[1, 0], [0, sqrt(1-g)]],
  K1 = [[0, sqrt g], [0, 0]] (PennyLane's ``AmplitudeDamping``);
* ``readout`` e: each measured bit flipped with probability e, independently (PennyLane's
  ``default.mixed`` ``readout_prob``), applied to the probabilities as the confusion matrix
  [[1-e, e], [e, 1-e]] on every bit.

Two simulations of the same model (``method``; ``auto``: density up to
:data:`DENSITY_MAX_QUBITS` qubits, trajectories above):

* ``density``: the exact noisy probabilities from a 2^n x 2^n density matrix in torch
  (:class:`DensityMatrix`; any device; memory 4^n, so small circuits only);
* ``trajectories``: Monte-Carlo state vectors on the fused kernels (:class:`FusedTrajectories`).
  Each trajectory is the circuit with operators inserted after its gates, drawn independently
  of the angles: a Pauli with the channel's probabilities for depolarizing noise, and for
  amplitude damping one of A+- = K0 +- K1 = [[1, +-sqrt g], [0, sqrt(1-g)]] with probability 1/2
  each. E[A rho A^dagger] over the two is K0 rho K0^dagger + K1 rho K1^dagger (the unravelling by
  the Kraus operators (K0 +- K1)/sqrt 2, weighted by 1/q = 2), so the mean of a trajectory's
  |psi|^2 is exactly the channel's probabilities, and because the draws do not depend on the
  angles, the mean of its gradient is exactly the gradient of the noisy probabilities: the
  estimate is **unbiased** in value and gradient. A+- are invertible, which is what the adjoint
  method needs. A training step averages ``trajectories`` of them (an unnormalised estimate:
  amplitude damping's trajectories do not each sum to 1); evaluation uses
  ``eval_trajectories`` drawn from a fixed seed, so it is deterministic and leaves the training
  random stream alone.

Noise is simulated wherever the circuit's probabilities are (training, evaluation, export,
the shifted circuits of ``circuit.gradient=parameter_shift`` and ``spsa``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from qt.core.checks import number, settings, whole
from qt.core.quantum.ansatz import Ansatz
from qt.core.quantum.gates import one_qubit
from qt.errors import ConfigError

METHODS = ("auto", "trajectories", "density")
#: ``method=auto`` simulates circuits up to this many qubits as a density matrix
DENSITY_MAX_QUBITS = 8
#: rows of the fixed-matrix table: the Pauli errors (Y as X.Z up to a phase, exact for
#: probabilities) and the two amplitude-damping operators
X, Y, Z, DAMP_PLUS, DAMP_MINUS = 0, 1, 2, 3, 4


def _rate(value, key: str, below_one: bool = False) -> float:
    x = number(value, key, hint="a probability in [0, 1]")
    if not 0 <= x <= 1 or (below_one and x >= 1):
        raise ConfigError(f"{key}={value} is not a probability: use a value in [0, {'1)' if below_one else '1]'}")
    return x


@dataclass(frozen=True)
class NoiseModel:
    """``circuit.noise``: rates after each gate, readout error, and how to simulate them."""

    depolarizing: float = 0.0
    depolarizing_2q: float | None = None
    amplitude_damping: float = 0.0
    readout: float = 0.0
    trajectories: int = 8
    eval_trajectories: int = 64
    method: str = "auto"

    @classmethod
    def from_config(cls, cfg) -> "NoiseModel":
        """Checks every value (one-line errors naming the key); ``None``: no noise."""
        cfg = settings(cfg, "circuit.noise", list(cls.__dataclass_fields__))
        method = cfg.get("method", "auto")
        if method not in METHODS:
            raise ConfigError(f"unknown circuit.noise.method '{method}': use {', '.join(METHODS)}")
        p2 = cfg.get("depolarizing_2q")
        return cls(
            depolarizing=_rate(cfg.get("depolarizing", 0.0), "circuit.noise.depolarizing"),
            depolarizing_2q=None if p2 is None else _rate(p2, "circuit.noise.depolarizing_2q"),
            amplitude_damping=_rate(cfg.get("amplitude_damping", 0.0), "circuit.noise.amplitude_damping", below_one=True),
            readout=_rate(cfg.get("readout", 0.0), "circuit.noise.readout"),
            trajectories=whole(cfg.get("trajectories", 8), "circuit.noise.trajectories", hint="state vectors averaged per training step"),
            eval_trajectories=whole(cfg.get("eval_trajectories", 64), "circuit.noise.eval_trajectories", hint="state vectors averaged for evaluation"),
            method=method,
        )

    @property
    def p2(self) -> float:
        return self.depolarizing if self.depolarizing_2q is None else self.depolarizing_2q

    @property
    def gate_noise(self) -> bool:
        return self.depolarizing > 0 or self.p2 > 0 or self.amplitude_damping > 0

    @property
    def any(self) -> bool:
        return self.gate_noise or self.readout > 0

    def resolve(self, n_qubits: int) -> str:
        """``density`` or ``trajectories`` for a circuit of ``n_qubits``."""
        if self.method != "auto":
            return self.method
        return "density" if n_qubits <= DENSITY_MAX_QUBITS else "trajectories"


class NoiseContext:
    """Shared by a circuit's noisy simulators: whether it trains (random stream) or evaluates (fixed seed)."""

    def __init__(self):
        self.training = True

    def generator(self) -> torch.Generator | None:
        """``None`` (torch's seeded global stream, which checkpoints save) in training; a fixed seed in evaluation."""
        return None if self.training else torch.Generator().manual_seed(0)


def apply_readout(probs: torch.Tensor, e: float) -> torch.Tensor:
    """Each bit of the basis-state index flipped with probability ``e``: the confusion matrix on every bit."""
    if e == 0:
        return probs
    n = int(round(math.log2(probs.shape[-1])))
    p = probs.reshape((2,) * n)
    for axis in range(n):
        p = (1 - e) * p + e * p.flip(axis)
    return p.reshape(probs.shape)


def _row(m: np.ndarray) -> np.ndarray:
    """A fixed-matrix table row: real 2x2 ``m`` and its inverse as 8 + 8 reals (row-major, (re, im) pairs)."""
    out = np.zeros(16)
    out[0:8:2] = m.reshape(-1)
    out[8:16:2] = np.linalg.inv(m).reshape(-1)
    return out


def fixed_matrices(gamma: float) -> np.ndarray:
    """The table the trajectories' FIXED ops index (rows X, Y, Z, DAMP_PLUS, DAMP_MINUS)."""
    g, h = math.sqrt(gamma), math.sqrt(1 - gamma)
    mats = [
        np.array([[0.0, 1.0], [1.0, 0.0]]),  # X
        np.array([[0.0, -1.0], [1.0, 0.0]]),  # X.Z = -i Y: the same probabilities as Y
        np.array([[1.0, 0.0], [0.0, -1.0]]),  # Z
        np.array([[1.0, g], [0.0, h]]),  # K0 + K1
        np.array([[1.0, -g], [0.0, h]]),  # K0 - K1
    ]
    return np.stack([_row(m) for m in mats])


class FusedTrajectories:
    """Noisy probabilities as the mean of Monte-Carlo trajectories on the fused kernels (module docstring)."""

    def __init__(self, ansatz: Ansatz, noise: NoiseModel, context: NoiseContext, dtype: torch.dtype):
        from qt.core.quantum.fused_backend import FusedStatevector, _kernels, op_wires

        self.noise, self.context, self.n = noise, context, ansatz.n_qubits
        base = FusedStatevector(ansatz, dtype=dtype, split_cnots=True, layers=False)
        self.base = base.program
        self.mats = fixed_matrices(noise.amplitude_damping).astype(self.base.mats.dtype)
        fixed = _kernels().FIXED
        # template: every op followed by its noise slots (depolarizing per gate, damping per wire), in order
        rows, slot_kind, slot_width, slot_first = [], [], [], []
        for op, wires in zip(self.base.ops, op_wires(ansatz, split_cnots=True)):
            rows.append(op)
            slot_kind.append(-1)
            slot_width.append(0)
            slot_first.append(0)
            strides = [1 << (self.n - 1 - q) for q in wires]
            for i, st in enumerate(strides):  # depolarizing: one slot per wire (a two-qubit Pauli is two one-qubit ones)
                rows.append((fixed, st, 0, 0))
                slot_kind.append(0)
                slot_width.append(len(strides))
                slot_first.append(int(i == 0))
            if noise.amplitude_damping > 0:
                for st in strides:
                    rows.append((fixed, st, 0, 0))
                    slot_kind.append(1)
                    slot_width.append(1)
                    slot_first.append(1)
        self.template = np.array(rows, dtype=np.int64)
        self.kind = np.array(slot_kind)
        self.width = np.array(slot_width)
        self.first = np.array(slot_first, dtype=bool)

    def draw(self, generator: torch.Generator | None) -> np.ndarray:
        """One trajectory's ops: the template's gates and the noise operators drawn for it."""
        slots = self.kind >= 0
        u = torch.rand(len(self.kind), generator=generator, dtype=torch.float64).numpy()
        pick = torch.randint(0, 1 << 30, (len(self.kind),), generator=generator).numpy()
        choice = np.full(len(self.kind), -1)
        one = (self.kind == 0) & (self.width == 1)
        hit = one & (u < self.noise.depolarizing)
        choice[hit] = pick[hit] % 3  # X, Y, Z
        two = np.flatnonzero((self.kind == 0) & (self.width == 2) & self.first)  # first wire's slot; the second follows it
        hit2 = u[two] < self.noise.p2
        pauli = pick[two] % 15 + 1  # 1..15 = (a, b) != (I, I), a on the first wire, b on the second
        a, b = pauli // 4, pauli % 4
        choice[two[hit2]] = np.where(a[hit2] > 0, a[hit2] - 1, -1)
        choice[two[hit2] + 1] = np.where(b[hit2] > 0, b[hit2] - 1, -1)
        damp = self.kind == 1
        choice[damp] = np.where(pick[damp] % 2 == 0, DAMP_PLUS, DAMP_MINUS)
        keep = ~slots | (choice >= 0)
        ops = self.template[keep].copy()
        ops[slots[keep], 3] = choice[keep][slots[keep]]
        return ops

    def probs(self, angles: list[torch.Tensor]) -> torch.Tensor:
        from qt.core.quantum.fused_backend import fused_probs

        gen = self.context.generator()
        count = self.noise.trajectories if self.context.training else self.noise.eval_trajectories
        total = None
        for _ in range(count):
            p = fused_probs(self.base.with_ops(self.draw(gen), self.mats), angles)
            total = p if total is None else total + p
        return apply_readout(total / count, self.noise.readout)


_CNOT = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.float64)
_PAULI = [
    torch.eye(2, dtype=torch.complex128),
    torch.tensor([[0, 1], [1, 0]], dtype=torch.complex128),
    torch.tensor([[0, -1j], [1j, 0]], dtype=torch.complex128),
    torch.tensor([[1, 0], [0, -1]], dtype=torch.complex128),
]


class DensityMatrix:
    """Exact noisy probabilities from the 2^n x 2^n density matrix (torch, differentiable by autograd, any device)."""

    def __init__(self, ansatz: Ansatz, noise: NoiseModel, dtype: torch.dtype):
        self.ansatz, self.noise, self.n = ansatz, noise, ansatz.n_qubits
        self.cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        self._kraus: dict[torch.device, tuple] = {}  # per device, built on first use

    def kraus(self, dev: torch.device) -> tuple[list, list, list]:
        """Kraus operators of the one-qubit depolarizing, two-qubit depolarizing and damping channels ([] when off)."""
        if dev not in self._kraus:
            nz = self.noise
            pauli = [p.to(self.cdtype).to(dev) for p in _PAULI]
            p1, p2, g = nz.depolarizing, nz.p2, nz.amplitude_damping
            one = [math.sqrt(1 - p1) * pauli[0]] + [math.sqrt(p1 / 3) * q for q in pauli[1:]] if p1 > 0 else []
            two = [math.sqrt(1 - p2) * torch.kron(pauli[0], pauli[0])] if p2 > 0 else []
            two += [math.sqrt(p2 / 15) * torch.kron(pauli[a], pauli[b]) for a in range(4) for b in range(4) if a or b] if p2 > 0 else []
            damp = [torch.tensor([[1, 0], [0, math.sqrt(1 - g)]], dtype=self.cdtype, device=dev),
                    torch.tensor([[0, math.sqrt(g)], [0, 0]], dtype=self.cdtype, device=dev)] if g > 0 else []  # fmt: skip
            self._kraus[dev] = (one, two, damp)
        return self._kraus[dev]

    def _apply(self, rho: torch.Tensor, m: torch.Tensor, wires: tuple[int, ...]) -> torch.Tensor:
        """M rho M^dagger with M acting on ``wires`` (rho as a tensor of 2n axes of size 2)."""
        n, k = self.n, len(wires)
        m = m.reshape((2,) * (2 * k))
        rho = torch.movedim(torch.tensordot(m, rho, dims=(list(range(k, 2 * k)), list(wires))), list(range(k)), list(wires))
        cols = [n + w for w in wires]
        rho = torch.tensordot(rho, m.conj(), dims=(cols, list(range(k, 2 * k))))
        return torch.movedim(rho, list(range(2 * n - k, 2 * n)), cols)

    def _channel(self, rho: torch.Tensor, kraus: list[torch.Tensor], wires: tuple[int, ...]) -> torch.Tensor:
        return sum(self._apply(rho, k, wires) for k in kraus)

    def _noise(self, rho: torch.Tensor, wires: tuple[int, ...]) -> torch.Tensor:
        one, two, damp = self.kraus(rho.device)
        if one and len(wires) == 1:
            rho = self._channel(rho, one, wires)
        if two and len(wires) == 2:
            rho = self._channel(rho, two, wires)
        for w in wires if damp else ():
            rho = self._channel(rho, damp, (w,))
        return rho

    def probs(self, angles: list[torch.Tensor]) -> torch.Tensor:
        a, n = self.ansatz, self.n
        dev = angles[0].device
        rho = torch.zeros((2,) * (2 * n), dtype=self.cdtype, device=dev)
        rho[(0,) * (2 * n)] = 1
        eye = torch.eye(2, dtype=self.cdtype, device=dev)
        for b in range(a.n_blocks):
            angle_iter = iter(angles)
            for layer in a.block:
                mats = one_qubit(layer.gate, next(angle_iter)[b], self.cdtype).to(self.cdtype) if layer.n_params else None
                for j, wires in enumerate(layer.wires):
                    if layer.gate == "CNOT":
                        m = _CNOT.to(self.cdtype).to(dev)
                    elif layer.gate == "CU3":
                        m = torch.block_diag(eye, mats[j])
                    else:
                        m = mats[j]
                    rho = self._noise(self._apply(rho, m, tuple(wires)), tuple(wires))
        probs = torch.diagonal(rho.reshape(2**n, 2**n)).real
        return apply_readout(probs.to(angles[0].dtype), self.noise.readout)


def noisy_simulator(ansatz: Ansatz, noise: NoiseModel, context: NoiseContext, backend: str, dtype: torch.dtype):
    """The simulator of ``ansatz`` under ``noise`` (``circuit.noise.method``, resolved for its size)."""
    method = noise.resolve(ansatz.n_qubits)
    if method == "density":
        return DensityMatrix(ansatz, noise, dtype)
    if backend not in ("fused", "auto"):
        raise ConfigError(
            f"circuit.noise by trajectories runs on the fused backend, not '{backend}': "
            "set circuit.backend=fused (CPU), or circuit.noise.method=density for a small circuit"
        )
    return FusedTrajectories(ansatz, noise, context, dtype)
