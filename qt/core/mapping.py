"""The classical mapping model: (bits of basis index i, p_i) -> weight(s) i of the target."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from qt.core.checks import choice, whole
from qt.errors import ConfigError
from qt.core.targets import make_activation


def states_for(n_weights: int, chunk: int = 1) -> int:
    """Basis states needed when each emits ``chunk`` weights: ceil(M / chunk)."""
    return -(-int(n_weights) // int(chunk))


def qubits_for(n_weights: int, chunk: int = 1) -> int:
    """n = ceil(log2(ceil(M / chunk))), at least 1."""
    return max(1, math.ceil(math.log2(states_for(n_weights, chunk))))


def activation_bytes(n_qubits: int, hidden: Sequence[int], chunk: int) -> int:
    """Memory of the mapping over all 2^n basis states: float32 activations of every layer, kept for backward, and their gradients."""
    widths = n_qubits + 1 + sum(int(h) for h in hidden) + int(chunk)
    return 2**n_qubits * widths * 4 * 3


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
        for h in hidden:
            whole(h, "mapping.hidden widths", hint="e.g. mapping.hidden=[20,20]")
        act = make_activation(activation, "mapping.activation")
        widths = [n_qubits + 1, *[int(h) for h in hidden], int(chunk)]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers += act()
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def fan_in(shape: Sequence[int]) -> int:
    """Inputs feeding one output unit of a weight tensor (out, in, *kernel); 1 for a bias."""
    return int(torch.Size(shape)[1:].numel())


SCALES = ("none", "init", "tensor")


class TensorScale(nn.Module):
    """Gives each target tensor of the generated flat vector its own scale, with one learnable gain.

    The mapping emits one flat vector for tensors that need very different scales, and its
    output is a smooth function of the basis-state bits: at initialisation the weights of one
    output unit (a row of a linear layer, a conv filter) share a large common component, so
    every unit sums its (non-negative, post-ReLU) inputs coherently and activations grow by
    ~sqrt(fan_in) per layer (first-step loss ~200 on ``cnn_qtt``; docs/initialisation.md).

    The same smoothness gives every unit the same pattern over its inputs, so the units of a
    layer start as near copies of each other (for a large target, enough to keep it at chance).

    ``scale="init"`` (the default in every preset but ``paper``): each weight tensor is
    double-centred, each output unit's weights to mean 0 and then each input position's
    weights across the units to mean 0 (a unit of one weight has nothing to centre and is
    left as is; a bias is centred as a whole); each tensor is standardised and multiplied
    by its gain, in units of the std the target's own default initialisation draws for
    that tensor (``init_stats``: (std, offset) per tensor, from
    :func:`qt.core.targets.default_init_stats`); a tensor with a constant default init (a norm
    layer's scale 1, shift 0) starts at that constant (its offset), gain 0.

    ``scale="tensor"`` (before the change above; kept to reproduce earlier results): each
    tensor standardised as a whole, gain initialised to He's sqrt(2 / fan_in), biases at 0.

    One trainable scalar per tensor either way, counted in the mapping's parameters.
    """

    def __init__(
        self,
        shapes: Sequence[Sequence[int]],
        mode: str = "init",
        init_stats: Sequence[tuple[float, float]] | None = None,
        eps: float = 1e-6,
    ):
        super().__init__()
        shapes = [torch.Size(s) for s in shapes]
        sizes = [s.numel() for s in shapes]
        if mode == "init":
            if init_stats is None or len(init_stats) != len(shapes):
                raise ConfigError("mapping.scale=init needs the target's default-init statistics per tensor (qt passes them)")
            # gain = unit * s: s in units of the default-init std, starting at 1 (a constant-init tensor: unit 1, s = 0),
            # so one Adam step changes every tensor's scale by the same fraction, not a small tensor's sign
            units_of_gain = [float(std) if std > 0 else 1.0 for std, _ in init_stats]
            gains = [1.0 if std > 0 else 0.0 for std, _ in init_stats]
            offsets = [float(off) for _, off in init_stats]
            # rows (dim 0: output units) of weights with fan-in > 1 are centred, then their columns
            # (one input position across the units) when there are several units; otherwise the whole tensor
            units = [s[0] if len(s) > 1 and fan_in(s) > 1 else 1 for s in shapes]
        elif mode == "tensor":
            gains, offsets = [(2.0 / fan_in(s)) ** 0.5 if len(s) > 1 else 0.0 for s in shapes], [0.0] * len(shapes)
            units_of_gain = [1.0] * len(shapes)
            units = [1] * len(shapes)
        else:
            choice(mode, "mapping.scale", ("init", "tensor"))
        self.eps = float(eps)
        self.gain = nn.Parameter(torch.tensor(gains))
        # all tensors at once (segment sums), not a loop over tensors: a fixed dozen ops per step
        tensor_of = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        unit_sizes = torch.tensor([size // u for size, u in zip(sizes, units) for _ in range(u)])
        self.register_buffer("segment", tensor_of, persistent=False)
        self.register_buffer("counts", torch.tensor(sizes, dtype=torch.float32), persistent=False)
        self.register_buffer("unit", torch.repeat_interleave(torch.arange(len(unit_sizes)), unit_sizes), persistent=False)
        self.register_buffer("unit_counts", unit_sizes.float(), persistent=False)
        # input positions: (tensor, position within a unit) for tensors with several units, one group per other tensor
        first, cols = 0, []
        for size, u in zip(sizes, units):
            cols.append(first + torch.arange(size) % (size // u) if u > 1 else torch.full((size,), first))
            first += size // u if u > 1 else 1
        column = torch.cat(cols) if cols else torch.zeros(0, dtype=torch.long)
        self.center_columns = mode == "init" and any(u > 1 for u in units)
        self.register_buffer("column", column, persistent=False)
        self.register_buffer("column_counts", torch.bincount(column, minlength=first).float(), persistent=False)
        self.register_buffer("offset", torch.tensor(offsets), persistent=False)
        # saved with the learner (init mode): std0 is measured from random draws, so a learner rebuilt
        # elsewhere (export, a notebook) must take the training run's values, not draw its own
        self.register_buffer("gain_unit", torch.tensor(units_of_gain), persistent=mode == "init")

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        seg, counts, unit = self.segment, self.counts.to(w.dtype), self.unit
        mean = w.new_zeros(len(self.unit_counts)).index_add(0, unit, w) / self.unit_counts.to(w.dtype)
        z = w - mean[unit]  # a tensor's units all centred -> the tensor is centred too
        if self.center_columns:  # and each input position's mean over the units: no input shared by all units
            col_mean = w.new_zeros(len(self.column_counts)).index_add(0, self.column, z) / self.column_counts.to(w.dtype)
            z = z - col_mean[self.column]
        var = w.new_zeros(len(counts)).index_add(0, seg, z * z) / counts
        # a one-element tensor has z = 0: it stays at its offset, as a standardised bias would
        gain = self.gain.to(w.dtype) * self.gain_unit.to(w.dtype)
        return z * (gain / (var + self.eps).sqrt())[seg] + self.offset.to(w.dtype)[seg]


class WeightGenerator(nn.Module):
    """Probabilities of the used basis states -> the flat weight vector of the target.

    For basis state i (i < ceil(M / chunk)) the MLP sees [bits(i), x_i] where x_i is p_i, or
    its rescaled form (:func:`rescale_probs`) when ``rescale`` is on, and emits ``chunk``
    weights. The first M outputs are the target's weights. ``scale="none"``: ``center``
    subtracts their mean (the authors' generation); ``scale="init"`` or ``"tensor"``: each
    target tensor gets its own scale and a learnable gain (:class:`TensorScale`, needs
    ``shapes``, the target's parameter shapes in order, and for ``init`` its ``init_stats``).
    With ``chunk > 1`` and ``scale="init"``, each of the ``chunk`` outputs is first centred
    over the basis states, so that no offset repeats with period ``chunk`` through the weights.
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
        scale: str = "init",
        shapes: Sequence[Sequence[int]] | None = None,
        init_stats: Sequence[tuple[float, float]] | None = None,
    ):
        super().__init__()
        chunk = whole(chunk, "mapping.chunk", hint="K target weights per basis state")
        self.n_qubits, self.n_weights, self.chunk = int(n_qubits), int(n_weights), int(chunk)
        self.n_states = states_for(self.n_weights, self.chunk)
        if self.n_states > 2**self.n_qubits:
            raise ConfigError(f"{self.n_qubits} qubits give {2**self.n_qubits} states, fewer than the {self.n_states} needed")
        self.rescale, self.center = bool(rescale), bool(center)
        self.gamma, self.beta, self.alpha = float(gamma), float(beta), float(alpha)
        self.mlp = MappingModel(self.n_qubits, hidden, activation, self.chunk)
        self.register_buffer("bits", basis_bits(self.n_qubits, self.n_states, bool(signed_bits)), persistent=False)
        choice(scale, "mapping.scale", SCALES)
        self.scale: TensorScale | None = None
        self.center_chunks = scale == "init" and self.chunk > 1
        if scale != "none":
            if shapes is None or sum(int(torch.Size(s).numel()) for s in shapes) != self.n_weights:
                raise ConfigError(f"mapping.scale={scale} needs the target's parameter shapes (qt passes them)")
            self.scale = TensorScale(shapes, scale, init_stats)

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        p = probs[: self.n_states].to(self.bits.dtype)
        x = rescale_probs(p, self.n_qubits, self.gamma, self.beta, self.alpha) if self.rescale else p
        out = self.mlp(torch.cat([self.bits, x[:, None]], dim=1))
        if self.center_chunks:
            out = out - out.mean(0)
        w = out.reshape(-1)[: self.n_weights]
        if self.scale is not None:
            return self.scale(w)  # standardises each tensor: a global centring first would change nothing
        return w - w.mean() if self.center else w
