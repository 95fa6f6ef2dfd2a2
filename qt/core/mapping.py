"""The classical mapping model: (bits of basis index i, p_i) -> weight(s) i of the target."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from qt.core.checks import CLI, Keys, choice, number, whole, with_defaults
from qt.errors import ConfigError
from qt.core.targets import linear_stack, make_activation


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


#: generated weights (or basis states) from which a step takes the large-target paths: hand-written gradients and
#: per-tensor views, the same values in fewer passes over memory (below, autograd's own: today's results bit for bit)
LARGE = 100_000


def rescale_probs(p: torch.Tensor, n_qubits: int, gamma: float, beta: float, alpha: float) -> torch.Tensor:
    """x = (beta * tanh(gamma * 2^(n-1) * p))^alpha - mean(x), the authors' rescaling.

    Basis probabilities are ~2^-n; the factor 2^(n-1) brings them to O(1) whatever n is.
    From :data:`LARGE` states on, the gradient is written out (:class:`_Rescale`: the same
    forward ops, a third of autograd's passes in backward).
    """
    if p.numel() >= LARGE and torch.is_grad_enabled() and p.requires_grad:
        return _Rescale.apply(p, gamma * 2 ** (n_qubits - 1), beta, alpha)
    x = (beta * torch.tanh(gamma * 2 ** (n_qubits - 1) * p)).clamp_min(1e-12) ** alpha
    return x - x.mean()


class _Rescale(torch.autograd.Function):
    """:func:`rescale_probs` with its gradient by hand: dx/dp = (g - mean g) * alpha * y / u * beta * s * (1 - t^2)."""

    @staticmethod
    def forward(ctx, p: torch.Tensor, s: float, beta: float, alpha: float) -> torch.Tensor:
        t = torch.tanh(s * p)
        u = (beta * t).clamp_min_(1e-12)
        y = u**alpha
        ctx.save_for_backward(t, u, y)
        ctx.constants = (s, beta, alpha)
        return y - y.mean()

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        t, u, y = ctx.saved_tensors
        s, beta, alpha = ctx.constants
        g = (g - g.mean()).mul_(y).div_(u).mul_(alpha * beta * s).masked_fill_(u <= 1e-12, 0)  # clamped: no gradient
        return g.mul_(1 - t * t), None, None, None


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
        hidden = self.check(hidden, activation)
        act = make_activation(activation, "mapping.activation")
        self.activation = activation
        self.net = linear_stack([n_qubits + 1, *hidden, int(chunk)], act)

    @staticmethod
    def check(hidden: Sequence[int], activation: str, keys: Keys = CLI) -> list[int]:
        """The rules of ``mapping.hidden`` and ``mapping.activation`` (the widths, as ints)."""
        for h in hidden:
            whole(h, f"{keys.name('mapping.hidden')} widths", hint=f"e.g. {keys.set('mapping.hidden', '[20,20]')}")
        make_activation(activation, keys.name("mapping.activation"))
        return [int(h) for h in hidden]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)

    def fused(self, n_qubits: int, values: tuple[float, float], x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` on the rows [bits(i), x_i] of the basis states i < len(x), a bit entering as ``values[bit]``,
        on CPU in one compiled pass per direction over blocks of rows (:func:`qt.core.mapping_kernels.mlp_apply`,
        ``mlp_gradients``): nothing is kept between them, and the values are :meth:`forward`'s to rounding."""
        params = [t for m in self.net if isinstance(m, nn.Linear) for t in (m.weight, m.bias)]
        return _FusedMLP.apply(x, n_qubits, values, self.activation, *params)


#: the MLP mapping runs fused (:meth:`MappingModel.fused`) on CPU from this many basis states, when each emits at most
#: FUSED_MAX_CHUNK weights; elsewhere torch's layers are as fast or faster (docs/performance.md, "The fused mapping")
FUSED_ROWS = 2048
FUSED_MAX_CHUNK = 16


def runs_fused(rows: int, chunk: int, device_type: str) -> bool:
    """Whether the MLP mapping over ``rows`` basis states of ``chunk`` weights each runs fused on ``device_type``."""
    return device_type == "cpu" and int(rows) >= FUSED_ROWS and int(chunk) <= FUSED_MAX_CHUNK


class _FusedMLP(torch.autograd.Function):
    """:meth:`MappingModel.fused`: :func:`qt.core.mapping_kernels.mlp_apply` and its gradients by ``mlp_gradients``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, n_qubits: int, values: tuple[float, float], activation: str, *params: torch.Tensor) -> torch.Tensor:
        from qt.core import mapping_kernels as k

        x_np = x.detach().contiguous().numpy()
        flat = torch.cat([p.detach().reshape(-1) for p in params]).to(x.dtype).numpy()
        widths = np.array([params[0].shape[1], *[p.shape[0] for p in params[::2]]], dtype=np.int64)
        spec = (n_qubits, widths, flat, k.ACTIVATION_CODES[activation], x_np.dtype.type(values[0]), x_np.dtype.type(values[1]))
        ctx.x, ctx.spec, ctx.params = x_np, spec, [(p.shape, p.dtype) for p in params]
        return torch.from_numpy(k.mlp_apply(x_np, *spec))

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        from qt.core import mapping_kernels as k

        g_np = g.detach().to(torch.from_numpy(ctx.x).dtype).contiguous().numpy()
        dx, dflat = k.mlp_gradients(ctx.x, g_np, *ctx.spec)
        grads, at = [], 0
        for shape, dtype in ctx.params:
            grads.append(torch.from_numpy(dflat[at : at + shape.numel()]).reshape(shape).to(dtype))
            at += shape.numel()
        return torch.from_numpy(dx), None, None, None, *grads


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
        # a large target: per tensor, as (units, fan-in) views with contiguous reductions, a few ops per tensor
        # instead of gathers and scatters over every weight (the same result; a test checks it)
        self.sizes, self.units = sizes, units
        self.by_tensor = sum(sizes) >= LARGE  # below: segment sums, a fixed dozen ops (compiled on CPU)
        self._groups = None

    def kernel_groups(self) -> tuple:
        """(layout, centre columns, offsets): what :mod:`qt.core.mapping_kernels` takes; layout rows (start, units,
        fan-in); built once (all fixed at construction)."""
        if self._groups is None:
            starts = np.cumsum([0, *self.sizes[:-1]])
            layout = np.array([(s, u, size // u) for s, u, size in zip(starts, self.units, self.sizes)], dtype=np.int64)
            self._groups = (layout.reshape(-1, 3), bool(self.center_columns), self.offset.double().numpy())
        return self._groups

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.by_tensor:
            return self.forward_by_tensor(w)
        if w.device.type == "cpu":
            return self.forward_compiled(w)
        return self.forward_segments(w)

    def forward_compiled(self, w: torch.Tensor) -> torch.Tensor:
        """:meth:`forward_segments` as two compiled calls (:mod:`qt.core.mapping_kernels`): the same values to rounding."""
        gain = self.gain.to(w.dtype) * self.gain_unit.to(w.dtype)
        return _CompiledScale.apply(w, gain, self)

    def forward_by_tensor(self, w: torch.Tensor) -> torch.Tensor:
        gain = self.gain.to(w.dtype) * self.gain_unit.to(w.dtype)
        out = []
        for i, (t, u) in enumerate(zip(torch.split(w, self.sizes), self.units)):
            z = t.view(u, -1)
            z = z - z.mean(1, keepdim=True)
            if self.center_columns and u > 1:
                z = z - z.mean(0, keepdim=True)
            var = (z * z).mean()
            out.append((z * (gain[i] / (var + self.eps).sqrt()) + self.offset[i].to(w.dtype)).reshape(-1))
        return torch.cat(out)

    def forward_segments(self, w: torch.Tensor) -> torch.Tensor:
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


class _CompiledScale(torch.autograd.Function):
    """:class:`TensorScale`'s segment path, forward and backward by :mod:`qt.core.mapping_kernels` (CPU)."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, gain: torch.Tensor, scale: TensorScale) -> torch.Tensor:
        from qt.core import mapping_kernels as k

        layout, columns, offset = scale.kernel_groups()
        w_np = w.detach().contiguous().numpy()
        z, out = np.empty_like(w_np), np.empty_like(w_np)
        sigma = np.empty(len(scale.sizes))
        gain_np = gain.detach().double().numpy()
        k.scale_forward(w_np, layout, columns, gain_np, offset, scale.eps, z, sigma, out)
        ctx.groups, ctx.z, ctx.sigma, ctx.gain, ctx.dtype = (layout, columns), z, sigma, gain_np, gain.dtype
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        from qt.core import mapping_kernels as k

        g_np = g.detach().contiguous().numpy()
        dw, dgain = np.empty_like(g_np), np.empty(len(ctx.sigma))
        k.scale_backward(g_np, ctx.z, ctx.sigma, *ctx.groups, ctx.gain, dw, dgain)
        return torch.from_numpy(dw), torch.from_numpy(dgain).to(ctx.dtype), None


class MPS(nn.Module):
    """A matrix product state over ``n_inputs`` scalar inputs with ``n_outputs`` outputs (open boundaries).

    f_c(x) = e0^T A_1(x_1) ... A_s(x_s) O_c A_{s+1}(x_{s+1}) ... A_m(x_m) e0, with one core per input,
    A_i(x) = W_i[0] + x W_i[1] (each input embedded as the feature vector phi(x) = (1, x)), the
    output core O (n_outputs, chi, chi) at site s = m // 2 and fixed boundary vectors e0 = (1, 0, ..., 0).

    This is the model class of TorchMPS's ``MPS(input_dim, output_dim, bond_dim)`` (jemisjoky/TorchMPS,
    ``torchmps/torchmps.py``: default embedding (x, 1 - x), output core at ``input_dim // 2``, fixed
    edge vectors e0), which Photonic Quantum-Train uses as its mapping: the cores there act on
    (x, 1 - x) and carry a bias matrix, which spans the same matrices as (1, x); here without the
    redundant third matrix, 2 chi^2 parameters per input and n_outputs chi^2 for the output core.
    Initialised near the identity (as TorchMPS): W_i[0] = I + noise, W_i[1] = noise, O_c = I + noise,
    noise ~ N(0, init_std^2).
    """

    def __init__(self, n_inputs: int, n_outputs: int = 1, bond_dim: int = 4, init_std: float = 0.1):
        super().__init__()
        chi, init_std = self.check(bond_dim, init_std)
        self.site = int(n_inputs) // 2
        eye = torch.eye(chi)
        cores = torch.randn(int(n_inputs), 2, chi, chi) * init_std
        cores[:, 0] += eye
        self.cores = nn.Parameter(cores)
        self.output = nn.Parameter(eye + torch.randn(int(n_outputs), chi, chi) * init_std)

    @staticmethod
    def check(bond_dim: int, init_std: float, keys: Keys = CLI) -> tuple[int, float]:
        """The rules of ``mapping.bond_dim`` and ``mapping.init_std``."""
        chi = whole(bond_dim, keys.name("mapping.bond_dim"), hint=f"e.g. {keys.set('mapping.bond_dim', 4)}")
        return chi, number(init_std, keys.name("mapping.init_std"), hint="noise around the identity at initialisation, e.g. 0.1")

    @property
    def bond_dim(self) -> int:
        return self.output.shape[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, n_inputs) -> (rows, n_outputs), contracted from both ends towards the output core."""
        chi, rows = self.bond_dim, x.shape[0]
        cores = self.cores.to(x.dtype)
        left = x.new_zeros(rows, chi)
        left[:, 0] = 1
        right = left.clone()
        for i in range(self.site):  # left (rows, chi) <- left A_i(x_i): both matrices in one matmul
            both = (left @ cores[i].permute(1, 0, 2).reshape(chi, 2 * chi)).view(rows, 2, chi)
            left = both[:, 0] + x[:, i : i + 1] * both[:, 1]
        for i in range(cores.shape[0] - 1, self.site - 1, -1):  # right <- A_i(x_i) right
            both = (right @ cores[i].transpose(1, 2).permute(1, 0, 2).reshape(chi, 2 * chi)).view(rows, 2, chi)
            right = both[:, 0] + x[:, i : i + 1] * both[:, 1]
        return torch.einsum("ra,cab,rb->rc", left, self.output.to(x.dtype), right)

    def on_basis(self, n_qubits: int, values: tuple[float, float], x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` on the rows [bits(i), x_i] of every basis state i < len(x), inputs n + 1, in O(2^n chi).

        The bits of basis states enumerate every prefix and suffix, so the left environments of
        all 2^s prefixes (sites before the output core) and the right environments of all
        suffixes are built as trees (2^k chi^2 work at depth k); the last site, x, enters
        linearly: R(suffix, x) = U(suffix) + x V(suffix). Then f_c(i) = L O_c U + x_i L O_c V
        for all i at once: two (2^s x chi)(chi x 2^(n-s)) products per output. The same
        function as :meth:`forward` on those rows (a test checks it), without its n chi^2
        work per row. ``values``: the numbers a bit 0 and a bit 1 enter as. From :data:`LARGE`
        states on, the last step's gradient is written out (:class:`_Combine`).
        """
        chi, dtype = self.bond_dim, x.dtype
        cores, site = self.cores.to(dtype), self.site
        if cores.shape[0] != n_qubits + 1 or not 0 < site <= n_qubits:
            raise ValueError(f"an MPS over {cores.shape[0]} inputs with its output at site {site} does not take n = {n_qubits} bits + x")
        v0, v1 = values
        mats = torch.stack([cores[:, 0] + v0 * cores[:, 1], cores[:, 0] + v1 * cores[:, 1]], dim=1)  # (sites, 2, chi, chi)
        left = x.new_zeros(1, chi)
        left[0, 0] = 1
        for i in range(site):  # prefix index = prefix * 2 + bit (wire 0 most significant); one matmul per site
            left = (left @ mats[i].permute(1, 0, 2).reshape(chi, 2 * chi)).reshape(-1, chi)
        e0 = x.new_zeros(chi)
        e0[0] = 1
        right = torch.stack([cores[-1, 0] @ e0, cores[-1, 1] @ e0])[:, None]  # (U, V) over the empty suffix
        for i in range(n_qubits - 1, site - 1, -1):  # suffix index = bit * 2^len + suffix
            both_bits = (right.reshape(-1, chi) @ mats[i].permute(2, 0, 1).reshape(chi, 2 * chi)).view(2, -1, 2, chi)
            right = both_bits.transpose(1, 2).reshape(2, -1, chi)
        env = torch.matmul(left, self.output.to(dtype))  # (outputs, prefixes, chi)
        if x.shape[0] >= LARGE:
            return _Combine.apply(env, right[0], right[1], x)
        both = torch.matmul(env[:, None], right.transpose(1, 2)[None])  # (outputs, U|V, prefixes, suffixes)
        xs = torch.nn.functional.pad(x, (0, 2**n_qubits - x.shape[0]))
        out = both[:, 0].reshape(both.shape[0], -1) + xs * both[:, 1].reshape(both.shape[0], -1)
        return out[:, : x.shape[0]].T


class _Combine(torch.autograd.Function):
    """f[i, c] = (env_c U^T)[i] + x_i (env_c V^T)[i] for the first len(x) basis states i = (prefix, suffix).

    By hand so that no full (outputs, 2, 2^n) tensor is sliced: autograd's slices would zero-fill
    and copy every one of those values again in backward.
    """

    @staticmethod
    def forward(ctx, env: torch.Tensor, u: torch.Tensor, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        count, outputs = x.shape[0], env.shape[0]
        a = (env @ u.T).view(outputs, -1)  # (outputs, 2^n)
        b = (env @ v.T).view(outputs, -1)
        ctx.save_for_backward(env, u, v, x, b)
        return (a[:, :count] + x * b[:, :count]).T

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        env, u, v, x, b = ctx.saved_tensors
        count, (outputs, prefixes, _) = x.shape[0], env.shape
        ga, gb = g.new_empty(outputs, b.shape[1]), g.new_empty(outputs, b.shape[1])
        ga[:, :count] = g.T
        torch.mul(g.T, x, out=gb[:, :count])
        ga[:, count:] = 0
        gb[:, count:] = 0
        gx = (g.T * b[:, :count]).sum(0)
        ga, gb = ga.view(outputs, prefixes, -1), gb.view(outputs, prefixes, -1)
        genv = ga @ u + gb @ v
        gu = sum(ga[c].mT @ env[c] for c in range(outputs))  # (suffixes, chi): BLAS reads the transpose in place
        gv = sum(gb[c].mT @ env[c] for c in range(outputs))
        return genv, gu, gv, gx


class MappingBase(nn.Module):
    """Probabilities of the used basis states -> the flat weight vector of the target.

    For basis state i (i < ceil(M / chunk)) the network (:meth:`network`, the subclass's) sees
    [bits(i), x_i] where x_i is p_i, or its rescaled form (:func:`rescale_probs`) when
    ``rescale`` is on, and emits ``chunk`` weights. The first M outputs are the target's
    weights. ``scale="none"``: ``center`` subtracts their mean (the authors' generation);
    ``scale="init"`` or ``"tensor"``: each target tensor gets its own scale and a learnable
    gain (:class:`TensorScale`, needs ``shapes``, the target's parameter shapes in order, and
    for ``init`` its ``init_stats``). With ``chunk > 1`` and ``scale="init"``, each of the
    ``chunk`` outputs is first centred over the basis states, so that no offset repeats with
    period ``chunk`` through the weights.
    """

    #: constructor arguments qt sets itself (from the target), not config settings
    OWN_ARGUMENTS = ("n_qubits", "n_weights", "shapes", "init_stats")
    #: settings given as a block of their own (none)
    SETTINGS_BLOCKS: dict[str, type] = {}

    def __init__(
        self,
        n_qubits: int,
        n_weights: int,
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
        chunk = MappingBase.check_settings({"chunk": chunk, "scale": scale})["chunk"]
        self.n_qubits, self.n_weights, self.chunk = int(n_qubits), int(n_weights), int(chunk)
        self.n_states = states_for(self.n_weights, self.chunk)
        if self.n_states > 2**self.n_qubits:
            raise ConfigError(f"{self.n_qubits} qubits give {2**self.n_qubits} states, fewer than the {self.n_states} needed")
        self.rescale, self.center = bool(rescale), bool(center)
        self.gamma, self.beta, self.alpha = float(gamma), float(beta), float(alpha)
        # carries the mapping's dtype and device (moves with .to(), .double()); the bit rows are built when a network
        # needs them written out (the MLP below FUSED_ROWS, off CPU): 2^n x n values a fused or MPS network never reads
        self.register_buffer("anchor", torch.zeros(0), persistent=False)
        self.signed_bits = bool(signed_bits)
        self.bit_values = (-1.0, 1.0) if signed_bits else (0.0, 1.0)
        self._bits: torch.Tensor | None = None
        self.scale: TensorScale | None = None
        self.center_chunks = scale == "init" and self.chunk > 1
        if scale != "none":
            if shapes is None or sum(int(torch.Size(s).numel()) for s in shapes) != self.n_weights:
                raise ConfigError(f"mapping.scale={scale} needs the target's parameter shapes (qt passes them)")
            self.scale = TensorScale(shapes, scale, init_stats)

    @classmethod
    def check_settings(cls, settings: Mapping, keys: Keys = CLI) -> dict:
        """``settings`` (the mapping config's keys, or the constructor's arguments; its defaults for the rest) with
        every rule of the mapping's values checked, its network's included (:meth:`check_network`). The one statement
        of those rules: the constructors call them, and so does the validation of a config (CLI and API) before
        anything is built. What qt sets itself (qubits, weights, the target's shapes) may be absent."""
        s = with_defaults(cls, settings, "mapping", keys, own=cls.OWN_ARGUMENTS)
        s["chunk"] = whole(s["chunk"], keys.name("mapping.chunk"), hint="K target weights per basis state")
        choice(s["scale"], keys.name("mapping.scale"), SCALES)
        cls.check_network(s, keys)
        return s

    @classmethod
    def check_network(cls, settings: dict, keys: Keys = CLI) -> None:
        """The rules of the subclass's network settings (none here)."""

    def network(self, x: torch.Tensor) -> torch.Tensor:
        """The subclass's network on the rows [bits(i), x_i] of the basis states i < ``n_states``: (states,) ->
        (states, chunk)."""
        raise NotImplementedError

    def bits(self) -> torch.Tensor:
        """Bits of the basis states i < ``n_states`` (:func:`basis_bits`), in the mapping's dtype and device; built once."""
        a = self.anchor
        if self._bits is None or self._bits.dtype != a.dtype or self._bits.device != a.device:
            self._bits = basis_bits(self.n_qubits, self.n_states, self.signed_bits).to(a)
        return self._bits

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        p = probs[: self.n_states].to(self.anchor.dtype)
        x = rescale_probs(p, self.n_qubits, self.gamma, self.beta, self.alpha) if self.rescale else p
        out = self.network(x)
        if self.center_chunks:
            out = out - out.mean(0)
        w = out.reshape(-1)[: self.n_weights]
        if self.scale is not None:
            return self.scale(w)  # standardises each tensor: a global centring first would change nothing
        return w - w.mean() if self.center else w


class MLPMapping(MappingBase):
    """The MLP mapping (``mapping=medium`` etc.): :class:`MappingModel` [n+1 -> hidden... -> chunk].

    ``common``: :class:`MappingBase`'s options (chunk, rescaling, bits, centring, scale).
    """

    def __init__(self, n_qubits: int, n_weights: int, hidden: Sequence[int] = (20, 20), activation: str = "relu", **common):
        super().__init__(n_qubits, n_weights, **common)
        self.mlp = MappingModel(self.n_qubits, hidden, activation, self.chunk)
        if runs_fused(self.n_states, self.chunk, "cpu"):
            from qt.core.mapping_kernels import warm_mlp

            warm_mlp(np.float32)  # before training starts, not in its first step

    @classmethod
    def check_network(cls, settings: dict, keys: Keys = CLI) -> None:
        settings["hidden"] = MappingModel.check(settings["hidden"], settings["activation"], keys)

    def network(self, x: torch.Tensor) -> torch.Tensor:
        if runs_fused(x.shape[0], self.chunk, x.device.type):
            return self.mlp.fused(self.n_qubits, self.bit_values, x)
        return self.mlp(torch.cat([self.bits(), x[:, None]], dim=1))


class MPSMapping(MappingBase):
    """The tensor-network mapping (``mapping=mps``): an :class:`MPS` over the n + 1 inputs with ``chunk`` outputs
    (Liu, Lin and Chen, arXiv 2409.06992; Photonic Quantum-Train, arXiv 2505.08474).

    Bits enter as {-1, +1} by default (``signed_bits``, as the photonic code's index bits).
    ``common``: :class:`MappingBase`'s other options.
    """

    def __init__(self, n_qubits: int, n_weights: int, bond_dim: int = 4, init_std: float = 0.1, signed_bits: bool = True, **common):
        super().__init__(n_qubits, n_weights, signed_bits=signed_bits, **common)
        self.mps = MPS(self.n_qubits + 1, self.chunk, bond_dim, init_std)

    @classmethod
    def check_network(cls, settings: dict, keys: Keys = CLI) -> None:
        MPS.check(settings["bond_dim"], settings["init_std"], keys)

    def network(self, x: torch.Tensor) -> torch.Tensor:
        # the rows are [bits(i), x_i] for i = 0, 1, ...: contracted over all basis states at once, bits implied
        return self.mps.on_basis(self.n_qubits, self.bit_values, x)


def network_kind(mapping: dict) -> str:
    """``mps`` or ``mlp``: the network a mapping config builds (read from its ``_target_``)."""
    return "mps" if str(mapping.get("_target_", "")).endswith(MPSMapping.__name__) else "mlp"


def mapping_size(mapping: dict, n_qubits: int, chunk: int, device_type: str = "cpu") -> tuple[int, int]:
    """(parameters, activation bytes over all 2^n basis states on ``device_type``) of a mapping config, before
    building it."""
    if network_kind(mapping) == "mps":
        chi, sites = int(mapping.get("bond_dim", 4)), n_qubits + 1
        # MPS.on_basis keeps a few (chunk, 2^n) planes (the U and V products, x, the output) and their gradients;
        # its tree environments are 2^(n/2) chi each
        return sites * 2 * chi * chi + chunk * chi * chi, 2**n_qubits * int(chunk) * 4 * 8
    hidden = [int(h) for h in mapping.get("hidden", [])]
    widths = [n_qubits + 1, *hidden, int(chunk)]
    params = sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))
    if runs_fused(2 ** (n_qubits - 1) + 1, chunk, device_type):  # fused (n qubits: more than 2^(n-1) states): its input,
        # output and their gradients only
        return params, 2**n_qubits * (2 + 2 * int(chunk)) * 4
    return params, activation_bytes(n_qubits, hidden, chunk)
