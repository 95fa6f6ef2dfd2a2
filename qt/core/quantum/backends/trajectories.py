"""Gate noise by Monte-Carlo trajectories on the fused kernels (``circuit.noise.method=trajectories``).

The model and why the estimate is unbiased in value and gradient: :mod:`qt.core.quantum.noise`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from qt.core.quantum.ansatz import Ansatz
from qt.core.quantum.backends.fused import FusedStatevector, _kernels, fused_probs, op_wires
from qt.core.quantum.noise import NoiseContext, NoiseModel, apply_readout

#: rows of the fixed-matrix table: the Pauli errors (Y as X.Z up to a phase, exact for
#: probabilities) and the two amplitude-damping operators
X, Y, Z, DAMP_PLUS, DAMP_MINUS = 0, 1, 2, 3, 4


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
        gen = self.context.generator()
        count = self.noise.trajectories if self.context.training else self.noise.eval_trajectories
        total = None
        for _ in range(count):
            p = fused_probs(self.base.with_ops(self.draw(gen), self.mats), angles)
            total = p if total is None else total + p
        return apply_readout(total / count, self.noise.readout)


def memory_bytes(ansatz: Ansatz, noise: NoiseModel, wide: int = 1) -> int:
    """Each trajectory's final state kept for its backward, and one fused circuit's arrays (``wide``: 2 for float64)."""
    return int(2**ansatz.n_qubits * 4 * wide * (noise.trajectories * (1 if ansatz.is_real else 2) + 13) * 1.5)
