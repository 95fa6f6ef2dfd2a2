"""Compiled (numba) kernels of the mapping on CPU: :class:`qt.core.mapping.TensorScale`'s forward and backward (this
docstring), and the MLP mapping over every basis state (``mlp_apply``, ``mlp_gradients``: the comment above them).

The per-tensor scale of the generated weights is a dozen gathers and segment sums over the
M weights (unit means, column means, per-tensor variance, the affine map). As torch ops
each is a dispatch plus a pass over memory, forward and backward (~0.4 ms a step at
``cnn_qtt``'s 6,690 weights); here each direction is one call. Every tensor is a contiguous
(units, fan-in) block of the flat vector (``layout`` rows: start, units, fan-in), so each
mean is a contiguous, vectorisable loop. Sums accumulate in float64. The gradient is
written out: with z = P w (P the unit, then column, centring: symmetric projections),
sigma_t = sqrt(var_t + eps) and out = z a_t + offset_t, a_t = gain_t / sigma_t,

    dL/dgain_t = sum_t g z / sigma_t,
    dL/dz      = a_t g - (gain_t sum_t g z / sigma_t^3) z / n_t,
    dL/dw      = P^T dL/dz   (column centring, then unit centring).

Kernels are cached on disk as :mod:`qt.core.quantum.backends.fused_kernels`' are (same settings).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from qt.core.quantum.backends.fused_kernels import CACHE


def _kernel(fn):
    return njit(cache=CACHE, nogil=True, fastmath={"reassoc", "contract", "nsz"})(fn)


@_kernel
def _center_rows(block, units, fan):
    for r in range(units):
        row = block[r * fan : (r + 1) * fan]
        acc = 0.0
        for j in range(fan):
            acc += row[j]
        mean = acc / fan
        for j in range(fan):
            row[j] -= mean


@_kernel
def _center_columns(block, units, fan):
    col = np.zeros(fan)
    for r in range(units):
        row = block[r * fan : (r + 1) * fan]
        for j in range(fan):
            col[j] += row[j]
    for j in range(fan):
        col[j] /= units
    for r in range(units):
        row = block[r * fan : (r + 1) * fan]
        for j in range(fan):
            row[j] -= col[j]


@_kernel
def _center(x, layout, columns, rows_first):
    """Each tensor's block of ``x`` minus its units' (rows') means and (``columns``, several units) its columns' means:
    rows first (P, the forward), or columns first (P^T, the gradient: each centring is a symmetric projection)."""
    for t in range(layout.shape[0]):
        start, units, fan = layout[t, 0], layout[t, 1], layout[t, 2]
        block = x[start : start + units * fan]
        if rows_first:
            _center_rows(block, units, fan)
        if columns and units > 1:
            _center_columns(block, units, fan)
        if not rows_first:
            _center_rows(block, units, fan)


@_kernel
def scale_forward(w, layout, columns, gain, offset, eps, z, sigma, out):
    """out = z * gain / sigma + offset per tensor, with z the centred weights (into ``z``) and sigma (into ``sigma``)."""
    z[:] = w
    _center(z, layout, columns, True)
    for t in range(layout.shape[0]):
        start, size = layout[t, 0], layout[t, 1] * layout[t, 2]
        zt, ot = z[start : start + size], out[start : start + size]
        var = 0.0
        for i in range(size):
            var += zt[i] * zt[i]
        sigma[t] = math.sqrt(var / size + eps)
        a, b = zt[0] * 0 + gain[t] / sigma[t], zt[0] * 0 + offset[t]
        for i in range(size):
            ot[i] = zt[i] * a + b


@_kernel
def scale_backward(g, z, sigma, layout, columns, gain, dw, dgain):
    """dw (the weights' gradient) and dgain (the gains') from the output gradient ``g``."""
    for t in range(layout.shape[0]):
        start, size = layout[t, 0], layout[t, 1] * layout[t, 2]
        gt, zt, dt = g[start : start + size], z[start : start + size], dw[start : start + size]
        sgz = 0.0
        for i in range(size):
            sgz += gt[i] * zt[i]
        dgain[t] = sgz / sigma[t]
        a = zt[0] * 0 + gain[t] / sigma[t]
        c = zt[0] * 0 + gain[t] * sgz / sigma[t] ** 3 / size
        for i in range(size):
            dt[i] = gt[i] * a - c * zt[i]
    _center(dw, layout, columns, False)


# ---------------------------------------------------------------------------------------------------------------------
# The MLP mapping over every basis state, fused (:class:`qt.core.mapping.MLPMapping` from FUSED_ROWS rows on CPU).
#
# Row i of the mapping's input is [bits(i), x_i]; the network is Linear -> act -> ... -> Linear. Torch runs it as a
# chain of thin GEMMs over (rows, width) activations that it writes, keeps and re-reads (memory-bound). Here rows go
# through in blocks of BLOCK (a power of two, aligned): every layer of a block stays in L1/L2, nothing is kept between
# forward and backward (the backward recomputes the block's forward), and the inner loops run over the block's rows,
# contiguous, so they vectorise. The first layer is separable over the index bits: with i = hi * BLOCK + r, its
# pre-activation is  b + sum_{high bits} W[:, q] v(bit) (one vector per block) + T[:, r] (a table over r in the block,
# built once) + W[:, n] x_i. Its bit columns' gradient follows the same split: per block, the sum of the deltas times
# the high bits; over all blocks, the deltas summed per r (the table G), times the low bits, once at the end.
# Gradients of the weights are summed per block in the working dtype, then in float64 per group of blocks; groups
# are a fixed partition of the blocks (not of the threads), reduced in a fixed order: the same bits on any thread count.
# ---------------------------------------------------------------------------------------------------------------------

#: rows per block (a power of two)
BLOCK = 256
#: fixed partition of the blocks for the threaded loops and the deterministic reduction
GROUPS = 16
ACTIVATION_CODES = {"relu": 0, "tanh": 1, "gelu": 2, "silu": 3, "none": 4}
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@_kernel
def _activate(a, h, count, code):
    """h = act(a) over the first ``count`` entries."""
    zero = a.dtype.type(0)
    if code == 0:
        for r in range(count):
            h[r] = a[r] if a[r] > 0 else zero
    elif code == 1:
        for r in range(count):
            h[r] = math.tanh(a[r])
    elif code == 2:
        for r in range(count):
            h[r] = 0.5 * a[r] * (1.0 + math.erf(a[r] * _INV_SQRT2))
    elif code == 3:
        for r in range(count):
            h[r] = a[r] / (1.0 + math.exp(-a[r]))
    else:
        for r in range(count):
            h[r] = a[r]


@_kernel
def _activate_grad(a, h, d, count, code):
    """d *= act'(a) over the first ``count`` entries (h = act(a))."""
    zero, one = d.dtype.type(0), d.dtype.type(1)
    if code == 0:
        for r in range(count):
            d[r] = d[r] if a[r] > 0 else zero
    elif code == 1:
        for r in range(count):
            d[r] *= one - h[r] * h[r]
    elif code == 2:
        for r in range(count):
            cdf = 0.5 * (1.0 + math.erf(a[r] * _INV_SQRT2))
            d[r] *= cdf + a[r] * _INV_SQRT_2PI * math.exp(-0.5 * a[r] * a[r])
    elif code == 3:
        for r in range(count):
            s = 1.0 / (1.0 + math.exp(-a[r]))
            d[r] *= s * (1.0 + a[r] * (1.0 - s))


@_kernel
def _low_bits(rows):
    low = 0
    while (1 << low) < rows:
        low += 1
    return low


@_kernel
def bits_table(n, rows, widths, params, v0, v1, tlo):
    """tlo[j, r] = sum over the low bits q (those that vary inside a block of ``rows``) of W0[j, q] v(bit q of r)."""
    woff, _, _ = _layout(widths, rows)
    fan, low = widths[0], _low_bits(rows)
    for j in range(widths[1]):
        for r in range(rows):
            acc = params.dtype.type(0)
            for q in range(n - low, n):
                acc += params[woff[0] + j * fan + q] * (v1 if (r >> (n - 1 - q)) & 1 else v0)
            tlo[j * rows + r] = acc


@_kernel
def _linear(params, w0, step, fin, src, rows, count, zj, init):
    """zj[:count] = init + sum_k W_k src[k * rows + r], W_k = params[w0 + k * step] (a weight row: step 1; a column of
    the matrix, for the transposed product: step = its fan-in); four inputs per pass over zj (fewer loads and
    stores per multiply-add), the first pass writing what the others add to."""
    k = 0
    if fin >= 4:
        a0, a1, a2, a3 = params[w0], params[w0 + step], params[w0 + 2 * step], params[w0 + 3 * step]
        s0, s1, s2, s3 = src[0:rows], src[rows : 2 * rows], src[2 * rows : 3 * rows], src[3 * rows : 4 * rows]
        for r in range(count):
            zj[r] = init + a0 * s0[r] + a1 * s1[r] + a2 * s2[r] + a3 * s3[r]
        k = 4
    else:
        for r in range(count):
            zj[r] = init
    while k + 4 <= fin:
        a0, a1, a2, a3 = params[w0 + k * step], params[w0 + (k + 1) * step], params[w0 + (k + 2) * step], params[w0 + (k + 3) * step]
        o = k * rows
        s0, s1 = src[o : o + rows], src[o + rows : o + 2 * rows]
        s2, s3 = src[o + 2 * rows : o + 3 * rows], src[o + 3 * rows : o + 4 * rows]
        for r in range(count):
            zj[r] += a0 * s0[r] + a1 * s1[r] + a2 * s2[r] + a3 * s3[r]
        k += 4
    while k < fin:
        a0 = params[w0 + k * step]
        sk = src[k * rows : (k + 1) * rows]
        for r in range(count):
            zj[r] += a0 * sk[r]
        k += 1


@_kernel
def _linear2(params, wa, wb, step, fin, src, rows, count, za, zb, ia, ib):
    """:func:`_linear` for two outputs at once (weights at ``wa`` and ``wb``, initial values ia and ib): each input
    read once for both."""
    k = 0
    if fin >= 4:
        a0, a1, a2, a3 = params[wa], params[wa + step], params[wa + 2 * step], params[wa + 3 * step]
        b0, b1, b2, b3 = params[wb], params[wb + step], params[wb + 2 * step], params[wb + 3 * step]
        s0, s1, s2, s3 = src[0:rows], src[rows : 2 * rows], src[2 * rows : 3 * rows], src[3 * rows : 4 * rows]
        for r in range(count):
            v0, v1, v2, v3 = s0[r], s1[r], s2[r], s3[r]
            za[r] = ia + a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
            zb[r] = ib + b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3
        k = 4
    else:
        for r in range(count):
            za[r] = ia
            zb[r] = ib
    while k + 4 <= fin:
        a0, a1, a2, a3 = params[wa + k * step], params[wa + (k + 1) * step], params[wa + (k + 2) * step], params[wa + (k + 3) * step]
        b0, b1, b2, b3 = params[wb + k * step], params[wb + (k + 1) * step], params[wb + (k + 2) * step], params[wb + (k + 3) * step]
        o = k * rows
        s0, s1 = src[o : o + rows], src[o + rows : o + 2 * rows]
        s2, s3 = src[o + 2 * rows : o + 3 * rows], src[o + 3 * rows : o + 4 * rows]
        for r in range(count):
            v0, v1, v2, v3 = s0[r], s1[r], s2[r], s3[r]
            za[r] += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
            zb[r] += b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3
        k += 4
    while k < fin:
        a0, b0 = params[wa + k * step], params[wb + k * step]
        sk = src[k * rows : (k + 1) * rows]
        for r in range(count):
            za[r] += a0 * sk[r]
            zb[r] += b0 * sk[r]
        k += 1


@_kernel
def _outer(dj, src, fin, rows, count, acc, at):
    """acc[at + k] += sum_r dj[r] src[k * rows + r] for k < fin (a weight row's gradient), four k per pass over dj."""
    k = 0
    while k + 4 <= fin:
        o = k * rows
        s0, s1 = src[o : o + rows], src[o + rows : o + 2 * rows]
        s2, s3 = src[o + 2 * rows : o + 3 * rows], src[o + 3 * rows : o + 4 * rows]
        t0 = t1 = t2 = t3 = dj.dtype.type(0)
        for r in range(count):
            t0 += dj[r] * s0[r]
            t1 += dj[r] * s1[r]
            t2 += dj[r] * s2[r]
            t3 += dj[r] * s3[r]
        acc[at + k] += t0
        acc[at + k + 1] += t1
        acc[at + k + 2] += t2
        acc[at + k + 3] += t3
        k += 4
    while k < fin:
        sk = src[k * rows : (k + 1) * rows]
        t0 = dj.dtype.type(0)
        for r in range(count):
            t0 += dj[r] * sk[r]
        acc[at + k] += t0
        k += 1


@_kernel
def _block_forward(x, start, count, n, rows, widths, woff, boff, params, code, v0, v1, tlo, z, h, zoff):
    """Pre-activations (into ``z``) and activations (into ``h``) of every layer for the rows start..start+count-1;
    Linear l's unit j at z[zoff[l] + j * rows : ...]; the last Linear's pre-activations are the outputs."""
    layers = widths.shape[0] - 1
    fan, low = widths[0], _low_bits(rows)
    hi = start >> low
    xs = x[start : start + count]
    for j in range(widths[1]):
        base = params[boff[0] + j]
        for q in range(n - low):
            base += params[woff[0] + j * fan + q] * (v1 if (hi >> (n - low - 1 - q)) & 1 else v0)
        wx = params[woff[0] + j * fan + n]
        zj, tj = z[zoff[0] + j * rows : zoff[0] + (j + 1) * rows], tlo[j * rows : (j + 1) * rows]
        for r in range(count):
            zj[r] = base + tj[r] + wx * xs[r]
    for l in range(1, layers):
        fin, fout, src = widths[l], widths[l + 1], zoff[l - 1]
        for k in range(fin):
            o = src + k * rows
            _activate(z[o : o + rows], h[o : o + rows], count, code)
        j = 0
        while j + 2 <= fout:
            za, zb = z[zoff[l] + j * rows : zoff[l] + (j + 1) * rows], z[zoff[l] + (j + 1) * rows : zoff[l] + (j + 2) * rows]
            wa, bj = woff[l] + j * fin, boff[l] + j
            _linear2(params, wa, wa + fin, 1, fin, h[src : src + fin * rows], rows, count, za, zb, params[bj], params[bj + 1])
            j += 2
        if j < fout:
            zj = z[zoff[l] + j * rows : zoff[l] + (j + 1) * rows]
            _linear(params, woff[l] + j * fin, 1, fin, h[src : src + fin * rows], rows, count, zj, params[boff[l] + j])


@_kernel
def _layout(widths, rows):
    """Offsets of each Linear's weight matrix and bias in the flat parameter vector (torch's order: W0, b0, W1, ...),
    and of each Linear's outputs in a block's buffers."""
    layers = widths.shape[0] - 1
    woff, boff, zoff = np.empty(layers, np.int64), np.empty(layers, np.int64), np.empty(layers + 1, np.int64)
    p, o = 0, 0
    for l in range(layers):
        woff[l] = p
        p += widths[l] * widths[l + 1]
        boff[l] = p
        p += widths[l + 1]
        zoff[l] = o
        o += widths[l + 1] * rows
    zoff[layers] = o
    return woff, boff, zoff


@_kernel
def mlp_forward(x, n, rows, widths, params, code, v0, v1, tlo, out, first, stop, groups):
    """out[i, :] = the MLP on [bits(i), x_i] for the rows i < len(x) of the groups first..stop-1 of ``groups``;
    ``rows``: the block (a power of two, at most 2^n); ``tlo``: :func:`bits_table`'s."""
    count_all = x.shape[0]
    woff, boff, zoff = _layout(widths, rows)
    layers = widths.shape[0] - 1
    blocks = (count_all + rows - 1) // rows
    fout, last = widths[layers], zoff[layers - 1]
    for g in range(first, stop):
        z, h = np.empty(zoff[layers], x.dtype), np.empty(zoff[layers], x.dtype)
        for blk in range(g * blocks // groups, (g + 1) * blocks // groups):
            start = blk * rows
            count = min(rows, count_all - start)
            _block_forward(x, start, count, n, rows, widths, woff, boff, params, code, v0, v1, tlo, z, h, zoff)
            for r in range(count):
                for j in range(fout):
                    out[start + r, j] = z[last + j * rows + r]


@_kernel
def _hidden_backward(fin, fout, src, dst, wat, bat, params, rows, count, code, z, h, d, mine):
    """A Linear above the first (fin -> fout; its weights at ``wat``, bias at ``bat``; its input's buffers at ``src``,
    its deltas at ``dst``): its weights' and bias's gradients into ``mine``, the deltas below it (W^T d, two at a
    time, times act') into d at ``src``."""
    for j in range(fout):
        dj = d[dst + j * rows : dst + (j + 1) * rows]
        sb = dj.dtype.type(0)
        for r in range(count):
            sb += dj[r]
        mine[bat + j] += sb
        _outer(dj, h[src : src + fin * rows], fin, rows, count, mine, wat + j * fin)
    below, zero = d[src : src + fin * rows], d.dtype.type(0)
    k = 0
    while k + 2 <= fin:
        dka, dkb = below[k * rows : (k + 1) * rows], below[(k + 1) * rows : (k + 2) * rows]
        _linear2(params, wat + k, wat + k + 1, fin, fout, d[dst : dst + fout * rows], rows, count, dka, dkb, zero, zero)
        k += 2
    if k < fin:
        _linear(params, wat + k, fin, fout, d[dst : dst + fout * rows], rows, count, below[k * rows : (k + 1) * rows], zero)
    for k in range(fin):
        o = src + k * rows
        _activate_grad(z[o : o + rows], h[o : o + rows], d[o : o + rows], count, code)


@_kernel
def _first_backward(x, start, count, n, rows, widths, params, v0, v1, wat, bat, d, mine, tab, dxs, dx):
    """The first Linear of a block (its deltas at the start of d): bias, x column and high bits into ``mine``, the
    deltas summed per row into ``tab`` (the low bits, at the end), and x's gradient into dx."""
    fan, low = widths[0], _low_bits(rows)
    hi = start >> low
    xs = x[start : start + count]
    for r in range(count):
        dxs[r] = 0
    for j in range(widths[1]):
        dj = d[j * rows : (j + 1) * rows]
        sb = sx = dj.dtype.type(0)
        tj = tab[j * rows : (j + 1) * rows]
        wx = params[wat + j * fan + n]
        for r in range(count):
            v = dj[r]
            sb += v
            sx += v * xs[r]
            tj[r] += v
            dxs[r] += wx * v
        mine[bat + j] += sb
        mine[wat + j * fan + n] += sx
        for q in range(n - low):
            mine[wat + j * fan + q] += sb * (v1 if (hi >> (n - low - 1 - q)) & 1 else v0)
    for r in range(count):
        dx[start + r] = dxs[r]


@_kernel
def mlp_backward(x, g, n, rows, widths, params, code, v0, v1, tlo, dx, acc, table, first, stop, groups):
    """dx (the inputs x's gradient) from the outputs' gradient g (len(x), K) for the rows of the groups first..stop-1,
    recomputing each block's forward; each group's parameter gradient (float64) into acc[group] and its first
    Linear's deltas summed per row of a block into table[group] (:func:`mlp_reduce` finishes both)."""
    count_all = x.shape[0]
    woff, boff, zoff = _layout(widths, rows)
    layers = widths.shape[0] - 1
    blocks = (count_all + rows - 1) // rows
    for gi in range(first, stop):
        z, h, d = np.empty(zoff[layers], x.dtype), np.empty(zoff[layers], x.dtype), np.empty(zoff[layers], x.dtype)
        dxs = np.empty(rows, x.dtype)
        mine, tab = acc[gi], table[gi]
        for blk in range(gi * blocks // groups, (gi + 1) * blocks // groups):
            start = blk * rows
            count = min(rows, count_all - start)
            _block_forward(x, start, count, n, rows, widths, woff, boff, params, code, v0, v1, tlo, z, h, zoff)
            top = zoff[layers - 1]
            for j in range(widths[layers]):
                dj = d[top + j * rows : top + (j + 1) * rows]
                for r in range(count):
                    dj[r] = g[start + r, j]
            for l in range(layers - 1, 0, -1):
                _hidden_backward(widths[l], widths[l + 1], zoff[l - 1], zoff[l], woff[l], boff[l], params, rows, count, code, z, h, d, mine)
            _first_backward(x, start, count, n, rows, widths, params, v0, v1, woff[0], boff[0], d, mine, tab, dxs, dx)


@_kernel
def mlp_reduce(n, rows, widths, v0, v1, acc, table, dparams):
    """dparams += the groups' parameter gradients and the first Linear's low-bit columns from their tables, summed
    in the groups' order (the same on any thread count)."""
    woff, _, _ = _layout(widths, rows)
    fan, out0, low = widths[0], widths[1], _low_bits(rows)
    for gi in range(acc.shape[0]):
        for p in range(acc.shape[1]):
            dparams[p] += acc[gi, p]
    for gi in range(1, acc.shape[0]):
        for e in range(out0 * rows):
            table[0, e] += table[gi, e]
    for j in range(out0):
        for q in range(n - low, n):
            s = 0.0
            for r in range(rows):
                s += table[0, j * rows + r] * (v1 if (r >> (n - 1 - q)) & 1 else v0)
            dparams[woff[0] + j * fan + q] += s


_POOL: list = []  # [(pid, executor)]
#: rows per thread from which a second thread pays (docs/performance.md, "The fused mapping": below, a woken pool
#: thread costs more than it saves on this machine)
THREAD_ROWS = 2**18


def _spread(kernel, groups: int, n_rows: int, *args) -> None:
    """``kernel(*args, first, stop, groups)`` over the groups 0..groups-1, split across as many threads as torch is
    given (``trainer.threads``; the kernels release the GIL), one per THREAD_ROWS rows at most; each group's result
    does not depend on the split."""
    import torch

    threads = max(1, min(torch.get_num_threads(), groups, n_rows // THREAD_ROWS))
    if threads == 1:
        kernel(*args, 0, groups, groups)
        return
    if not _POOL or _POOL[0][0] != os.getpid():  # none yet, or made before a fork: its threads are not in this process
        _POOL[:] = [(os.getpid(), ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="qt-mapping"))]
    bounds = [groups * t // threads for t in range(threads + 1)]
    futures = [_POOL[0][1].submit(kernel, *args, bounds[t], bounds[t + 1], groups) for t in range(1, threads)]
    kernel(*args, bounds[0], bounds[1], groups)
    for f in futures:
        f.result()


def _plan(n_rows: int, n: int, widths: np.ndarray, params: np.ndarray, v0, v1) -> tuple[int, int, np.ndarray]:
    """(block rows, groups, the first Linear's low-bit table) for ``n_rows`` rows of an n-qubit mapping."""
    rows = min(BLOCK, 2**n)
    tlo = np.empty(int(widths[1]) * rows, params.dtype)
    bits_table(n, rows, widths, params, v0, v1, tlo)
    return rows, min(GROUPS, -(-n_rows // rows)), tlo


def mlp_apply(x: np.ndarray, n: int, widths: np.ndarray, params: np.ndarray, code: int, v0, v1) -> np.ndarray:
    """The MLP (``widths``: its layers' widths, n + 1 first; ``params``: torch's weights and biases in order, flat;
    ``code``: its activation's, :data:`ACTIVATION_CODES`) on the rows [bits(i), x_i], a bit entering as v0 or v1 (of
    x's dtype): (len(x), widths[-1])."""
    rows, groups, tlo = _plan(x.shape[0], n, widths, params, v0, v1)
    out = np.empty((x.shape[0], int(widths[-1])), x.dtype)
    _spread(mlp_forward, groups, x.shape[0], x, n, rows, widths, params, code, v0, v1, tlo, out)
    return out


def mlp_gradients(x: np.ndarray, g: np.ndarray, n: int, widths: np.ndarray, params: np.ndarray, code: int, v0, v1) -> tuple[np.ndarray, np.ndarray]:
    """(dL/dx, dL/dparams in float64) of :func:`mlp_apply` from dL/dout ``g``."""
    rows, groups, tlo = _plan(x.shape[0], n, widths, params, v0, v1)
    dx, dparams = np.empty_like(x), np.zeros(params.shape[0])
    acc, table = np.zeros((groups, params.shape[0])), np.zeros((groups, int(widths[1]) * rows))
    _spread(mlp_backward, groups, x.shape[0], x, g, n, rows, widths, params, code, v0, v1, tlo, dx, acc, table)
    mlp_reduce(n, rows, widths, v0, v1, acc, table, dparams)
    return dx, dparams


_WARM: set = set()


def warm_mlp(dtype: np.dtype) -> None:
    """Load (or compile) the MLP kernels for ``dtype`` now, once per process: before training, not in its first step
    (as :func:`qt.core.quantum.backends.fused.warm_kernels`)."""
    dtype = np.dtype(dtype)
    if dtype in _WARM:
        return
    x, widths, params, one, zero = np.zeros(2, dtype), np.array([2, 1], np.int64), np.zeros(3, dtype), dtype.type(1), dtype.type(0)
    mlp_gradients(x, mlp_apply(x, 1, widths, params, 0, zero, one), 1, widths, params, 0, zero, one)
    _WARM.add(dtype)
