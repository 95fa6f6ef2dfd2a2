"""Target networks: the classical models whose weights Quantum-Train generates.

Any ``torch.nn.Module`` works as a target (set ``model._target_`` to its class); these
are the presets in ``conf/model/``.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from qt.core.checks import number, whole
from qt.errors import ConfigError

#: the activations a config may name, for target networks and the mapping model (``none``: linear)
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "none": None}




def make_activation(name: str, where: str, choices: Mapping[str, Callable[[], nn.Module] | None] = ACTIVATIONS) -> Callable[[], list[nn.Module]]:
    """A maker of ``[a fresh activation module]`` (``[]`` for ``none``); an unknown name is one line naming ``where``."""
    if name not in choices:
        raise ConfigError(f"unknown {where} '{name}': use one of {', '.join(choices)}")
    module = choices[name]
    return lambda: [] if module is None else [module()]


def widest(build: Callable[[list[int]], nn.Module], widths: Callable[[int], list[int]], max_params: int, what: str) -> list[int]:
    """The widths of the widest network of one shape within ``max_params`` weights: the network a budget search trains.

    ``widths(w)`` gives every layer's width at base width ``w``; the largest ``w`` that fits is
    taken, then the last layer widens while it still fits (uniform steps of ``w`` leave up to a
    third of the budget unused). A shape over the budget even at width 1 is refused in one line.
    """
    def fits(channels: list[int]) -> bool:
        return count_weights(build(channels)) <= int(max_params)

    if not fits(widths(1)):
        weights = count_weights(build(widths(1)))
        raise ConfigError(f"{what}: this shape has {weights:,} weights at width 1, over max_params={int(max_params):,}: choose fewer stages, no hidden layer or global pooling")
    w = largest(lambda k: fits(widths(k)), 1)
    channels = widths(w)
    last = largest(lambda k: fits([*channels[:-1], k]), channels[-1])
    return [*channels[:-1], last]


def largest(ok: Callable[[int], bool], start: int) -> int:
    """The largest k >= ``start`` with ``ok(k)``, for ``ok`` true at ``start`` and monotone (doubling, then bisection)."""
    high = start + 1
    while ok(high):
        start, high = high, 2 * high
    while high - start > 1:
        mid = (start + high) // 2
        start, high = (mid, high) if ok(mid) else (start, mid)
    return start


class SimpleCNN(nn.Module):
    """conv(k)->activation->maxpool(2) per entry of ``channels``, then fully connected layers.

    ``activation`` (relu, tanh, gelu, silu, none) follows every layer but the last; the
    authors' network has none (``model=cnn_qtt model.activation=none``, as ``paper_*`` set).

    ``cnn_small``: channels [4, 8], k3, fc [30]  (6,676 weights on 1x28x28)
    ``cnn_qtt``:   channels [8, 12], k5, fc [20] (6,690 weights on 1x28x28, the authors' network)
    ``cnn_cifar``: channels [16, 32], k5 p2, fc [128, 64] (285,226 weights on 3x32x32)

    ``batch_norm`` adds a BatchNorm2d after each convolution (before its activation);
    ``global_pool`` averages each final feature map to one value before the classifier;
    ``dropout`` (a rate; 0: no layer, the weights' names unchanged) follows each stage and hidden layer.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        channels: Sequence[int] = (8, 12),
        kernel_size: int = 5,
        padding: int = 0,
        hidden: Sequence[int] = (20,),
        num_classes: int = 10,
        activation: str = "relu",
        batch_norm: bool = False,
        global_pool: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        drop = dropout_layer(dropout)
        for key, widths in (("model.channels", channels), ("model.hidden", hidden)):
            for w in widths:
                whole(w, f"{key} widths", hint=f"e.g. {key}=[8,12]")
        whole(kernel_size, "model.kernel_size")
        whole(padding, "model.padding", least=0)
        act = make_activation(activation, "model.activation")
        convs: list[nn.Module] = []
        c_in, size = in_channels, image_size
        for c_out in channels:
            norm = [nn.BatchNorm2d(c_out)] if batch_norm else []
            convs += [nn.Conv2d(c_in, c_out, kernel_size, padding=padding), *norm, *act(), nn.MaxPool2d(2), *drop()]
            size = (size + 2 * padding - kernel_size + 1) // 2
            c_in = c_out
        if size < 1:
            raise ConfigError(
                f"model.channels={list(channels)}: a {image_size}x{image_size} image is too small for {len(channels)} "
                f"conv+pool stages of kernel {kernel_size}: use fewer model.channels or a smaller model.kernel_size"
            )
        if global_pool:
            convs.append(nn.AdaptiveAvgPool2d(1))
            size = 1
        self.features = nn.Sequential(*convs)
        fcs: list[nn.Module] = [nn.Flatten()]
        width = c_in * size * size
        for h in hidden:
            fcs += [nn.Linear(width, h), *act(), *drop()]
            width = h
        fcs.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*fcs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BudgetCNN(SimpleCNN):
    """The widest :class:`SimpleCNN` of a given shape with at most ``max_params`` weights: the small network trained directly.

    The shape is what a search over tiny MNIST networks varies: ``stages`` conv+pool stages,
    channels ``[w, w * width_ratio, w * width_ratio^2, ...]`` (rounded), ``kernel_size``,
    ``padding`` (``same``: k // 2, or a number), one hidden layer of ``hidden`` units (0: none),
    ``batch_norm``, ``global_pool``. The base width ``w`` is the largest that fits the budget,
    then the last stage widens while it still fits, so every shape a search proposes trains
    near the budget and none exceeds it (``model=cnn_budget model.max_params=N``); a shape too
    large even at width 1 is refused in one line. ``channels`` records the widths chosen.
    """

    def __init__(
        self,
        max_params: int | None = None,
        in_channels: int = 1,
        image_size: int = 28,
        stages: int = 2,
        width_ratio: float = 1.0,
        kernel_size: int = 5,
        padding: int | str = 0,
        hidden: int = 0,
        num_classes: int = 10,
        activation: str = "relu",
        batch_norm: bool = False,
        global_pool: bool = False,
        dropout: float = 0.0,
    ):
        if max_params is None or int(max_params) < 1:
            raise ConfigError(f"model=cnn_budget needs its budget (got max_params={max_params}): set model.max_params=N, e.g. QT's trainable count")
        if int(stages) < 1 or int(hidden) < 0 or float(width_ratio) <= 0:
            raise ConfigError(f"model=cnn_budget: stages >= 1, hidden >= 0 and width_ratio > 0 (got {stages}, {hidden}, {width_ratio})")
        pad = int(kernel_size) // 2 if padding == "same" else int(padding)
        shape = dict(in_channels=in_channels, image_size=image_size, kernel_size=int(kernel_size), padding=pad,
                     hidden=[int(hidden)] if int(hidden) else [], num_classes=num_classes, activation=activation,
                     batch_norm=bool(batch_norm), global_pool=bool(global_pool), dropout=float(dropout))  # fmt: skip

        channels = widest(lambda c: SimpleCNN(channels=c, **shape), partial(ratio_widths, int(stages), float(width_ratio)), int(max_params), "model=cnn_budget")
        super().__init__(channels=channels, **shape)
        self.channels = channels


class SeparableConv2d(nn.Sequential):
    """Keras' ``SeparableConv2D`` at depth multiplier 1: a depthwise k x k convolution, then a pointwise 1x1 one.

    Keras gives the depthwise step no bias (``depthwise_bias=False``, the default here); the
    pointwise step has one. No activation between the two, as in Keras.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, padding: int = 0, depthwise_bias: bool = False):
        super().__init__(OrderedDict(
            depthwise=nn.Conv2d(c_in, c_in, kernel_size, padding=padding, groups=c_in, bias=depthwise_bias),
            pointwise=nn.Conv2d(c_in, c_out, 1),
        ))  # fmt: skip


#: CompactCNN's initialisations: ``torch`` (each layer's own reset), ``glorot`` (Keras' defaults: Glorot-uniform
#: kernels, zero biases), ``he_stem`` (``glorot``, the stem He-normal: what JoshWarn's 697 file gets from Keras, whose
#: ``SeparableConv2D`` takes ``depthwise_initializer``/``pointwise_initializer`` and leaves ``kernel_initializer`` unused)
INITS = ("torch", "glorot", "he_stem")


def keras_init_(module: nn.Module, he: bool) -> None:
    """Keras' initialisers on a Conv2d or Linear: Glorot-uniform (``he``: He-normal, truncated at 2 sd as Keras
    draws it, with Keras' variance) kernel, zero bias. Fans as Keras counts them (receptive field x channels)."""
    w = module.weight
    receptive = w[0, 0].numel() if w.dim() > 2 else 1
    fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
    with torch.no_grad():
        if he:
            std = math.sqrt(2.0 / fan_in) / 0.87962566103423978  # Keras' correction: the truncated draw has variance 2 / fan_in
            nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)
        else:
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            nn.init.uniform_(w, -limit, limit)
        if module.bias is not None:
            module.bias.zero_()


def _conv_layers(widths: list[int], in_channels: int, image_size: int, separable: bool, depthwise_bias: bool, pads: dict[str, int],
                 pool: set[int], dropped: set[int], batch_norm: bool, act: Callable, drop: Callable) -> tuple[list[nn.Module], int]:
    """CompactCNN's convolution layers (conv, batch norm, activation, pool, dropout per layer) and the last width."""
    body: list[nn.Module] = []
    c_in, size = in_channels, image_size
    for i, c_out in enumerate(widths):
        pad = pads["model.stem_padding" if i == 0 else "model.padding"]
        if i == 0 or not separable:
            conv: nn.Module = nn.Conv2d(c_in, c_out, 3, padding=pad)
        else:
            conv = SeparableConv2d(c_in, c_out, 3, padding=pad, depthwise_bias=depthwise_bias)
        size = size + 2 * pad - 2
        body += [conv, *([nn.BatchNorm2d(c_out)] if batch_norm else []), *act()]
        if i in pool:
            body.append(nn.MaxPool2d(2))
            size //= 2
        if i in dropped:
            body += drop()
        if size < 1:
            raise ConfigError(f"model.widths={widths}: a {image_size}x{image_size} image is too small for these layers: use padding=same, fewer stages or fewer pools")
        c_in = c_out
    return body, c_in


class CompactCNN(nn.Module):
    """The tiny network as the parameter-efficient-MNIST community builds it.

    A 3x3 stem convolution, then one 3x3 convolution per stage, depthwise-separable
    (:class:`SeparableConv2d`) or plain; each layer: conv -> (batch norm) -> activation ->
    (2x2 max pool: the layers listed in ``pool``, 0 being the stem, or the first ``pool`` layers) -> (dropout: the layers in
    ``dropout_after``, all by default); then global average pooling, an optional hidden
    layer and a linear classifier. ``padding``: ``valid`` or ``same`` (``stem_padding`` the
    stem's).

    Widths: ``widths`` lists them (stem first, then each stage; with ``max_params`` too, a count over it is
    refused: the budget a listed network is compared at), or, with ``widths: null``,
    ``model.max_params=N`` fills ``stages`` stages to the budget: widths growing geometrically
    from the stem's ``w`` to the last stage's ``w * growth``, the widest that fits (:func:`widest`).
    ``widths`` records the widths built.

    ``model=compact_697`` and ``model=compact_997`` are JoshWarn/Parameter-Efficient-MNIST's
    layer lists (697 and 997 weights, Keras' bias-free depthwise step, LeakyReLU 0.2).
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        num_classes: int = 10,
        widths: Sequence[int] | None = (6, 5, 9, 10, 8),
        max_params: int | None = None,
        stages: int = 4,
        growth: float = 1.0,
        separable: bool = True,
        depthwise_bias: bool = False,
        stem_padding: str = "same",
        padding: str = "valid",
        pool: Sequence[int] | int = (0,),
        batch_norm: bool = False,
        activation: str = "leaky_relu",
        negative_slope: float = 0.2,
        dropout: float = 0.0,
        dropout_after: Sequence[int] | None = None,
        hidden: int = 0,
        init: str = "torch",
    ):
        super().__init__()
        settings = dict(in_channels=in_channels, image_size=image_size, num_classes=num_classes, separable=separable,
                        depthwise_bias=depthwise_bias, stem_padding=stem_padding, padding=padding, pool=pool,
                        batch_norm=batch_norm, activation=activation, negative_slope=negative_slope, dropout=dropout,
                        dropout_after=dropout_after, hidden=hidden, init=init)  # fmt: skip
        budget_checked = widths is not None and max_params is not None
        if widths is None:
            if max_params is None:
                raise ConfigError("model=compact needs its widths or a budget: set model.widths=[6,5,9,10,8] or model.max_params=N")
            whole(stages, "model.stages", least=0)
            number(growth, "model.growth", strict=True)
            ratio = float(growth) ** (1 / int(stages)) if int(stages) else 1.0
            widths = widest(lambda w: CompactCNN(widths=w, **settings), partial(ratio_widths, int(stages) + 1, ratio),
                            int(max_params), "model=compact")  # fmt: skip
        widths = [whole(w, "model.widths", hint="e.g. model.widths=[6,5,9,10,8]") for w in widths]
        if not widths:
            raise ConfigError("model.widths is empty: give the stem's width and each stage's, e.g. model.widths=[6,5,9,10,8]")
        whole(hidden, "model.hidden", least=0)
        if init not in INITS:
            raise ConfigError(f"unknown model.init '{init}': use one of {', '.join(INITS)}")
        pads = {}
        for key, value in (("model.stem_padding", stem_padding), ("model.padding", padding)):
            if value not in ("same", "valid"):
                raise ConfigError(f"{key} must be same or valid (got {value!r})")
            pads[key] = 1 if value == "same" else 0
        layers = range(len(widths))
        if isinstance(pool, int):
            pool = range(whole(pool, "model.pool", least=0, hint="a count of layers, or a list such as model.pool=[0]"))
        for key, chosen in (("model.pool", pool), ("model.dropout_after", dropout_after or [])):
            wrong = [i for i in chosen if i not in layers]
            if wrong:
                raise ConfigError(f"{key} names layers {wrong}, but this network has layers 0..{len(widths) - 1} (0: the stem)")
        act = make_activation(activation, "model.activation", {**ACTIVATIONS, "leaky_relu": partial(nn.LeakyReLU, float(negative_slope))})
        body, c_in = _conv_layers(widths, in_channels, image_size, separable, depthwise_bias, pads, set(pool),
                                  set(layers if dropout_after is None else dropout_after), batch_norm, act, dropout_layer(dropout))
        body.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*body)
        head: list[nn.Module] = [nn.Flatten()]
        if hidden:
            head += [nn.Linear(c_in, int(hidden)), *act()]
            c_in = int(hidden)
        head.append(nn.Linear(c_in, num_classes))
        self.classifier = nn.Sequential(*head)
        self.widths = widths
        self.init = init
        self.reset_parameters()
        if budget_checked and count_weights(self) > int(max_params):
            raise ConfigError(f"model.widths={widths} has {count_weights(self):,} weights, over model.max_params={int(max_params):,}: narrow it, or set model.max_params=null")

    def reset_parameters(self) -> None:
        """Draw every weight by ``init`` (``torch``: each layer's own ``reset_parameters``)."""
        stem = self.features[0]
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
                module.reset_parameters()
                if self.init != "torch" and not isinstance(module, nn.BatchNorm2d):
                    keras_init_(module, he=self.init == "he_stem" and module is stem)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def linear_stack(widths: Sequence[int], act: Callable[[], list[nn.Module]]) -> nn.Sequential:
    """Linear layers through ``widths``, ``act()`` between them (none after the last): the MLP target and the MLP mapping."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers += act()
    return nn.Sequential(*layers)


class MLP(nn.Module):
    """A fully connected network on flat inputs (``task=rl``'s policy): ``input_size`` -> ``hidden`` -> ``output_size``,
    ``activation`` between layers, none after the last (a policy's logits; the task turns them into probabilities).
    QTRL's CartPole policy 4 -> 128 -> 2 holds 898 weights, its MiniGrid policy 147 -> 32 -> 3 holds 4,835."""

    def __init__(self, input_size: int, hidden: Sequence[int] = (128,), output_size: int = 2, activation: str = "relu"):
        super().__init__()
        widths = [whole(input_size, "model.input_size"), *(whole(h, "model.hidden") for h in hidden), whole(output_size, "model.output_size")]
        self.net = linear_stack(widths, make_activation(activation, "model.activation"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LSTMRegressor(nn.Module):
    """Stacked LSTMs and a linear read-out at every time step (``task=sequence``): the QT-LSTM notebook's network.

    ``layers`` LSTMs named ``lstm1``, ``lstm2``, ... (each its own module, as the notebook builds them, so the
    parameter names and counts match: 1 -> 50 -> 50 -> 1 holds 31,051 weights), dropout ``dropout`` after each,
    and ``fc`` from the last hidden state to ``output_size`` values per step. Input and output are
    (batch, time, features). Each LSTM starts from zero states.
    """

    def __init__(self, input_size: int = 1, hidden: int = 50, layers: int = 2, output_size: int = 1, dropout: float = 0.0):
        super().__init__()
        sizes = [whole(input_size, "model.input_size"), whole(hidden, "model.hidden", hint="e.g. model.hidden=50")]
        n = whole(layers, "model.layers", hint="e.g. model.layers=2")
        drop = dropout_layer(dropout)
        for i in range(n):
            self.add_module(f"lstm{i + 1}", nn.LSTM(sizes[min(i, 1)], sizes[1], batch_first=True))
            for module in drop():
                self.add_module(f"dropout{i + 1}", module)
        self.layers = n
        self.fc = nn.Linear(sizes[1], whole(output_size, "model.output_size"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.layers + 1):
            x, _ = getattr(self, f"lstm{i}")(x)
            if hasattr(self, f"dropout{i}"):
                x = getattr(self, f"dropout{i}")(x)
        return self.fc(x)


def dropout_layer(rate: float) -> Callable[[], list[nn.Module]]:
    """A maker of ``[nn.Dropout(rate)]`` (``[]`` at rate 0, so a network without dropout keeps its weights' names)."""
    if not number(rate, "model.dropout", hint="a rate, e.g. model.dropout=0.1") < 1:
        raise ConfigError(f"model.dropout must be below 1 (got {rate}): a rate, e.g. model.dropout=0.1")
    return lambda: [nn.Dropout(float(rate))] if float(rate) > 0 else []


def ratio_widths(layers: int, ratio: float, w: int) -> list[int]:
    """``[w, w * ratio, w * ratio^2, ...]`` (``layers`` widths, rounded, at least 1)."""
    return [max(1, round(w * ratio**i)) for i in range(layers)]


def count_weights(module: nn.Module) -> int:
    """M: the number of trainable-by-default weights of a target network."""
    return sum(p.numel() for p in module.parameters())


@dataclass(frozen=True)
class InitStats:
    """What a target's own default initialisation draws for one parameter tensor.

    ``std``: the standard deviation of its values over fresh draws (0 for a constant init,
    e.g. a norm layer's scale of 1); ``offset``: the constant a constant init sets, else 0.
    """

    std: float
    offset: float


def default_init_stats(target: nn.Module, min_values: int = 4096, max_values: int = 1 << 20) -> dict[str, InitStats]:
    """Per parameter of ``target``: the statistics of the target's own default initialisation.

    Measured, not assumed, so any ``torch.nn`` target works: each submodule of a copy that
    has ``reset_parameters`` is re-initialised until its smallest tensor has pooled
    ``min_values`` values (a 10-element bias needs hundreds of draws, a 100k-weight layer
    one), at most ``max_values`` values per module, under a forked RNG so the caller's
    random stream is untouched. A parameter no ``reset_parameters`` owns counts as drawn once.
    """
    probe = copy.deepcopy(target).cpu()
    pooled: dict[str, list[torch.Tensor]] = {name: [p.detach().reshape(-1).double()] for name, p in probe.named_parameters()}
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        for prefix, module in probe.named_modules():
            own = [(f"{prefix}.{n}" if prefix else n, p) for n, p in module.named_parameters(recurse=False)]
            if not own or not hasattr(module, "reset_parameters"):
                continue
            size, smallest = sum(p.numel() for _, p in own), min(p.numel() for _, p in own)
            draws = max(1, min(-(-int(min_values) // smallest), int(max_values) // size))
            for name, _ in own:
                pooled[name] = []
            for _ in range(draws):
                module.reset_parameters()
                for name, p in own:
                    pooled[name].append(p.detach().reshape(-1).double())
    stats = {}
    for name, values in pooled.items():
        v = torch.cat(values)
        std = float(v.std(unbiased=False))
        constant = std <= 1e-12 * max(float(v.abs().max()), 1.0)
        stats[name] = InitStats(std=0.0 if constant else std, offset=float(v[0]) if constant else 0.0)
    return stats
