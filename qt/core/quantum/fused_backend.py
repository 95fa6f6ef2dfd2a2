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


def _walk(ansatz: Ansatz, split_cnots: bool):
    """(gate, wires, flat angle offset) of each op in program order; a CNOT run is one op (wires: its pairs) unless split."""
    layer_offset, offset = {}, 0
    for li, layer in enumerate(ansatz.block):
        if layer.n_params:
            layer_offset[li] = offset
            offset += ansatz.n_blocks * layer.n_params
    for b in range(ansatz.n_blocks):
        for li, layer in enumerate(ansatz.block):
            if layer.gate == "CNOT":
                for key in ((w,) for w in layer.wires) if split_cnots else (tuple(layer.wires),):
                    yield "CNOT", key, 0
                continue
            for j, wires in enumerate(layer.wires):
                yield layer.gate, wires, layer_offset[li] + (b * len(layer.wires) + j) * layer.params_per_gate


def op_wires(ansatz: Ansatz, split_cnots: bool = False) -> list[tuple[int, ...]]:
    """The wires each op of :func:`compile_program`'s program acts on (a CNOT run: all its wires, in order)."""
    return [tuple(dict.fromkeys(q for pair in w for q in pair)) if g == "CNOT" else tuple(w) for g, w, _ in _walk(ansatz, split_cnots)]


def compile_program(ansatz: Ansatz, split_cnots: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(ops, perms): the ansatz as kernel ops (see :mod:`qt.core.quantum.fused_kernels`) and its CNOT-run permutations.

    Angles are addressed in a flat vector: the ansatz's angle tensors (one per parameterised
    layer, shape (n_blocks, gates, angles per gate)) flattened and concatenated in order.
    ``split_cnots``: one PERM per CNOT instead of one per run (noise acts after each gate).
    """
    k = _kernels()
    n = ansatz.n_qubits
    stride = [1 << (n - 1 - q) for q in range(n)]
    kinds = {"RY": k.RY, "U3": k.U3, "CU3": k.CU3}
    ops: list[tuple[int, int, int, int]] = []
    perm_rows: dict[tuple, int] = {}
    for gate, wires, off in _walk(ansatz, split_cnots):
        if gate == "CNOT":
            if wires not in perm_rows:
                perm_rows[wires] = len(perm_rows)
            ops.append((k.PERM, perm_rows[wires], 0, 0))
            continue
        second = stride[wires[1]] if len(wires) > 1 else 0
        ops.append((kinds[gate], stride[wires[0]], second, off))
    perms = np.zeros((max(len(perm_rows), 1), 2**n), dtype=np.uint64)
    for key, row in perm_rows.items():
        perms[row] = cnot_permutation(n, key)
    return np.array(ops, dtype=np.int64).reshape(-1, 4), perms


class Program:
    """A compiled circuit the kernels run: ops, CNOT permutations (and inverses), fixed-matrix table (in the state's dtype)."""

    def __init__(self, n: int, real: bool, ops: np.ndarray, perms: np.ndarray, inverse: np.ndarray, dtype: type = np.float32):
        k = _kernels()
        self.n, self.ops, self.perms, self.inverse = n, ops, perms, inverse
        self.mats = np.zeros((1, 16), dtype=dtype)
        self.forward = k.forward_real if real else k.forward_complex
        self.backward = k.backward_real if real else k.backward_complex

    def with_ops(self, ops: np.ndarray, mats: np.ndarray) -> "Program":
        """The same circuit with other ops (a noise trajectory: fixed matrices inserted; ``mats`` in ``self.mats.dtype``)."""
        out = Program.__new__(Program)
        out.__dict__.update(self.__dict__, ops=ops, mats=mats)
        return out

    def run(self, params: np.ndarray, probs: np.ndarray):
        """Final state of the program on |0...0>; writes its probabilities into ``probs``."""
        return self.forward(self.ops, params, self.perms, self.mats, self.n, probs)


class _FusedProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, program: Program, *angles: torch.Tensor) -> torch.Tensor:
        dtype = _NP[angles[0].dtype]
        params = np.concatenate([a.detach().reshape(-1).numpy() for a in angles]).astype(dtype, copy=False)
        probs = np.empty(2**program.n, dtype=dtype)
        state = program.run(params, probs)
        ctx.program, ctx.params, ctx.state = program, params, state
        ctx.shapes = [a.shape for a in angles]
        return torch.from_numpy(probs)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        program, params = ctx.program, ctx.params
        state = tuple(s.copy() for s in (ctx.state if isinstance(ctx.state, tuple) else (ctx.state,)))
        grad = np.zeros_like(params)
        dy_np = np.ascontiguousarray(dy.detach().numpy(), dtype=params.dtype)
        program.backward(program.ops, params, program.perms, program.inverse, program.mats, *state, dy_np, grad)
        out, offset = [], 0
        for shape in ctx.shapes:
            size = int(np.prod(shape))
            out.append(torch.from_numpy(grad[offset : offset + size].reshape(shape)))
            offset += size
        return (None, *out)


def fused_probs(program: Program, angles: list[torch.Tensor]) -> torch.Tensor:
    """Differentiable probabilities of ``program`` at ``angles`` (CPU tensors)."""
    if angles[0].device.type != "cpu":
        raise ValueError("the fused backend runs on CPU tensors only: use circuit.backend=torch (or auto) on a GPU")
    return _FusedProbs.apply(program, *angles)


class FusedStatevector:
    """Probabilities of an ansatz by the fused kernels; differentiable (adjoint method). CPU tensors only."""

    def __init__(self, ansatz: Ansatz, dtype: torch.dtype = torch.float32, split_cnots: bool = False):
        self.ansatz = ansatz
        self.n = ansatz.n_qubits
        self.dtype = dtype
        ops, perms = compile_program(ansatz, split_cnots=split_cnots)
        self.program = Program(self.n, ansatz.is_real, ops, perms, np.argsort(perms, axis=1).astype(np.uint64), _NP[dtype])

    def probs(self, angles: list[torch.Tensor]) -> torch.Tensor:
        return fused_probs(self.program, angles)
