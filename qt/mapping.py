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


def fan_in(shape: Sequence[int]) -> int:
    """Inputs feeding one output unit of a weight tensor (out, in, *kernel); 1 for a bias."""
    return int(torch.Size(shape)[1:].numel())


class TensorScale(nn.Module):
    """Per-tensor standardisation of the generated weights with one learnable gain each.

    The mapping emits one flat vector for tensors that need very different scales (a 5x5
    conv's fan-in is 25, the first linear layer's 192). Each weight tensor's slice is
    standardised, (w - mean) / std, and multiplied by its gain, initialised to He's
    sqrt(2 / fan_in); a 1-D tensor (a bias) is standardised the same way with its gain
    starting at 0, so biases start at 0. One trainable scalar per tensor, counted in the
    mapping's parameters. A target with normalisation layers gets their 1-D scales at 0
    too: use ``scale=none`` there, or a target without them.
    """

    def __init__(self, shapes: Sequence[Sequence[int]], eps: float = 1e-6):
        super().__init__()
        sizes = [int(torch.Size(s).numel()) for s in shapes]
        init = [(2.0 / fan_in(s)) ** 0.5 if len(s) > 1 else 0.0 for s in shapes]
        self.gain = nn.Parameter(torch.tensor(init))
        self.eps = float(eps)
        # all tensors at once (segment sums), not a loop over tensors: ~14 ops per step instead of ~8 per tensor
        self.register_buffer("segment", torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)), persistent=False)
        self.register_buffer("counts", torch.tensor(sizes, dtype=torch.float32), persistent=False)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        seg, counts = self.segment, self.counts.to(w.dtype)
        mean = w.new_zeros(len(counts)).index_add(0, seg, w) / counts
        z = w - mean[seg]
        var = w.new_zeros(len(counts)).index_add(0, seg, z * z) / counts
        # a one-element tensor has z = 0: it stays 0 (times its gain), as a standardised bias would
        return z * (self.gain.to(w.dtype) / (var + self.eps).sqrt())[seg]


class WeightGenerator(nn.Module):
    """Probabilities of the used basis states -> the flat weight vector of the target.

    For basis state i (i < ceil(M / chunk)) the MLP sees [bits(i), x_i] where x_i is p_i, or
    its rescaled form (:func:`rescale_probs`) when ``rescale`` is on, and emits ``chunk``
    weights. The first M outputs are the target's weights; ``center`` subtracts their mean;
    ``scale="tensor"`` standardises each target tensor and applies a learnable gain
    (:class:`TensorScale`, needs ``shapes``, the target's parameter shapes in order).
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
        scale: str = "none",
        shapes: Sequence[Sequence[int]] | None = None,
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
        if scale not in ("none", "tensor"):
            raise ConfigError(f"unknown mapping.scale '{scale}': use none or tensor")
        self.scale: TensorScale | None = None
        if scale == "tensor":
            if shapes is None or sum(int(torch.Size(s).numel()) for s in shapes) != self.n_weights:
                raise ConfigError("mapping.scale=tensor needs the target's parameter shapes (qt passes them)")
            self.scale = TensorScale(shapes)

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        p = probs[: self.n_states].to(self.bits.dtype)
        x = rescale_probs(p, self.n_qubits, self.gamma, self.beta, self.alpha) if self.rescale else p
        w = self.mlp(torch.cat([self.bits, x[:, None]], dim=1)).reshape(-1)[: self.n_weights]
        if self.scale is not None:
            return self.scale(w)  # standardises each tensor: a global centring first would change nothing
        return w - w.mean() if self.center else w
