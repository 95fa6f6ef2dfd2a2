"""The classical mapping model: (bits of basis index i, p_i) -> weight(s) i of the target."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from qt.errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "none": None}


def rescale_probs(p: torch.Tensor, n_qubits: int, gamma: float, beta: float, alpha: float) -> torch.Tensor:
    """x = (beta * tanh(gamma * 2^(n-1) * p))^alpha - mean(x), the authors' rescaling.

    Basis probabilities are ~2^-n; the factor 2^(n-1) brings them to O(1) whatever n is.
    """
    x = (beta * torch.tanh(gamma * 2 ** (n_qubits - 1) * p)).clamp_min(1e-12) ** alpha
    return x - x.mean()


def basis_bits(n_qubits: int, count: int, signed: bool) -> torch.Tensor:
    """Bits of basis indices 0..count-1, wire 0 first (most significant): (count, n)."""
    idx = torch.arange(count)
    shifts = torch.arange(n_qubits - 1, -1, -1)
    bits = ((idx[:, None] >> shifts) & 1).float()
    return bits * 2 - 1 if signed else bits


class MappingModel(nn.Module):
    """MLP [n+1 -> hidden... -> chunk]; ``activation`` between layers (``none``: purely linear, as the authors)."""

    def __init__(self, n_qubits: int, hidden: Sequence[int] = (20, 20), activation: str = "relu", chunk: int = 1):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unknown mapping activation '{activation}': use one of {', '.join(ACTIVATIONS)}")
        if any(int(h) < 1 for h in hidden):
            raise ConfigError(f"mapping.hidden widths must be positive (got {list(hidden)})")
        widths = [n_qubits + 1, *[int(h) for h in hidden], int(chunk)]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2 and ACTIVATIONS[activation] is not None:
                layers.append(ACTIVATIONS[activation]())
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class WeightGenerator(nn.Module):
    """Probabilities of the used basis states -> the flat weight vector of the target.

    For basis state i (i < ceil(M / chunk)) the MLP sees [bits(i), x_i] where x_i is p_i, or
    its rescaled form (:func:`rescale_probs`) when ``rescale`` is on, and emits ``chunk``
    weights. The first M outputs are the target's weights; ``center`` subtracts their mean.
    """

    def __init__(
        self,
        n_qubits: int,
        n_weights: int,
        hidden: Sequence[int] = (20, 20),
        activation: str = "relu",
        chunk: int = 1,
        rescale: bool = True,
        gamma: float = 0.1,
        beta: float = 0.8,
        alpha: float = 0.3,
        signed_bits: bool = False,
        center: bool = True,
    ):
        super().__init__()
        if int(chunk) < 1:
            raise ConfigError(f"mapping.chunk must be at least 1 (got {chunk})")
        self.n_qubits, self.n_weights, self.chunk = int(n_qubits), int(n_weights), int(chunk)
        self.n_states = -(-self.n_weights // self.chunk)
        if self.n_states > 2**self.n_qubits:
            raise ConfigError(f"{self.n_qubits} qubits give {2**self.n_qubits} states, fewer than the {self.n_states} needed")
        self.rescale, self.center = bool(rescale), bool(center)
        self.gamma, self.beta, self.alpha = float(gamma), float(beta), float(alpha)
        self.mlp = MappingModel(self.n_qubits, hidden, activation, self.chunk)
        self.register_buffer("bits", basis_bits(self.n_qubits, self.n_states, bool(signed_bits)), persistent=False)

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        p = probs[: self.n_states].to(self.bits.dtype)
        x = rescale_probs(p, self.n_qubits, self.gamma, self.beta, self.alpha) if self.rescale else p
        w = self.mlp(torch.cat([self.bits, x[:, None]], dim=1)).reshape(-1)[: self.n_weights]
        return w - w.mean() if self.center else w
