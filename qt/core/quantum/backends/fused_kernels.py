"""Compiled (numba) state-vector kernels: one call simulates a whole circuit, one call its adjoint.

A circuit reaches these kernels as a *program*: an int64 array of ops, one row each,
``(kind, stride_a, stride_b, param_offset)``, where a stride is ``1 << bit`` of a wire
(wire 0 is the most significant bit) and ``param_offset`` indexes a flat angle vector:

* ``RY``   (stride_a = target): one angle;
* ``U3``   (stride_a = target): three angles (theta, phi, lambda);
* ``CU3``  (stride_a = control, stride_b = target): three angles, U3 on the control=1 half;
* ``PERM`` (stride_a = row of the permutation table): a run of CNOTs composed into one
  index permutation, ``state <- state[perm]``;
* ``FIXED`` (stride_a = target, param_offset = row of the matrix table ``mats``): a fixed
  real 2x2 matrix with no angle, invertible but not necessarily unitary (the Pauli errors and
  amplitude-damping operators of a noise trajectory, :mod:`qt.core.quantum.backends.trajectories`). A ``mats``
  row holds 16 reals: the matrix and its inverse, each as 8 reals (2x2 complex, row-major).
* ``LAYER`` (real state only; stride_a = row of the layer table ``layers``): consecutive RYs
  on distinct wires, as :func:`qt.core.quantum.backends.fused.group_layers` finds them. A
  ``layers`` row is (count, stride, offset, stride, offset, ...), strides descending. They
  commute, so the forward applies them two per pass over the state where runs are long
  (:data:`PAIR_RUN`), and the backward takes every gradient from the state and adjoint
  *after* the layer (an RY's generator commutes with the other wires' rotations, so
  ``<l|J_q|psi>`` is the same anywhere in the layer) before un-applying the layer from both.

The forward keeps only the final state. The backward is the adjoint method: walking the
ops in reverse, each gate contributes ``2 Re <lambda| dU |psi>`` to its angles' gradient
(from one read-only pass over the state and the adjoint vector ``lambda = dy * psi``) and
is then un-applied from both (the state by the op's inverse, lambda by its adjoint: the same
for a unitary gate); memory is O(2^n) whatever the depth. Real and imaginary
parts live in separate arrays, which is what lets LLVM vectorise the inner loops (numba's
complex type keeps them scalar). Kernels for a real state (RY + CNOT only) never touch an
imaginary part. docs/performance.md has the measurements behind each choice.

Compiled kernels are cached on disk: next to this file, else in ``NUMBA_CACHE_DIR``, else
in a temporary directory; with none writable they compile in every process.
"""

from __future__ import annotations

import math
import os
import tempfile

import numba
import numpy as np
from numba import njit, uint64

RY, U3, CU3, PERM, FIXED, LAYER = 0, 1, 2, 3, 4, 5
#: runs at least this long: two rotations of a layer in one pass over the state (shorter runs: one at a time)
PAIR_RUN = 32
#: controlled gates whose index runs are shorter than this go through a blended pass instead
SHORT_RUN = 16

# reassociation lets LLVM vectorise the gradient reductions; no nnan/ninf assumptions
_FASTMATH = {"reassoc", "contract", "nsz"}


def _cache_dir_usable() -> bool:
    """True when numba can write its cache next to this file or under NUMBA_CACHE_DIR."""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")
    candidates = [here, os.environ.get("NUMBA_CACHE_DIR") or "", numba.config.CACHE_DIR or ""]
    for path in filter(None, candidates):
        try:
            os.makedirs(path, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path):
                return True
        except OSError:
            continue
    return False


def _usable_cache() -> bool:
    if not _cache_dir_usable():
        fallback = os.path.join(tempfile.gettempdir(), "qt-numba-cache")
        try:
            os.makedirs(fallback, exist_ok=True)
            numba.config.CACHE_DIR = fallback  # read when the cache locator is chosen
        except OSError:
            return False  # nowhere to write: compile in every process (a few seconds)
    return True


CACHE = _usable_cache()


def _kernel(fn):
    return njit(cache=CACHE, fastmath=_FASTMATH, nogil=True)(fn)


def _helper(fn):
    return njit(cache=CACHE, fastmath=_FASTMATH, inline="always")(fn)


def _pass(fn):
    """A pass over the state, compiled once and called (not inlined) from the kernels: inlining every
    call site multiplied compile time (56 s -> 23 s cold for U3+CU3) for no run-time gain (docs/performance.md)."""
    return njit(cache=CACHE, fastmath=_FASTMATH, nogil=True)(fn)


# -- loop shapes -----------------------------------------------------------------------
# A one-qubit gate on stride s touches the pairs (j, j + s) for the j whose bit s is 0:
# runs of s consecutive indices starting at multiples of 2s. A controlled gate (control
# stride c, target stride t) touches the j with target bit 0 and control bit 1: runs of
# min(c, t) indices. Two loop shapes, chosen by run length because each vectorises where
# the other does not (measured, 13 qubits):
#
# * views: each run as two array views ``x[base:base+run]``, ``x[base+partner:...]``; two
#   distinct arrays let LLVM check aliasing at run time and vectorise (runs of 8 or more);
# * constant stride: one loop over the whole state with the stride a compile-time constant
#   (strides 1, 2, 4), which LLVM vectorises with interleaved loads.


@_helper
def _rot(c, s, x, y):
    return c * x - s * y, s * x + c * y


@_helper
def _ry_real_views(re, start, stop, step, run, partner, c, s):
    for base in range(start, stop, step):
        a, b = re[base : base + run], re[base + partner : base + partner + run]
        for t in range(run):
            a[t], b[t] = _rot(c, s, a[t], b[t])


@_helper
def _ry_real_const(re, st, c, s):
    for base in range(uint64(0), uint64(re.shape[0]), st + st):
        for j in range(base, base + st):
            re[j], re[j + st] = _rot(c, s, re[j], re[j + st])


@_pass
def _ry_real(re, st, c, s):
    if st == 1:
        _ry_real_const(re, uint64(1), c, s)
    elif st == 2:
        _ry_real_const(re, uint64(2), c, s)
    elif st == 4:
        _ry_real_const(re, uint64(4), c, s)
    else:
        _ry_real_views(re, 0, re.shape[0], 2 * st, st, st, c, s)


@_pass
def _fixed_real(re, st, a, b, c, d):
    """re <- [[a, b], [c, d]] re on the pairs of stride ``st`` (a FIXED op on a real state)."""
    for base in range(0, re.shape[0], 2 * st):
        x, y = re[base : base + st], re[base + st : base + 2 * st]
        for t in range(st):
            x[t], y[t] = a * x[t] + b * y[t], c * x[t] + d * y[t]


@_helper
def _ry_grad_views(re, lr, st):
    g = re[0] * 0
    for base in range(0, re.shape[0], 2 * st):
        a, b = re[base : base + st], re[base + st : base + 2 * st]
        la, lb = lr[base : base + st], lr[base + st : base + 2 * st]
        for t in range(st):
            g += lb[t] * a[t] - la[t] * b[t]
    return g


@_helper
def _ry_grad_const(re, lr, st):
    g = re[0] * 0
    for base in range(uint64(0), uint64(re.shape[0]), st + st):
        for j in range(base, base + st):
            g += lr[j + st] * re[j] - lr[j] * re[j + st]
    return g


@_pass
def _ry_grad(re, lr, st):
    """sum(l1 a0 - l0 a1) over the pairs of stride ``st``: dL/dtheta of an RY, from state and adjoint after it.

    RY'(theta) = J RY(theta) / 2 with J = [[0, -1], [1, 0]], so 2 <l| RY' |psi_before> = <l| J |psi_after>.
    A read-only pass: with no stores, nothing stops LLVM from vectorising the reduction.
    """
    if st == 1:
        return _ry_grad_const(re, lr, uint64(1))
    if st == 2:
        return _ry_grad_const(re, lr, uint64(2))
    if st == 4:
        return _ry_grad_const(re, lr, uint64(4))
    return _ry_grad_views(re, lr, st)


@_helper
def _u3_entries(params, off):
    th, ph, la = params[off], params[off + 1], params[off + 2]
    c, s = math.cos(th / 2), math.sin(th / 2)
    cp, sp = math.cos(ph), math.sin(ph)
    cl, sl = math.cos(la), math.sin(la)
    cpl, spl = math.cos(ph + la), math.sin(ph + la)
    return c, s, cp, sp, cl, sl, cpl, spl


@_pass
def _gather(x, tmp, perm):
    """tmp <- x[perm] (the caller swaps the two buffers: no copy back)."""
    n = uint64(x.shape[0])
    for i in range(uint64(0), n):
        tmp[i] = x[perm[i]]


@_pass
def _gather_pair(x, y, tx, ty, perm):
    """tx <- x[perm], ty <- y[perm] (real and imaginary parts: one read of the index for both)."""
    for i in range(uint64(0), uint64(x.shape[0])):
        j = perm[i]
        tx[i] = x[j]
        ty[i] = y[j]


@_helper
def _ry_pair(re, sa, sb, ca, sna, cb, snb):
    """RY(a) and RY(b) in one pass (strides sa > sb >= PAIR_RUN): the quads (j, j + sb, j + sa, j + sa + sb)."""
    for outer in range(0, re.shape[0], 2 * sa):
        for base in range(outer, outer + sa, 2 * sb):
            a0, a1 = re[base : base + sb], re[base + sb : base + 2 * sb]
            a2, a3 = re[base + sa : base + sa + sb], re[base + sa + sb : base + sa + 2 * sb]
            for t in range(sb):
                x0, x1 = _rot(cb, snb, a0[t], a1[t])
                x2, x3 = _rot(cb, snb, a2[t], a3[t])
                a0[t], a2[t] = _rot(ca, sna, x0, x2)
                a1[t], a3[t] = _rot(ca, sna, x1, x3)


@_helper
def _ry_grad_pair(re, lr, sa, sb):
    """(_ry_grad at sa, _ry_grad at sb) from one read-only pass over the quads."""
    ga = re[0] * 0
    gb = re[0] * 0
    for outer in range(0, re.shape[0], 2 * sa):
        for base in range(outer, outer + sa, 2 * sb):
            a0, a1 = re[base : base + sb], re[base + sb : base + 2 * sb]
            a2, a3 = re[base + sa : base + sa + sb], re[base + sa + sb : base + sa + 2 * sb]
            b0, b1 = lr[base : base + sb], lr[base + sb : base + 2 * sb]
            b2, b3 = lr[base + sa : base + sa + sb], lr[base + sa + sb : base + sa + 2 * sb]
            for t in range(sb):
                gb += b1[t] * a0[t] - b0[t] * a1[t] + b3[t] * a2[t] - b2[t] * a3[t]
                ga += b2[t] * a0[t] - b0[t] * a2[t] + b3[t] * a1[t] - b1[t] * a3[t]
    return ga, gb


@_pass
def _layer_apply(re, layer, params, sign, cs):
    """The layer's rotations on ``re`` (sign -1: their transposes, which un-apply them); two per pass where runs allow."""
    count, i = layer[0], 0
    while i < count:
        st, off = layer[1 + 2 * i], layer[2 + 2 * i]
        cs[0], cs[1] = math.cos(params[off] / 2), sign * math.sin(params[off] / 2)
        if i + 1 < count and layer[3 + 2 * i] >= PAIR_RUN:
            sb, ob = layer[3 + 2 * i], layer[4 + 2 * i]
            cs[2], cs[3] = math.cos(params[ob] / 2), sign * math.sin(params[ob] / 2)
            _ry_pair(re, st, sb, cs[0], cs[1], cs[2], cs[3])
            i += 2
        else:
            _ry_real(re, st, cs[0], cs[1])
            i += 1


@_pass
def _layer_grads(re, lr, layer, grad):
    """Every rotation's gradient in the layer from the state and adjoint after it (read-only passes, two per pass where runs allow)."""
    count, i = layer[0], 0
    while i < count:
        st, off = layer[1 + 2 * i], layer[2 + 2 * i]
        if i + 1 < count and layer[3 + 2 * i] >= PAIR_RUN:
            ga, gb = _ry_grad_pair(re, lr, st, layer[3 + 2 * i])
            grad[off] += ga
            grad[layer[4 + 2 * i]] += gb
            i += 2
        else:
            grad[off] += _ry_grad(re, lr, st)
            i += 1


# -- real state (RY + CNOT) ------------------------------------------------------------
@_kernel
def forward_real(ops, params, perms, mats, layers, n_qubits, probs, saves):
    """Final state of the program on |0...0> (real gates only); writes probabilities, returns the state.

    ``saves`` with a row per layer (2^n wide): the state after each ``LAYER`` op is kept there
    for :func:`backward_real_saved`; a (1, 1) array keeps nothing.
    """
    n = 1 << n_qubits
    keep = saves.shape[1] == n
    scratch = (np.zeros(n, dtype=params.dtype), np.empty(n, dtype=params.dtype))
    re, tmp = scratch
    row, which = -1, 0  # with ``keep``: the row of saves that re is (-1: none), and which scratch buffer it is otherwise
    cs = np.empty(4, dtype=re.dtype)  # coefficients in the state's dtype: mixed precision would not vectorise
    re[0] = 1
    for k in range(ops.shape[0]):
        kind, off = ops[k, 0], ops[k, 3]
        if kind == RY:
            cs[0], cs[1] = math.cos(params[off] / 2), math.sin(params[off] / 2)
            _ry_real(re, ops[k, 1], cs[0], cs[1])
        elif kind == LAYER:
            if keep and row != ops[k, 1]:  # the layer runs in its row of saves (a PERM before it gathered there)
                saves[ops[k, 1]] = re
                re, row = saves[ops[k, 1]], ops[k, 1]
            _layer_apply(re, layers[ops[k, 1]], params, 1.0, cs)
        elif kind == FIXED:
            m = mats[off]
            _fixed_real(re, ops[k, 1], m[0], m[2], m[4], m[6])
        elif keep:  # PERM, keeping states: gather into the next layer's row, or into a scratch buffer re is not
            if k + 1 < ops.shape[0] and ops[k + 1, 0] == LAYER:
                dst, row = saves[ops[k + 1, 1]], ops[k + 1, 1]
            else:
                which = 0 if row >= 0 else 1 - which
                dst, row = scratch[which], -1
            _gather(re, dst, perms[ops[k, 1]])
            re = dst
        else:
            _gather(re, tmp, perms[ops[k, 1]])
            re, tmp = tmp, re
    for i in range(n):
        probs[i] = re[i] * re[i]
    return re


@_kernel
def backward_real(ops, params, perms, inverse, mats, layers, saves, re, dy, grad):
    """Adjoint gradient of sum(dy * probs) w.r.t. ``params`` into ``grad``; ``re`` (the final state) is consumed."""
    lr = dy * re
    tmp_r = np.empty_like(re)
    tmp_l = np.empty_like(re)
    cs = np.empty(4, dtype=re.dtype)
    for k in range(ops.shape[0] - 1, -1, -1):
        kind, off = ops[k, 0], ops[k, 3]
        if kind == RY:
            st = ops[k, 1]
            grad[off] += _ry_grad(re, lr, st)
            cs[0], cs[1] = math.cos(params[off] / 2), -math.sin(params[off] / 2)  # RY(theta)^T = RY(-theta)
            _ry_real(re, st, cs[0], cs[1])
            _ry_real(lr, st, cs[0], cs[1])
        elif kind == LAYER:
            layer = layers[ops[k, 1]]
            _layer_grads(re, lr, layer, grad)
            _layer_apply(re, layer, params, -1.0, cs)
            _layer_apply(lr, layer, params, -1.0, cs)
        elif kind == FIXED:
            m = mats[off]
            _fixed_real(re, ops[k, 1], m[8], m[10], m[12], m[14])  # the inverse on the state
            _fixed_real(lr, ops[k, 1], m[0], m[4], m[2], m[6])  # the transpose on the adjoint
        else:
            _gather(re, tmp_r, inverse[ops[k, 1]])
            _gather(lr, tmp_l, inverse[ops[k, 1]])
            re, tmp_r = tmp_r, re
            lr, tmp_l = tmp_l, lr


@_kernel
def backward_real_saved(ops, params, perms, inverse, mats, layers, saves, re, dy, grad):
    """:func:`backward_real` for a program whose every rotation is in a ``LAYER`` op, with the state after each
    layer in ``saves`` (:func:`forward_real`): the state is read there, not un-applied, so only the adjoint is
    walked back (one pass in three fewer per rotation, and none for the state's permutations). ``re`` is only read."""
    lr = dy * re
    tmp_l = np.empty_like(re)
    cs = np.empty(4, dtype=re.dtype)
    for k in range(ops.shape[0] - 1, -1, -1):
        if ops[k, 0] == LAYER:
            layer = layers[ops[k, 1]]
            _layer_grads(saves[ops[k, 1]], lr, layer, grad)
            _layer_apply(lr, layer, params, -1.0, cs)
        else:  # PERM: only these and LAYER ops (the caller checks)
            _gather(lr, tmp_l, inverse[ops[k, 1]])
            lr, tmp_l = tmp_l, lr


# -- complex state ---------------------------------------------------------------------
@_helper
def _mul2(u, ar, ai, br, bi):
    """u (8 reals: 2x2 complex, row-major) times the pair (a, b)."""
    return (
        u[0] * ar - u[1] * ai + u[2] * br - u[3] * bi,
        u[0] * ai + u[1] * ar + u[2] * bi + u[3] * br,
        u[4] * ar - u[5] * ai + u[6] * br - u[7] * bi,
        u[4] * ai + u[5] * ar + u[6] * bi + u[7] * br,
    )


@_helper
def _apply_views(re, im, start, stop, step, run, partner, u):
    u0, u1, u2, u3, u4, u5, u6, u7 = u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7]
    w = (u0, u1, u2, u3, u4, u5, u6, u7)
    for base in range(start, stop, step):
        ar, ai = re[base : base + run], im[base : base + run]
        br, bi = re[base + partner : base + partner + run], im[base + partner : base + partner + run]
        for t in range(run):
            ar[t], ai[t], br[t], bi[t] = _mul2(w, ar[t], ai[t], br[t], bi[t])


@_helper
def _apply_const(re, im, st, u):
    w = (u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7])
    for base in range(uint64(0), uint64(re.shape[0]), st + st):
        for j in range(base, base + st):
            re[j], im[j], re[j + st], im[j + st] = _mul2(w, re[j], im[j], re[j + st], im[j + st])


@_helper
def _blend(f, new, old):
    """new where f = 1, old where f = 0 (branch-free, so the loop stays vectorised)."""
    return old + f * (new - old)


@_helper
def _mul2_masked(w, f, ar, ai, br, bi):
    p0r, p0i, p1r, p1i = _mul2(w, ar, ai, br, bi)
    return _blend(f, p0r, ar), _blend(f, p0i, ai), _blend(f, p1r, br), _blend(f, p1i, bi)


@_helper
def _apply_masked_views(re, im, st, cm, u):
    w = (u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7])
    one = re[0] * 0 + 1
    for base in range(0, re.shape[0], 2 * st):
        ar, ai = re[base : base + st], im[base : base + st]
        br, bi = re[base + st : base + 2 * st], im[base + st : base + 2 * st]
        for t in range(st):
            f = one if (base + t) & cm else one * 0
            ar[t], ai[t], br[t], bi[t] = _mul2_masked(w, f, ar[t], ai[t], br[t], bi[t])


@_helper
def _apply_masked_const(re, im, st, cm, u):
    w = (u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7])
    one = re[0] * 0 + 1
    for base in range(uint64(0), uint64(re.shape[0]), st + st):
        for j in range(base, base + st):
            f = one if j & cm else one * 0
            re[j], im[j], re[j + st], im[j + st] = _mul2_masked(w, f, re[j], im[j], re[j + st], im[j + st])


@_pass
def _apply_gate(re, im, sa, sb, controlled, u):
    n = re.shape[0]
    if not controlled:
        if sa == 1:
            _apply_const(re, im, uint64(1), u)
        elif sa == 2:
            _apply_const(re, im, uint64(2), u)
        elif sa == 4:
            _apply_const(re, im, uint64(4), u)
        else:
            _apply_views(re, im, 0, n, 2 * sa, sa, sa, u)
        return
    hi, lo = max(sa, sb), min(sa, sb)
    if lo < SHORT_RUN:  # runs too short to vectorise: a pass over all target pairs, blended on the control bit
        cm = uint64(sa)
        if sb == 1:
            _apply_masked_const(re, im, uint64(1), cm, u)
        elif sb == 2:
            _apply_masked_const(re, im, uint64(2), cm, u)
        elif sb == 4:
            _apply_masked_const(re, im, uint64(4), cm, u)
        else:
            _apply_masked_views(re, im, sb, sa, u)
        return
    for outer in range(0, n, 2 * hi):
        _apply_views(re, im, outer + sa, outer + hi + (hi if sa == hi else 0), 2 * lo, lo, sb, u)


@_helper
def _overlap(l0r, l0i, l1r, l1i, p0r, p0i, p1r, p1i):
    """The 8 reals of conj(l_a) psi_c for a, c in {0, 1} (row-major)."""
    return (
        l0r * p0r + l0i * p0i, l0r * p0i - l0i * p0r, l0r * p1r + l0i * p1i, l0r * p1i - l0i * p1r,
        l1r * p0r + l1i * p0i, l1r * p0i - l1i * p0r, l1r * p1r + l1i * p1i, l1r * p1i - l1i * p1r,
    )  # fmt: skip


@_helper
def _add8(acc, m, f):
    """acc + f * m for 8-tuples (f = 1, or 0 for a pair outside a controlled gate's subspace)."""
    return (
        acc[0] + f * m[0], acc[1] + f * m[1], acc[2] + f * m[2], acc[3] + f * m[3],
        acc[4] + f * m[4], acc[5] + f * m[5], acc[6] + f * m[6], acc[7] + f * m[7],
    )  # fmt: skip


@_helper
def _overlap_views(re, im, lr, li, start, stop, step, run, partner, z):
    acc = (z, z, z, z, z, z, z, z)
    one = z + 1
    for base in range(start, stop, step):
        ar, ai = re[base : base + run], im[base : base + run]
        br, bi = re[base + partner : base + partner + run], im[base + partner : base + partner + run]
        xr, xi = lr[base : base + run], li[base : base + run]
        yr, yi = lr[base + partner : base + partner + run], li[base + partner : base + partner + run]
        for t in range(run):
            m = _overlap(xr[t], xi[t], yr[t], yi[t], ar[t], ai[t], br[t], bi[t])
            acc = _add8(acc, m, one)
    return acc


@_helper
def _overlap_const(re, im, lr, li, st, z):
    acc = (z, z, z, z, z, z, z, z)
    one = z + 1
    for base in range(uint64(0), uint64(re.shape[0]), st + st):
        for j in range(base, base + st):
            k = j + st
            m = _overlap(lr[j], li[j], lr[k], li[k], re[j], im[j], re[k], im[k])
            acc = _add8(acc, m, one)
    return acc


@_helper
def _overlap_masked_views(re, im, lr, li, st, cm, z):
    acc = (z, z, z, z, z, z, z, z)
    one = z + 1
    for base in range(0, re.shape[0], 2 * st):
        ar, ai = re[base : base + st], im[base : base + st]
        br, bi = re[base + st : base + 2 * st], im[base + st : base + 2 * st]
        xr, xi = lr[base : base + st], li[base : base + st]
        yr, yi = lr[base + st : base + 2 * st], li[base + st : base + 2 * st]
        for t in range(st):
            f = one if (base + t) & cm else z
            m = _overlap(xr[t], xi[t], yr[t], yi[t], ar[t], ai[t], br[t], bi[t])
            acc = _add8(acc, m, f)
    return acc


@_helper
def _overlap_masked_const(re, im, lr, li, st, cm, z):
    acc = (z, z, z, z, z, z, z, z)
    one = z + 1
    for base in range(uint64(0), uint64(re.shape[0]), st + st):
        for j in range(base, base + st):
            k = j + st
            f = one if j & cm else z
            m = _overlap(lr[j], li[j], lr[k], li[k], re[j], im[j], re[k], im[k])
            acc = _add8(acc, m, f)
    return acc


@_pass
def _overlap_gate(re, im, lr, li, sa, sb, controlled):
    """N_ac = sum conj(l_a) psi_c over the pairs a gate touches (state and adjoint after the gate); read-only."""
    n = re.shape[0]
    z = re[0] * 0
    if not controlled:
        if sa == 1:
            return _overlap_const(re, im, lr, li, uint64(1), z)
        if sa == 2:
            return _overlap_const(re, im, lr, li, uint64(2), z)
        if sa == 4:
            return _overlap_const(re, im, lr, li, uint64(4), z)
        return _overlap_views(re, im, lr, li, 0, n, 2 * sa, sa, sa, z)
    hi, lo = max(sa, sb), min(sa, sb)
    if lo < SHORT_RUN:
        cm = uint64(sa)
        if sb == 1:
            return _overlap_masked_const(re, im, lr, li, uint64(1), cm, z)
        if sb == 2:
            return _overlap_masked_const(re, im, lr, li, uint64(2), cm, z)
        if sb == 4:
            return _overlap_masked_const(re, im, lr, li, uint64(4), cm, z)
        return _overlap_masked_views(re, im, lr, li, sb, sa, z)
    acc = (z, z, z, z, z, z, z, z)
    for outer in range(0, n, 2 * hi):
        m = _overlap_views(re, im, lr, li, outer + sa, outer + hi + (hi if sa == hi else 0), 2 * lo, lo, sb, z)
        acc = _add8(acc, m, z + 1)
    return acc


@_helper
def _times_vt(nm, v):
    """M = N V^T (2x2 complex, 8 reals each): M_ab = sum_c N_ac V_bc, i.e. conj(l_a) (V psi)_b summed."""
    n0r, n0i, n1r, n1i, n2r, n2i, n3r, n3i = nm  # N00, N01, N10, N11
    v0r, v0i, v1r, v1i, v2r, v2i, v3r, v3i = v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
    return (
        n0r * v0r - n0i * v0i + n1r * v1r - n1i * v1i, n0r * v0i + n0i * v0r + n1r * v1i + n1i * v1r,
        n0r * v2r - n0i * v2i + n1r * v3r - n1i * v3i, n0r * v2i + n0i * v2r + n1r * v3i + n1i * v3r,
        n2r * v0r - n2i * v0i + n3r * v1r - n3i * v1i, n2r * v0i + n2i * v0r + n3r * v1i + n3i * v1r,
        n2r * v2r - n2i * v2i + n3r * v3r - n3i * v3i, n2r * v2i + n2i * v2r + n3r * v3i + n3i * v3r,
    )  # fmt: skip


@_helper
def _matrix(kind, params, off, u):
    """Writes U of an RY/U3/CU3 op into ``u``: 8 reals (row-major, (re, im) per entry), the state's dtype."""
    if kind == RY:
        th = params[off]
        c, s = math.cos(th / 2), math.sin(th / 2)
        u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7] = c, 0, -s, 0, s, 0, c, 0
        return
    c, s, cp, sp, cl, sl, cpl, spl = _u3_entries(params, off)
    u[0], u[1], u[2], u[3] = c, 0, -cl * s, -sl * s
    u[4], u[5], u[6], u[7] = cp * s, sp * s, cpl * c, spl * c


@_helper
def _dagger(u, v):
    v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7] = u[0], -u[1], u[4], -u[5], u[2], -u[3], u[6], -u[7]


@_helper
def _re_trace(d, m):
    """Re sum_ab d_ab M_ab for 2x2 complex d and M given as 8 reals each."""
    out = 0.0
    for i in range(0, 8, 2):
        out += d[i] * m[i] - d[i + 1] * m[i + 1]
    return out


@_kernel
def forward_complex(ops, params, perms, mats, layers, n_qubits, probs, saves):
    """Final state (re, im) of the program on |0...0>; writes probabilities."""
    n = 1 << n_qubits
    re = np.zeros(n, dtype=params.dtype)
    im = np.zeros(n, dtype=params.dtype)
    tr, ti = np.empty_like(re), np.empty_like(re)
    u = np.empty(8, dtype=re.dtype)
    re[0] = 1
    for k in range(ops.shape[0]):
        kind, sa, sb, off = ops[k, 0], ops[k, 1], ops[k, 2], ops[k, 3]
        if kind == PERM:
            _gather_pair(re, im, tr, ti, perms[ops[k, 1]])
            re, tr = tr, re
            im, ti = ti, im
        elif kind == FIXED:
            _apply_gate(re, im, sa, 0, False, mats[off, :8])
        else:
            _matrix(kind, params, off, u)
            _apply_gate(re, im, sa, sb, kind == CU3, u)
    for i in range(n):
        probs[i] = re[i] * re[i] + im[i] * im[i]
    return re, im


@_kernel
def backward_complex(ops, params, perms, inverse, mats, layers, saves, re, im, dy, grad):
    """Adjoint gradient of sum(dy * probs) into ``grad``; the final state (re, im) is consumed."""
    lr = dy * re
    li = dy * im
    tr, ti, tlr, tli = np.empty_like(re), np.empty_like(re), np.empty_like(re), np.empty_like(re)
    u = np.empty(8, dtype=re.dtype)
    v = np.empty(8, dtype=re.dtype)
    for k in range(ops.shape[0] - 1, -1, -1):
        kind, sa, sb, off = ops[k, 0], ops[k, 1], ops[k, 2], ops[k, 3]
        if kind == PERM:
            _gather_pair(re, im, tr, ti, inverse[ops[k, 1]])
            _gather_pair(lr, li, tlr, tli, inverse[ops[k, 1]])
            re, tr, im, ti = tr, re, ti, im
            lr, tlr, li, tli = tlr, lr, tli, li
            continue
        if kind == FIXED:
            _apply_gate(re, im, sa, 0, False, mats[off, 8:])
            _dagger(mats[off, :8], v)
            _apply_gate(lr, li, sa, 0, False, v)
            continue
        controlled = kind == CU3
        _matrix(kind, params, off, u)
        _dagger(u, v)
        # M_ab = sum conj(l_a) psi_before_b with psi_before = U^dagger psi_after: from one read-only pass
        m = _times_vt(_overlap_gate(re, im, lr, li, sa, sb, controlled), v)
        _apply_gate(re, im, sa, sb, controlled, v)
        _apply_gate(lr, li, sa, sb, controlled, v)
        if kind == RY:
            th = params[off]
            c, s = math.cos(th / 2) / 2, math.sin(th / 2) / 2
            grad[off] += 2 * _re_trace((-s, 0.0, -c, 0.0, c, 0.0, -s, 0.0), m)
            continue
        c, s, cp, sp, cl, sl, cpl, spl = _u3_entries(params, off)
        h = 0.5
        d_theta = (-h * s, 0.0, -h * cl * c, -h * sl * c, h * cp * c, h * sp * c, -h * cpl * s, -h * spl * s)
        d_phi = (0.0, 0.0, 0.0, 0.0, -sp * s, cp * s, -spl * c, cpl * c)
        d_lam = (0.0, 0.0, sl * s, -cl * s, 0.0, 0.0, -spl * c, cpl * c)
        grad[off] += 2 * _re_trace(d_theta, m)
        grad[off + 1] += 2 * _re_trace(d_phi, m)
        grad[off + 2] += 2 * _re_trace(d_lam, m)
