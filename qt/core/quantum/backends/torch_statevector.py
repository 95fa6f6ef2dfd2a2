"""Native torch state-vector simulator for :class:`~qt.core.quantum.ansatz.Ansatz` circuits.

The backend for CUDA (``circuit.backend=auto`` picks it there) and a reference for the
fused CPU backend (:mod:`qt.core.quantum.backends.fused`), which is faster on CPU.

The circuit has no data input, so it is simulated once per optimizer step, and the cost
is per-op dispatch (forward and backward), not arithmetic. The simulator therefore
*compiles* the ansatz into few, larger ops:

* the qubits are split into contiguous *partitions* of at most ``group_size`` qubits
  (13 qubits: 5 + 4 + 4), and the state is viewed as a tensor with one axis per partition;
* within a block, every gate that touches one partition only is multiplied into that
  partition's operator (a 2^k x 2^k matrix); gates on different partitions commute, so a
  partition's pending gates are applied only when a gate *crossing* partitions needs them;
* operators are built for all blocks at once (batched over blocks): building costs a
  number of ops proportional to the gates of one block, not of the whole circuit;
* the operators that end block b and start block b+1 on the same partition are merged;
* the first operators act on |0...0>, a product state: the state starts as an outer
  product of their first columns.

RY + CNOT on 13 qubits thus runs 4 state ops per block (three partition operators and one
gather for the whole CNOT chain); ansätze with real gates only keep a real state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from qt.core.quantum import gates
from qt.core.quantum.ansatz import GATES, Ansatz, Op, cnot_permutation


def default_group_size(n_qubits: int) -> int:
    """Qubits per partition: at most 5 (13 qubits: 5 + 4 + 4), measured fastest on CPU by qt.bench.

    Larger partitions mean fewer state ops but 2^k-fold work per amplitude and costlier
    operator building; on 2 CPU cores 5 beat 7 (halves) and 4 for both ansätze at 13 qubits.
    """
    return max(1, min(5, math.ceil(n_qubits / 2)))


def partitions(n_qubits: int, group_size: int) -> list[tuple[int, int]]:
    """Contiguous (first qubit, size) partitions of near-equal size, each <= group_size."""
    m = math.ceil(n_qubits / group_size)
    sizes = [n_qubits // m + (1 if i < n_qubits % m else 0) for i in range(m)]
    starts = [sum(sizes[:i]) for i in range(m)]
    return list(zip(starts, sizes))


def _kron_chain(mats: list[torch.Tensor]) -> torch.Tensor:
    op = mats[0]
    for m in mats[1:]:
        b, d = op.shape[0], op.shape[1]
        op = (op[:, :, None, :, None] * m[:, None, :, None, :]).reshape(b, 2 * d, 2 * d)
    return op


def kron(mats: list[torch.Tensor]) -> torch.Tensor:
    """Batched Kronecker product of (B, 2, 2) matrices, first most significant: (B, 2^k, 2^k).

    Each half by broadcasting products, the halves joined by one einsum: its backward is a
    contraction, where a broadcast product's backward would be a large reduction.
    """
    if len(mats) < 4:
        return _kron_chain(mats)
    h = len(mats) // 2
    a, c = _kron_chain(mats[:h]), _kron_chain(mats[h:])
    b, da, dc = a.shape[0], a.shape[-1], c.shape[-1]
    return torch.einsum("zab,zcd->zacbd", a, c).reshape(b, da * dc, da * dc)


# -- gate kernels on X of shape (B, 2^k, C): rows are a k-qubit register, B a batch of blocks --
def apply_1q(x: torch.Tensor, u: torch.Tensor, q: int, k: int) -> torch.Tensor:
    b, d, c = x.shape
    xv = x.reshape(b, 2**q, 2, (d >> (q + 1)) * c)
    return torch.einsum("zij,zajr->zair", u, xv).reshape(b, d, c)


def apply_2q(x: torch.Tensor, m: torch.Tensor, control: int, target: int, k: int) -> torch.Tensor:
    """``m`` (B, 4, 4) in (control, target) order: index 2*control_bit + target_bit."""
    b, d, c = x.shape
    if target == control + 1:
        xv = x.reshape(b, 2**control, 4, (d >> (control + 2)) * c)
        return torch.einsum("zij,zajr->zair", m, xv).reshape(b, d, c)
    lo, hi = min(control, target), max(control, target)
    xv = x.reshape(b, 2**lo, 2, 2 ** (hi - lo - 1), 2, (d >> (hi + 1)) * c)
    m4 = m.reshape(b, 2, 2, 2, 2)  # [b, c', t', c, t]
    spec = "zxyab,ziajbk->zixjyk" if control < target else "zxyab,zibjak->ziyjxk"
    return torch.einsum(spec, m4, xv).reshape(b, d, c)


@dataclass
class Local:
    """Operator of one partition: the product of its gates, in order."""

    part: int
    gates: list[Op] = field(default_factory=list)


@dataclass
class Cross:
    """A parameterised gate across partitions, applied to the state."""

    gate: Op


@dataclass
class Perm:
    """A run of constant permutation gates (CNOTs), composed into one index permutation of the state."""

    gates: list[Op] = field(default_factory=list)


def permutation(n_qubits: int, gates_: list[Op]) -> torch.Tensor:
    """Index permutation P with ``state[P]`` = the state after the CNOTs, applied in order."""
    return torch.from_numpy(cnot_permutation(n_qubits, [g.wires for g in gates_]).astype(np.int64))


class _Permute(torch.autograd.Function):
    """x[perm] whose backward is a gather with the inverse permutation (no scatter-add)."""

    @staticmethod
    def forward(ctx, x, perm, inverse):
        ctx.save_for_backward(inverse)
        return x.index_select(0, perm)

    @staticmethod
    def backward(ctx, grad):
        (inverse,) = ctx.saved_tensors
        return grad.index_select(0, inverse), None, None


def compile_block(ansatz: Ansatz, parts: list[tuple[int, int]]) -> list[Local | Cross | Perm]:
    """One block as steps on the state.

    One-qubit gates and parameterised two-qubit gates inside a partition join that
    partition's pending operator. A parameterised gate across partitions flushes the
    pending operators of the partitions it touches (the others commute with it). A constant
    gate (CNOT) flushes every pending operator and joins a run of permutations, so a CNOT
    chain costs one gather of the state.
    """
    owner = {q: p for p, (start, size) in enumerate(parts) for q in range(start, start + size)}
    pending: dict[int, Local] = {}
    steps: list[Local | Cross | Perm] = []

    def flush(which):
        for p in sorted(which):
            if p in pending:
                steps.append(pending.pop(p))

    for gate in ansatz.ops(blocks=1):  # every block is the same, with its own angles
        touched = {owner[q] for q in gate.wires}
        if gate.kind.permutation:
            flush(list(pending))
            if not (steps and isinstance(steps[-1], Perm)):
                steps.append(Perm())
            steps[-1].gates.append(gate)
        elif len(touched) == 1:
            pending.setdefault(touched.pop(), Local(owner[gate.wires[0]])).gates.append(gate)
        else:
            flush(touched)
            steps.append(Cross(gate))
    flush(list(pending))
    return steps


class TorchStatevector:
    """Simulates an ansatz and returns its basis-state probabilities (differentiable)."""

    def __init__(self, ansatz: Ansatz, dtype: torch.dtype = torch.float32, group_size: int | None = None):
        self.ansatz = ansatz
        self.n = ansatz.n_qubits
        self.complex_dtype = torch.complex64 if dtype == torch.float32 else torch.complex128
        self.state_dtype = dtype if ansatz.is_real else self.complex_dtype
        self.parts = partitions(self.n, group_size or default_group_size(self.n))
        self.steps = compile_block(ansatz, self.parts)
        self._perms: dict[tuple[int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}
        first_cross = next((i for i, s in enumerate(self.steps) if not isinstance(s, Local)), len(self.steps))
        last_cross = max((i for i, s in enumerate(self.steps) if not isinstance(s, Local)), default=-1)
        # leading locals (before any crossing gate) and trailing locals (after the last one)
        self.leading = {s.part: i for i, s in enumerate(self.steps[:first_cross])}
        self.trailing = {s.part: i for i, s in enumerate(self.steps) if i > last_cross and isinstance(s, Local)}
        if last_cross < 0:  # no crossing gate at all: every step is both leading and trailing
            self.trailing = dict(self.leading)
        self.merge = sorted(set(self.leading) & set(self.trailing)) if last_cross >= 0 else []

    def _perm(self, i: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (i, device)
        if key not in self._perms:
            perm = permutation(self.n, self.steps[i].gates)
            self._perms[key] = (perm.to(device), torch.argsort(perm).to(device))
        return self._perms[key]

    # -- building operators (batched over blocks) ----------------------------------------
    def _gate_matrices(self, angles: list[torch.Tensor]) -> list[tuple[torch.Tensor, ...] | None]:
        """Per layer, per gate: (B, 2, 2) or (B, 4, 4) matrices in the state dtype."""
        angle_iter = iter(angles)  # one tensor per layer with angles; permutation gates (CNOTs) run as gathers
        out = [
            gates.matrix(layer.gate, next(angle_iter), self.complex_dtype).to(self.state_dtype) if layer.n_params else None
            for layer in self.ansatz.block
        ]
        # one unbind per layer: selecting gate by gate would cost a full-size zero-fill each in backward
        return [None if m is None else torch.unbind(m, dim=1) for m in out]

    def _operator(self, local: Local, mats: list[torch.Tensor]) -> torch.Tensor:
        """(B, 2^k, 2^k) product of the local's gates; leading one-qubit gates via a Kronecker product."""
        start, k = self.parts[local.part]
        gates_ = list(local.gates)
        ones: dict[int, torch.Tensor] = {}
        while gates_ and len(gates_[0].wires) == 1 and gates_[0].wires[0] not in ones:
            g = gates_.pop(0)
            ones[g.wires[0]] = mats[g.layer][g.index]
        b = self.ansatz.n_blocks
        eye = torch.eye(2, dtype=self.state_dtype, device=mats_device(mats)).expand(b, 2, 2)
        op = kron(
            [ones.get(q, eye) for q in range(start, start + k)]
        )
        for g in gates_:
            m = mats[g.layer][g.index]
            if len(g.wires) == 1:
                op = apply_1q(op, m, g.wires[0] - start, k)
            else:
                op = apply_2q(op, m, g.wires[0] - start, g.wires[1] - start, k)
        return op

    # -- running on the state -------------------------------------------------------------
    def _apply_local(self, state: torch.Tensor, op: torch.Tensor, part: int) -> torch.Tensor:
        start, k = self.parts[part]
        after = self.n - start - k
        if after == 0:
            return (state.view(2**start, 2**k) @ op.transpose(0, 1)).reshape(-1)
        if start == 0:
            return (op @ state.view(2**k, 2**after)).reshape(-1)
        return (op @ state.view(2**start, 2**k, 2**after)).reshape(-1)

    def _initial(self, ops: dict[int, torch.Tensor], device: torch.device) -> torch.Tensor:
        """The product state after the first block's leading operators act on |0...0>."""
        state = None
        for p, (_, k) in enumerate(self.parts):
            if p in ops:
                v = ops[p][:, 0]
            else:
                v = torch.zeros(2**k, dtype=self.state_dtype, device=device)
                v[0] = 1
            state = v if state is None else (state[:, None] * v[None, :]).reshape(-1)
        return state

    def probs(self, angles: list[torch.Tensor]) -> torch.Tensor:
        """Probabilities of all 2^n basis states; ``angles`` as :meth:`Ansatz.angle_shapes`."""
        device = angles[0].device if angles else torch.device("cpu")
        mats = self._gate_matrices(angles)
        ops = {i: self._operator(s, mats) for i, s in enumerate(self.steps) if isinstance(s, Local)}
        # merged[p][b] = leading op of block b+1 (on partition p) after trailing op of block b
        merged = {p: torch.unbind(ops[self.leading[p]][1:] @ ops[self.trailing[p]][:-1]) for p in self.merge}
        n_blocks = self.ansatz.n_blocks
        state = self._initial({p: ops[i][0] for p, i in self.leading.items()}, device)
        # per-block views by one unbind each: indexing block by block would cost a
        # full-size zero-fill per index in backward
        per_block = {i: torch.unbind(op) for i, op in ops.items()}
        cross = {
            i: torch.unbind(mats[s.gate.layer][s.gate.index].unsqueeze(1))
            for i, s in enumerate(self.steps)
            if isinstance(s, Cross)
        }
        for b in range(n_blocks):
            for i, step in enumerate(self.steps):
                if isinstance(step, Local):
                    if i == self.leading.get(step.part) and (b == 0 or step.part in self.merge):
                        continue  # block 0: in the initial state; later blocks: merged into the previous
                    if i == self.trailing.get(step.part) and step.part in self.merge and b < n_blocks - 1:
                        state = self._apply_local(state, merged[step.part][b], step.part)
                    else:
                        state = self._apply_local(state, per_block[i][b], step.part)
                elif isinstance(step, Perm):
                    state = _Permute.apply(state, *self._perm(i, device))
                else:
                    g = step.gate
                    state = apply_2q(state.view(1, -1, 1), cross[i][b], g.wires[0], g.wires[1], self.n).reshape(-1)
        if state.is_complex():
            return torch.view_as_real(state).pow(2).sum(-1)
        return state**2


def mats_device(mats: list[tuple[torch.Tensor, ...] | None]) -> torch.device:
    return next(m[0].device for m in mats if m is not None)


def memory_bytes(ansatz: Ansatz, wide: int = 1, group_size: int | None = None) -> int:
    """Peak memory of one differentiable simulation: the states autograd keeps, one per partition operator, crossing
    gate and permutation run of every block (``wide``: 2 for float64)."""
    n = ansatz.n_qubits
    itemsize = (4 if ansatz.is_real else 8) * wide
    n_groups = math.ceil(n / (group_size or default_group_size(n)))
    per_block = sum(
        n_groups if GATES[layer.gate].wires == 1 else (1 if GATES[layer.gate].permutation else len(layer.wires))
        for layer in ansatz.block
    )
    return int(2**n * itemsize * (ansatz.n_blocks * per_block + 2) * 1.5)
