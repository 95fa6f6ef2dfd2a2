"""Fused CPU simulation of :class:`~qt.core.quantum.ansatz.Ansatz` circuits (``circuit.backend=fused``).

The whole circuit is one compiled call (:mod:`qt.core.quantum.fused_kernels`) and so is its
gradient, by the adjoint method; torch sees a single autograd node. Compared with the torch
backend, which issues ~100 small ops per step, this removes the per-op dispatch that
dominates at QT's sizes (docs/performance.md has the measurements).

The kernels are single-threaded, so a job never uses more cores than the one it has been
given (``trainer.threads``, or a parallel launcher's per-job budget).
"""

from __future__ import annotations

import numpy as np
import torch

from qt.core.quantum.ansatz import Ansatz, cnot_permutation

_NP = {torch.float32: np.float32, torch.float64: np.float64}


def _kernels():
    """numba is imported, and cached kernels loaded, on the first simulation only."""
    from qt.core.quantum import fused_kernels

    return fused_kernels


def compile_program(ansatz: Ansatz) -> tuple[np.ndarray, np.ndarray]:
    """(ops, perms): the ansatz as kernel ops (see :mod:`qt.core.quantum.fused_kernels`) and its CNOT-run permutations.

    Angles are addressed in a flat vector: the ansatz's angle tensors (one per parameterised
    layer, shape (n_blocks, gates, angles per gate)) flattened and concatenated in order.
    """
    k = _kernels()
    n = ansatz.n_qubits
    stride = [1 << (n - 1 - q) for q in range(n)]
    layer_offset, offset = {}, 0
    for li, layer in enumerate(ansatz.block):
        if layer.n_params:
            layer_offset[li] = offset
            offset += ansatz.n_blocks * layer.n_params
    ops: list[tuple[int, int, int, int]] = []
    perm_rows: dict[tuple, int] = {}
    for b in range(ansatz.n_blocks):
        for li, layer in enumerate(ansatz.block):
            if layer.gate == "CNOT":
                key = tuple(layer.wires)
                if key not in perm_rows:
                    perm_rows[key] = len(perm_rows)
                ops.append((k.PERM, perm_rows[key], 0, 0))
                continue
            kind = {"RY": k.RY, "U3": k.U3, "CU3": k.CU3}[layer.gate]
            for j, wires in enumerate(layer.wires):
                off = layer_offset[li] + (b * len(layer.wires) + j) * layer.params_per_gate
                second = stride[wires[1]] if len(wires) > 1 else 0
                ops.append((kind, stride[wires[0]], second, off))
    perms = np.zeros((max(len(perm_rows), 1), 2**n), dtype=np.uint64)
    for key, row in perm_rows.items():
        perms[row] = cnot_permutation(n, key)
    return np.array(ops, dtype=np.int64).reshape(-1, 4), perms


class _FusedProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sim: "FusedStatevector", *angles: torch.Tensor) -> torch.Tensor:
        dtype = _NP[angles[0].dtype]
        params = np.concatenate([a.detach().reshape(-1).numpy() for a in angles]).astype(dtype, copy=False)
        probs = np.empty(2**sim.n, dtype=dtype)
        state = sim.forward(sim.ops, params, sim.perms, sim.n, probs)
        ctx.sim, ctx.params, ctx.state = sim, params, state
        ctx.shapes = [a.shape for a in angles]
        return torch.from_numpy(probs)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        sim, params = ctx.sim, ctx.params
        state = tuple(s.copy() for s in (ctx.state if isinstance(ctx.state, tuple) else (ctx.state,)))
        grad = np.zeros_like(params)
        dy_np = np.ascontiguousarray(dy.detach().numpy(), dtype=params.dtype)
        sim.backward(sim.ops, params, sim.perms, sim.inverse, *state, dy_np, grad)
        out, offset = [], 0
        for shape in ctx.shapes:
            size = int(np.prod(shape))
            out.append(torch.from_numpy(grad[offset : offset + size].reshape(shape)))
            offset += size
        return (None, *out)


class FusedStatevector:
    """Probabilities of an ansatz by the fused kernels; differentiable (adjoint method). CPU tensors only."""

    def __init__(self, ansatz: Ansatz, dtype: torch.dtype = torch.float32):
        k = _kernels()
        self.ansatz = ansatz
        self.n = ansatz.n_qubits
        self.dtype = dtype
        self.ops, self.perms = compile_program(ansatz)
        self.inverse = np.argsort(self.perms, axis=1).astype(np.uint64)
        real = ansatz.is_real
        self.forward = k.forward_real if real else k.forward_complex
        self.backward = k.backward_real if real else k.backward_complex

    def probs(self, angles: list[torch.Tensor]) -> torch.Tensor:
        if angles[0].device.type != "cpu":
            raise ValueError("the fused backend runs on CPU tensors only: use circuit.backend=torch (or auto) on a GPU")
        return _FusedProbs.apply(self, *angles)
