"""Exact noisy probabilities from the density matrix (``circuit.noise.method=density``): torch, any device, 4^n memory.

The model: :mod:`qt.core.quantum.noise`.
"""

from __future__ import annotations

import math

import torch

from qt.core.quantum.ansatz import Ansatz
from qt.core.quantum.gates import matrix
from qt.core.quantum.noise import NoiseModel, apply_readout

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
        layer_mats: dict[tuple[int, int], torch.Tensor] = {}  # per block and layer, its gates' matrices at once
        for op in a.ops():
            if op.tensor < 0:
                m = matrix(op.gate, None, self.cdtype)
            else:
                if (op.block, op.layer) not in layer_mats:
                    layer_mats[op.block, op.layer] = matrix(op.gate, angles[op.tensor][op.block], self.cdtype)
                m = layer_mats[op.block, op.layer][op.index]
            rho = self._noise(self._apply(rho, m.to(device=dev, dtype=self.cdtype), op.wires), op.wires)
        probs = torch.diagonal(rho.reshape(2**n, 2**n)).real
        return apply_readout(probs.to(angles[0].dtype), self.noise.readout)


def memory_bytes(ansatz: Ansatz, wide: int = 1) -> int:
    """rho (complex) and autograd's copy of it per gate and channel (``wide``: 2 for float64)."""
    gates = ansatz.n_blocks * sum(len(layer.wires) for layer in ansatz.block)
    return int(4**ansatz.n_qubits * 8 * wide * (4 * gates + 2) * 1.5)
