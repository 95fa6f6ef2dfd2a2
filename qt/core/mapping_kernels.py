"""Compiled (numba) forward and backward of :class:`qt.core.mapping.TensorScale` on CPU.

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

Kernels are cached on disk as :mod:`qt.core.quantum.fused_kernels`' are (same settings).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from qt.core.quantum.fused_kernels import CACHE


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
