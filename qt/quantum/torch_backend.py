"""Native torch state-vector simulator for :class:`~qt.quantum.ansatz.Ansatz` circuits.

The circuit has no data input, so one simulation per optimizer step suffices. The
simulation is bound by per-op dispatch, not arithmetic, so it is written to issue few ops:

* a rotation layer (one gate on every qubit) is applied as a few Kronecker-product
  matrices, one per group of ``group_size`` qubits, each a single matmul on the state
  viewed as ``(2^a, 2^k, 2^b)``; the matrices for all blocks are built at once;
* a CNOT layer is one precomputed index permutation (the composition of its gates);
* a CU3 is one 4x4 matmul on the state viewed so its two qubits form one axis;
* ansätze with only real gates (RY, CNOT) keep a real state vector.
"""

from __future__ import annotations

import math

import torch

from qt.quantum import gates
from qt.quantum.ansatz import Ansatz


def _kron_batched(mats: torch.Tensor) -> torch.Tensor:
    """Kronecker product over axis 1: ``(B, k, 2, 2) -> (B, 2^k, 2^k)`` (first qubit most significant)."""
    out = mats[:, 0]
    for q in range(1, mats.shape[1]):
        m = mats[:, q]
        b, d = out.shape[0], out.shape[1]
        out = (out[:, :, None, :, None] * m[:, None, :, None, :]).reshape(b, 2 * d, 2 * d)
    return out


def cnot_permutation(n_qubits: int, pairs: tuple[tuple[int, ...], ...]) -> torch.Tensor:
    """Index permutation P with ``state[P]`` = the state after the CNOTs applied in order."""
    idx = torch.arange(2**n_qubits)
    perm = idx.clone()
    for control, target in pairs:
        cmask, tmask = 1 << (n_qubits - 1 - control), 1 << (n_qubits - 1 - target)
        gate_perm = torch.where(idx & cmask != 0, idx ^ tmask, idx)
        perm = perm[gate_perm]
    return perm


def default_group_size(n_qubits: int) -> int:
    """Qubits per Kronecker factor: larger groups mean fewer ops but 2^k more flops per amplitude."""
    return max(1, min(7, math.ceil(n_qubits / 2) if n_qubits <= 14 else 4))


class TorchStatevector:
    """Simulates an ansatz and returns its basis-state probabilities (differentiable)."""

    def __init__(self, ansatz: Ansatz, dtype: torch.dtype = torch.float32, group_size: int | None = None):
        self.ansatz = ansatz
        self.n = ansatz.n_qubits
        self.real_dtype = dtype
        self.complex_dtype = torch.complex64 if dtype == torch.float32 else torch.complex128
        self.state_dtype = dtype if ansatz.is_real else self.complex_dtype
        k = group_size or default_group_size(self.n)
        self.groups = [list(range(s, min(s + k, self.n))) for s in range(0, self.n, k)]
        self._perms: dict[int, torch.Tensor] = {
            i: cnot_permutation(self.n, layer.wires) for i, layer in enumerate(ansatz.block) if layer.gate == "CNOT"
        }
        self._device_perms: dict[tuple[int, torch.device], torch.Tensor] = {}

    def _perm(self, i: int, device: torch.device) -> torch.Tensor:
        key = (i, device)
        if key not in self._device_perms:
            self._device_perms[key] = self._perms[i].to(device)
        return self._device_perms[key]

    # -- layer kernels -------------------------------------------------------------------
    def _apply_group(self, state: torch.Tensor, kron: torch.Tensor, group: list[int]) -> torch.Tensor:
        a, k = group[0], len(group)
        b = self.n - a - k
        if b == 0:
            return (state.view(2**a, 2**k) @ kron.transpose(0, 1)).reshape(-1)
        return (kron @ state.view(2**a, 2**k, 2**b)).reshape(-1)

    def _apply_two_qubit(self, state: torch.Tensor, m4: torch.Tensor, control: int, target: int) -> torch.Tensor:
        n = self.n
        if target == control + 1:  # adjacent: the pair is one axis of size 4
            a = control
            return (m4 @ state.view(2**a, 4, 2 ** (n - a - 2))).reshape(-1)
        t = torch.tensordot(m4.view(2, 2, 2, 2), state.view([2] * n), dims=([2, 3], [control, target]))
        return torch.movedim(t, (0, 1), (control, target)).reshape(-1)

    # -- simulation ----------------------------------------------------------------------
    def probs(self, angles: list[torch.Tensor]) -> torch.Tensor:
        """Probabilities of all 2^n basis states; ``angles`` as :meth:`Ansatz.angle_shapes`."""
        device = angles[0].device if angles else torch.device("cpu")
        state = torch.zeros(2**self.n, dtype=self.state_dtype, device=device)
        state[0] = 1
        # Build every gate matrix of every block up front: a handful of batched ops.
        prepared = []
        angle_iter = iter(angles)
        for layer in self.ansatz.block:
            if not layer.wires:
                prepared.append(None)
            elif layer.gate in ("RY", "U3"):
                mats = gates.one_qubit(layer.gate, next(angle_iter), self.complex_dtype).to(self.state_dtype)
                prepared.append([_kron_batched(mats[:, g[0] : g[-1] + 1]) for g in self.groups])
            elif layer.gate == "CU3":
                u = gates.one_qubit("CU3", next(angle_iter), self.complex_dtype)
                m4 = torch.zeros(*u.shape[:2], 4, 4, dtype=self.complex_dtype, device=device)
                m4[..., 0, 0] = 1
                m4[..., 1, 1] = 1
                m4[..., 2:, 2:] = u
                prepared.append(m4)
            else:
                prepared.append(None)
        for b in range(self.ansatz.n_blocks):
            for i, layer in enumerate(self.ansatz.block):
                if not layer.wires:
                    continue
                if layer.gate in ("RY", "U3"):
                    for group, kron in zip(self.groups, prepared[i]):
                        state = self._apply_group(state, kron[b], group)
                elif layer.gate == "CNOT":
                    state = state[self._perm(i, device)]
                else:
                    for j, (c, t) in enumerate(layer.wires):
                        state = self._apply_two_qubit(state, prepared[i][b, j], c, t)
        if state.is_complex():
            return state.real**2 + state.imag**2
        return state**2
