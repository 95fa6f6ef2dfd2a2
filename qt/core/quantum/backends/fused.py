"""Fused CPU simulation of :class:`~qt.core.quantum.ansatz.Ansatz` circuits (``circuit.backend=fused``).

The whole circuit is one compiled call (:mod:`qt.core.quantum.backends.fused_kernels`) and so is its
gradient, by the adjoint method; torch sees a single autograd node. Compared with the torch
backend, which issues ~100 small ops per step, this removes the per-op dispatch that
dominates at QT's sizes (docs/performance.md has the measurements).

The kernels are single-threaded, so a job never uses more cores than the one it has been
given (``trainer.threads``, or a parallel launcher's per-job budget).
"""

from __future__ import annotations

import itertools
import weakref

import numpy as np
import torch

from qt.core.quantum.ansatz import GATES, Ansatz, cnot_permutation

_NP = {torch.float32: np.float32, torch.float64: np.float64}


def _kernels():
    """numba is imported, and cached kernels loaded, on the first simulation only."""
    from qt.core.quantum.backends import fused_kernels

    return fused_kernels


def _gate_codes() -> dict[str, int]:
    """The kernels' op code of each gate with angles (permutation gates run as ``PERM`` ops)."""
    k = _kernels()
    return {"RY": k.RY, "U3": k.U3, "CU3": k.CU3}


def _walk(ansatz: Ansatz, split_cnots: bool):
    """(gate, wires, flat angle offset) of each op of :meth:`Ansatz.ops`; a layer's permutation gates (a CNOT run) are one
    op (wires: its pairs) unless split."""
    for _, group in itertools.groupby(ansatz.ops(), key=lambda op: (op.block, op.layer)):
        group = list(group)
        if group[0].kind.permutation:
            for key in ((op.wires,) for op in group) if split_cnots else (tuple(op.wires for op in group),):
                yield group[0].gate, key, 0
        else:
            yield from ((op.gate, op.wires, op.offset) for op in group)


def op_wires(ansatz: Ansatz, split_cnots: bool = False) -> list[tuple[int, ...]]:
    """The wires each op of :func:`compile_program`'s program acts on (a CNOT run: all its wires, in order)."""
    return [tuple(dict.fromkeys(q for pair in w for q in pair)) if GATES[g].permutation else tuple(w) for g, w, _ in _walk(ansatz, split_cnots)]


def compile_program(ansatz: Ansatz, split_cnots: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(ops, perms): the ansatz as kernel ops (see :mod:`qt.core.quantum.backends.fused_kernels`) and its CNOT-run permutations.

    Angles are addressed in a flat vector: the ansatz's angle tensors (one per parameterised
    layer, shape (n_blocks, gates, angles per gate)) flattened and concatenated in order.
    ``split_cnots``: one PERM per CNOT instead of one per run (noise acts after each gate).
    """
    k = _kernels()
    n = ansatz.n_qubits
    stride = [1 << (n - 1 - q) for q in range(n)]
    kinds = _gate_codes()
    ops: list[tuple[int, int, int, int]] = []
    perm_rows: dict[tuple, int] = {}
    for gate, wires, off in _walk(ansatz, split_cnots):
        if GATES[gate].permutation:
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


#: bit positions whose index runs are shorter than a paired pass (strides 1..16): gates there cost 2-10x
SLOW_BITS = 5
#: a real state above this outgrows the L2 cache, and a relabelling gather costs more than the slow bits it avoids
#: (measured: 17 qubits even, 19 qubits 10 % slower); a complex one gains at every size (19 qubits: 20 % faster)
PLAN_MAX_QUBITS = 16
#: relative costs the layout plan weighs (measured at 13 qubits: a gate on a slow bit 2-10x a fast one, forward and
#: backward together; a relabelling gather ~4 fast gates)
_FAST, _SLOW, _RELABEL = 1, 6, 4


def _layouts(n: int) -> tuple[list[int], list[int]]:
    """Two layouts (the bit each wire is stored in): A, wire 0 most significant; B, A with bits 0-4 swapped with 5-9.

    Every wire sits on a fast bit (>= SLOW_BITS) in at least one of them.
    """
    a = [n - 1 - q for q in range(n)]
    swap = [p + SLOW_BITS if p < SLOW_BITS else p - SLOW_BITS if p < 2 * SLOW_BITS else p for p in range(n)]
    return a, [swap[p] for p in a]


def _relabelling(n: int, src: list[int], dst: list[int]) -> np.ndarray:
    """P with ``state_src[P]`` = the same state stored in layout ``dst``."""
    idx = np.arange(2**n, dtype=np.uint64)
    out = np.zeros_like(idx)
    for q in range(n):
        out |= ((idx >> np.uint64(dst[q])) & np.uint64(1)) << np.uint64(src[q])
    return out


def _segments(ansatz: Ansatz) -> list[tuple[str, list]]:
    """The walk as segments: ("layer", gates) for a run of one-qubit rotations on distinct wires (they commute), else ("op", [item])."""
    out: list[tuple[str, list]] = []
    for item in _walk(ansatz, split_cnots=False):
        gate, wires, _ = item
        if GATES[gate].wires == 1:
            if out and out[-1][0] == "layer" and all(w[1][0] != wires[0] for w in out[-1][1]):
                out[-1][1].append(item)
                continue
            out.append(("layer", [item]))
        else:
            out.append(("op", [item]))
    return out


def _plan(segments: list[tuple[str, list]], layouts: tuple[list[int], list[int]], n: int) -> list[tuple[int, int]]:
    """(layout in, layout out) per segment, cheapest under the cost model (Viterbi over the two layouts).

    A layer entering in layout L and leaving in the other runs its gates that are fast in L,
    is relabelled, then runs the rest; any other segment runs in its layout out, after a
    relabelling if it arrives in the other. Starts free (|0...0> is the same in both), ends in A.
    """
    fast = [[layouts[s][q] >= SLOW_BITS for q in range(n)] for s in (0, 1)]

    def cost(item, s):
        gate, wires, _ = item
        permutation = GATES[gate].permutation
        qs = [q for pair in wires for q in pair] if permutation else list(wires)
        return _FAST if permutation or all(fast[s][q] for q in qs) else _SLOW

    best, back = [0.0, 0.0], []
    for kind, items in segments:
        new, choice = [0.0, 0.0], [(0, 0), (0, 0)]
        for s in (0, 1):
            stay = best[s] + sum(cost(i, s) for i in items)
            if kind == "layer":  # from the other layout: its fast gates there, relabel, the rest here (fast here)
                other = best[1 - s] + _RELABEL + len(items) * _FAST
            else:
                other = best[1 - s] + _RELABEL + cost(items[0], s)
            new[s], choice[s] = (stay, (s, s)) if stay <= other else (other, (1 - s, s))
        best = new
        back.append(choice)
    state = 0 if best[0] <= best[1] + _RELABEL else 1
    plan = []
    for choice in reversed(back):
        plan.append(choice[state])
        state = choice[state][0]
    return plan[::-1]


def plan_program(ansatz: Ansatz) -> tuple[np.ndarray, np.ndarray]:
    """(ops, perms) as :func:`compile_program`, with wires moved between two layouts so that gates run on fast bits.

    A gate on one of the lowest :data:`SLOW_BITS` bits of the index runs over runs shorter
    than a vector and costs 2-10x one on a higher bit; :func:`_plan` chooses where to
    relabel the state (one gather) so that few gates do. A rotation layer's gates commute,
    so a layer can run its fast gates, be relabelled, and run the rest. The final state is
    in the usual layout. Needs n >= 2 * SLOW_BITS (else :func:`compile_program`).
    """
    k = _kernels()
    n = ansatz.n_qubits
    layouts = _layouts(n)
    fast = [[layouts[s][q] >= SLOW_BITS for q in range(n)] for s in (0, 1)]
    kinds = _gate_codes()
    ops: list[tuple[int, int, int, int]] = []
    perm_rows: dict[tuple, int] = {}

    def perm(key):
        ops.append((k.PERM, perm_rows.setdefault(key, len(perm_rows)), 0, 0))

    def gate(item, s):
        g, wires, off = item
        if GATES[g].permutation:
            return perm(("cnot", wires, s))
        pos = layouts[s]
        ops.append((kinds[g], 1 << pos[wires[0]], 1 << pos[wires[1]] if len(wires) > 1 else 0, off))

    segments = _segments(ansatz)
    here = None
    for (kind, items), (s_in, s_out) in zip(segments, _plan(segments, layouts, n)):
        if kind == "layer" and s_in != s_out:
            first = [i for i in items if fast[s_in][i[1][0]]]
            if here is not None and here != s_in:
                perm(("relabel",))
            for i in first:
                gate(i, s_in)
            perm(("relabel",))
            for i in items:
                if not fast[s_in][i[1][0]]:
                    gate(i, s_out)
        else:
            if here is not None and here != s_out:
                perm(("relabel",))
            for i in items:
                gate(i, s_out)
        here = s_out
    if here == 1:
        perm(("relabel",))
    perms = np.zeros((max(len(perm_rows), 1), 2**n), dtype=np.uint64)
    for key, row in perm_rows.items():  # the relabelling is an involution: one table both ways
        perms[row] = _relabelling(n, *layouts) if key[0] == "relabel" else cnot_permutation(n, key[1], layouts[key[2]])
    return np.array(ops, dtype=np.int64).reshape(-1, 4), perms


def group_layers(ops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ops, layers): each run of two or more consecutive RY ops on distinct wires as one ``LAYER`` op (real kernels).

    A ``layers`` row is (count, stride, offset, ...) with the strides in descending order
    (:mod:`qt.core.quantum.backends.fused_kernels` pairs neighbours into one pass over the state).
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


#: the most memory the states kept for the backward (one per rotation layer) may take; above, the state is un-applied
SAVED_STATES_BYTES = 256 * 2**20


class Program:
    """A compiled circuit the kernels run: ops, CNOT permutations (and inverses), fixed-matrix table (in the state's
    dtype), and the rotation layers of ``LAYER`` ops (:func:`group_layers`).

    ``saved``: a real program whose rotations are all in layers keeps the state after each layer in the forward
    (within :data:`SAVED_STATES_BYTES`), and its backward walks back the adjoint only.
    """

    def __init__(self, n: int, real: bool, ops: np.ndarray, perms: np.ndarray, inverse: np.ndarray, dtype: type = np.float32, layers: np.ndarray | None = None):
        k = _kernels()
        self.n, self.real, self.ops, self.perms, self.inverse, self.dtype = n, real, ops, perms, inverse, dtype
        self.layers = np.zeros((1, 1), dtype=np.int64) if layers is None else layers
        self.mats = np.zeros((1, 16), dtype=dtype)
        self.forward = k.forward_real if real else k.forward_complex
        self.backward = k.backward_real if real else k.backward_complex
        n_layers = int((ops[:, 0] == k.LAYER).sum())
        self.saved = (
            real and n_layers > 0 and bool(np.isin(ops[:, 0], (k.LAYER, k.PERM)).all())
            and n_layers * 2**n * np.dtype(dtype).itemsize <= SAVED_STATES_BYTES
        )  # fmt: skip
        self.n_saves = n_layers if self.saved else 0
        self._pool: list[tuple[np.ndarray, weakref.ref]] = []
        if self.saved:
            self.backward = k.backward_real_saved

    def with_ops(self, ops: np.ndarray, mats: np.ndarray) -> "Program":
        """The same circuit with other ops (a noise trajectory: fixed matrices inserted; ``mats`` in ``self.mats.dtype``)."""
        out = Program(self.n, self.real, ops, self.perms, self.inverse, self.dtype, self.layers)
        out.mats = mats
        return out

    def run(self, params: np.ndarray, probs: np.ndarray, keep: bool = True):
        """Final state of the program on |0...0>, and the states kept for its backward (``keep``: a backward will
        follow); writes ``probs``."""
        saves = self._saves(params.dtype) if self.saved and keep else np.empty((1, 1), dtype=params.dtype)
        state = self.forward(self.ops, params, self.perms, self.mats, self.layers, self.n, probs, saves)
        return (state if isinstance(state, tuple) else (state,)), saves

    def _saves(self, dtype) -> np.ndarray:
        """A buffer for the kept states, as a view: a buffer whose last view is gone (its autograd graph freed), else a new one.

        Reused, because a fresh one (4 MiB at 13 qubits and 64 blocks) costs its page faults in every step.
        """
        for i, (buf, lease) in enumerate(self._pool):
            if buf.dtype == dtype and lease() is None:
                view = buf[...]
                self._pool[i] = (buf, weakref.ref(view))
                return view
        buf = np.empty((self.n_saves, 2**self.n), dtype=dtype)
        view = buf[...]
        self._pool = [*self._pool[-3:], (buf, weakref.ref(view))]  # one dropped here lives on through its view's base
        return view

    def adjoint(self, params: np.ndarray, state: tuple[np.ndarray, ...], saves: np.ndarray, dy: np.ndarray, grad: np.ndarray) -> None:
        """Adds the gradient of sum(dy * probs) to ``grad``, from :meth:`run`'s results (left as they were)."""
        if not self.saved:  # the kernel un-applies the final state in place: a copy, so a second backward sees the original
            state = tuple(s.copy() for s in state)
        self.backward(self.ops, params, self.perms, self.inverse, self.mats, self.layers, saves, *state, dy, grad)


class _FusedProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, program: Program, *angles: torch.Tensor) -> torch.Tensor:
        dtype = _NP[angles[0].dtype]
        params = np.concatenate([a.detach().reshape(-1).numpy() for a in angles]).astype(dtype, copy=False)
        probs = np.empty(2**program.n, dtype=dtype)
        ctx.state, ctx.saves = program.run(params, probs, keep=any(ctx.needs_input_grad))
        ctx.program, ctx.params = program, params
        ctx.shapes = [a.shape for a in angles]
        return torch.from_numpy(probs)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        program, params = ctx.program, ctx.params
        grad = np.zeros_like(params)
        dy_np = np.ascontiguousarray(dy.detach().numpy(), dtype=params.dtype)
        program.adjoint(params, ctx.state, ctx.saves, dy_np, grad)
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
    one_gate = np.array([[k.RY if real else k.U3, 1, 0, 0]], dtype=np.int64)
    perms = np.zeros((1, 4), np.uint64)
    programs = [Program(2, real, one_gate, perms, perms, _NP[dtype])]
    if real:  # and a layer with its states kept: backward_real_saved
        programs.append(Program(2, True, np.array([[k.LAYER, 0, 0, 0]]), perms, perms, _NP[dtype], np.array([[2, 2, 0, 1, 1]])))
    for program in programs:
        params = np.full(3, 0.5, dtype=_NP[dtype])
        state, saves = program.run(params, np.empty(4, dtype=_NP[dtype]))
        program.adjoint(params, state, saves, np.ones(4, _NP[dtype]), np.zeros_like(params))
    _WARM.add((real, dtype))


class FusedStatevector:
    """Probabilities of an ansatz by the fused kernels; differentiable (adjoint method). CPU tensors only."""

    def __init__(self, ansatz: Ansatz, dtype: torch.dtype = torch.float32, split_cnots: bool = False, layers: bool = True):
        """``split_cnots``: one op per CNOT; ``layers``: the program optimised, its ops no longer one per gate in
        order (from 10 qubits wires move between layouts, :func:`plan_program`; RY layers become ``LAYER`` ops): off
        where ops are edited per gate, as noise trajectories do."""
        self.ansatz = ansatz
        self.n = ansatz.n_qubits
        self.dtype = dtype
        planned = layers and not split_cnots and self.n >= 2 * SLOW_BITS and (self.n <= PLAN_MAX_QUBITS or not ansatz.is_real)
        ops, perms = plan_program(ansatz) if planned else compile_program(ansatz, split_cnots=split_cnots)
        table = None
        if layers and ansatz.is_real:
            ops, table = group_layers(ops)
        self.program = Program(self.n, ansatz.is_real, ops, perms, np.argsort(perms, axis=1).astype(np.uint64), _NP[dtype], table)
        warm_kernels(ansatz.is_real, dtype)  # before training starts, not in its first step

    def probs(self, angles: list[torch.Tensor]) -> torch.Tensor:
        return fused_probs(self.program, angles)


def memory_bytes(ansatz: Ansatz, wide: int = 1) -> int:
    """Peak memory of one simulation and its gradient (``wide``: 2 for float64). A real state: state, scratch,
    probabilities, saved state, its copy, adjoint, gradient input, and the state after each rotation layer when
    :class:`Program` keeps them; complex: twice the arrays."""
    n = ansatz.n_qubits
    itemsize, kept = 4 * wide, (7 if ansatz.is_real else 13)
    layers = ansatz.n_blocks * (2 if 2 * SLOW_BITS <= n <= PLAN_MAX_QUBITS else 1)  # planned: split around a relabelling
    if ansatz.is_real and n > 1 and layers * 2**n * itemsize <= SAVED_STATES_BYTES:
        kept += layers
    return int(2**n * itemsize * kept * 1.5)
