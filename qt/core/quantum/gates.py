"""Batched gate matrices in torch (PennyLane's conventions).

Every function takes angle tensors of any leading shape; :func:`matrix` is the entry point the torch simulators
use (the fused kernels build the same matrices in numba, :mod:`qt.core.quantum.backends.fused_kernels`).
"""

from __future__ import annotations

import torch


def ry(theta: torch.Tensor) -> torch.Tensor:
    """RY(theta) = [[cos t/2, -sin t/2], [sin t/2, cos t/2]] (real)."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def u3(theta: torch.Tensor, phi: torch.Tensor, lam: torch.Tensor, complex_dtype: torch.dtype) -> torch.Tensor:
    """U3(theta, phi, lambda) = [[cos t/2, -e^{i l} sin t/2], [e^{i p} sin t/2, e^{i(p+l)} cos t/2]]."""
    c = torch.cos(theta / 2).to(complex_dtype)
    s = torch.sin(theta / 2).to(complex_dtype)
    e_phi = torch.polar(torch.ones_like(phi), phi).to(complex_dtype)
    e_lam = torch.polar(torch.ones_like(lam), lam).to(complex_dtype)
    return torch.stack([torch.stack([c, -e_lam * s], -1), torch.stack([e_phi * s, e_phi * e_lam * c], -1)], -2)


#: CNOT in (control, target) order: index 2 * control bit + target bit
CNOT = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.float64)


def matrix(gate: str, angles: torch.Tensor | None, complex_dtype: torch.dtype) -> torch.Tensor:
    """Matrices of ``gate`` (a name in :data:`qt.core.quantum.ansatz.GATES`) for angles of shape ``(..., n_angles)``:
    ``(..., 2, 2)``, or ``(..., 4, 4)`` in (control, target) order. Real gates come out real (float64 for CNOT,
    which has no angles: cast it)."""
    if gate == "RY":
        return ry(angles[..., 0])
    if gate == "U3":
        return u3(angles[..., 0], angles[..., 1], angles[..., 2], complex_dtype)
    if gate == "CU3":  # blockdiag(I, U3): U3 on the target when the control is |1>
        u = u3(angles[..., 0], angles[..., 1], angles[..., 2], complex_dtype)
        eye = torch.eye(2, dtype=u.dtype, device=u.device).expand_as(u)
        zero = torch.zeros_like(u)
        return torch.cat([torch.cat([eye, zero], -1), torch.cat([zero, u], -1)], -2)
    if gate == "CNOT":
        return CNOT
    raise ValueError(f"no matrix for gate {gate}")
