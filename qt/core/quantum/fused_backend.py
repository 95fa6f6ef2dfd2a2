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


def group_layers(ops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ops, layers): each run of two or more consecutive RY ops on distinct wires as one ``LAYER`` op (real kernels).

    A ``layers`` row is (count, stride, offset, ...) with the strides in descending order
    (:mod:`qt.core.quantum.fused_kernels` pairs neighbours into one pass over the state).
    """
    k = _kernels()
    out, runs, run = [], [], []

    def close():
        if len(run) > 1:
            out.append((k.LAYER, len(runs), 0, 0))
            runs.append(sorted(run, reverse=True))
        else:
            out.extend((k.RY, st, 0, off) for st, off in run)
        run.clear()

    for op in ops.tolist():
        if op[0] == k.RY and all(op[1] != st for st, _ in run):
            run.append((op[1], op[3]))
            continue
        close()
        if op[0] == k.RY:
            run.append((op[1], op[3]))
        else:
            out.append(tuple(op))
    close()
    width = 1 + 2 * max((len(r) for r in runs), default=0)
    layers = np.zeros((max(len(runs), 1), width), dtype=np.int64)
    for i, r in enumerate(runs):
        layers[i, 0] = len(r)
        layers[i, 1 : 1 + 2 * len(r)] = np.array(r, dtype=np.int64).reshape(-1)
    return np.array(out, dtype=np.int64).reshape(-1, 4), layers


class Program:
    """A compiled circuit the kernels run: ops, CNOT permutations (and inverses), fixed-matrix table (in the state's
    dtype), and the rotation layers of ``LAYER`` ops (:func:`group_layers`)."""

    def __init__(self, n: int, real: bool, ops: np.ndarray, perms: np.ndarray, inverse: np.ndarray, dtype: type = np.float32, layers: np.ndarray | None = None):
        k = _kernels()
        self.n, self.ops, self.perms, self.inverse = n, ops, perms, inverse
        self.layers = np.zeros((1, 1), dtype=np.int64) if layers is None else layers
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
        return self.forward(self.ops, params, self.perms, self.mats, self.layers, self.n, probs)

    def adjoint(self, params: np.ndarray, state: tuple[np.ndarray, ...], dy: np.ndarray, grad: np.ndarray) -> None:
        """Adds the gradient of sum(dy * probs) to ``grad``, from the final ``state`` (consumed)."""
        self.backward(self.ops, params, self.perms, self.inverse, self.mats, self.layers, *state, dy, grad)


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
        program.adjoint(params, state, dy_np, grad)
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


_WARM: set[tuple[bool, torch.dtype]] = set()


def warm_kernels(real: bool, dtype: torch.dtype) -> None:
    """Load (or compile) the forward and backward kernels for a ``real`` or complex state of ``dtype`` now.

    numba loads a cached kernel at its first call (~0.7 s in a fresh process here); without
    this, that load would land in the first training step and in the epoch's timing. Runs a
    one-qubit circuit of the same kernel signature, once per process.
    """
    if (real, dtype) in _WARM:
        return
    k = _kernels()
    kind, count = (k.RY, 1) if real else (k.U3, 3)
    program = Program(1, real, np.array([[kind, 1, 0, 0]], dtype=np.int64), np.zeros((1, 2), np.uint64), np.zeros((1, 2), np.uint64), _NP[dtype])
    params = np.full(count, 0.5, dtype=_NP[dtype])
    state = program.run(params, np.empty(2, dtype=_NP[dtype]))
    state = state if isinstance(state, tuple) else (state,)
    program.adjoint(params, state, np.ones(2, _NP[dtype]), np.zeros_like(params))
    _WARM.add((real, dtype))


class FusedStatevector:
    """Probabilities of an ansatz by the fused kernels; differentiable (adjoint method). CPU tensors only."""

    def __init__(self, ansatz: Ansatz, dtype: torch.dtype = torch.float32, split_cnots: bool = False, layers: bool = True):
        """``split_cnots``: one op per CNOT; ``layers``: RY layers as ``LAYER`` ops (real states; off where ops are
        edited per gate, as noise trajectories do)."""
        self.ansatz = ansatz
        self.n = ansatz.n_qubits
        self.dtype = dtype
        ops, perms = compile_program(ansatz, split_cnots=split_cnots)
        table = None
        if layers and ansatz.is_real:
            ops, table = group_layers(ops)
        self.program = Program(self.n, ansatz.is_real, ops, perms, np.argsort(perms, axis=1).astype(np.uint64), _NP[dtype], table)
        warm_kernels(ansatz.is_real, dtype)  # before training starts, not in its first step

    def probs(self, angles: list[torch.Tensor]) -> torch.Tensor:
        return fused_probs(self.program, angles)
