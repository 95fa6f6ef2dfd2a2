"""Batched one-qubit gate matrices in torch (PennyLane's conventions).

Every function takes angle tensors of any leading shape and returns ``(..., 2, 2)``.
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


def one_qubit(gate: str, angles: torch.Tensor, complex_dtype: torch.dtype) -> torch.Tensor:
    """Matrices of ``gate`` for angles of shape ``(..., n_angles)``."""
    if gate == "RY":
        return ry(angles[..., 0])
    if gate in ("U3", "CU3"):
        return u3(angles[..., 0], angles[..., 1], angles[..., 2], complex_dtype)
    raise ValueError(f"no matrix for gate {gate}")
