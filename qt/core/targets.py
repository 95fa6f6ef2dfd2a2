"""Target networks: the classical models whose weights Quantum-Train generates.

Any ``torch.nn.Module`` works as a target (set ``model._target_`` to its class); these
are the presets in ``conf/model/``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from qt.core.checks import whole
from qt.errors import ConfigError

#: the activations a config may name, for target networks and the mapping model (``none``: linear)
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "none": None}


def make_activation(name: str, where: str) -> Callable[[], list[nn.Module]]:
    """A maker of ``[a fresh activation module]`` (``[]`` for ``none``); an unknown name is one line naming ``where``."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown {where} '{name}': use one of {', '.join(ACTIVATIONS)}")
    module = ACTIVATIONS[name]
    return lambda: [] if module is None else [module()]


class SimpleCNN(nn.Module):
    """conv(k)->activation->maxpool(2) per entry of ``channels``, then fully connected layers.

    ``activation`` (relu, tanh, gelu, silu, none) follows every layer but the last; the
    authors' network has none (``model=cnn_qtt model.activation=none``, as ``paper_*`` set).

    ``cnn_small``: channels [4, 8], k3, fc [30]  (6,676 weights on 1x28x28)
    ``cnn_qtt``:   channels [8, 12], k5, fc [20] (6,690 weights on 1x28x28, the authors' network)
    ``cnn_cifar``: channels [16, 32], k5 p2, fc [128, 64] (285,226 weights on 3x32x32)

    ``batch_norm`` adds a BatchNorm2d after each convolution (before its activation);
    ``global_pool`` averages each final feature map to one value before the classifier.
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
    ):
        super().__init__()
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
            convs += [nn.Conv2d(c_in, c_out, kernel_size, padding=padding), *norm, *act(), nn.MaxPool2d(2)]
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
            fcs += [nn.Linear(width, h), *act()]
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
    ):
        if max_params is None or int(max_params) < 1:
            raise ConfigError(f"model=cnn_budget needs its budget (got max_params={max_params}): set model.max_params=N, e.g. QT's trainable count")
        if int(stages) < 1 or int(hidden) < 0 or float(width_ratio) <= 0:
            raise ConfigError(f"model=cnn_budget: stages >= 1, hidden >= 0 and width_ratio > 0 (got {stages}, {hidden}, {width_ratio})")
        pad = int(kernel_size) // 2 if padding == "same" else int(padding)
        shape = dict(in_channels=in_channels, image_size=image_size, kernel_size=int(kernel_size), padding=pad,
                     hidden=[int(hidden)] if int(hidden) else [], num_classes=num_classes, activation=activation,
                     batch_norm=bool(batch_norm), global_pool=bool(global_pool))  # fmt: skip

        def widths(w: int) -> list[int]:
            return [max(1, round(w * float(width_ratio) ** i)) for i in range(int(stages))]

        def fits(channels: list[int]) -> bool:
            return count_weights(SimpleCNN(channels=channels, **shape)) <= int(max_params)

        if not fits(widths(1)):
            weights = count_weights(SimpleCNN(channels=widths(1), **shape))
            raise ConfigError(f"model=cnn_budget: this shape has {weights:,} weights at width 1, over max_params={int(max_params):,}: choose fewer stages, no hidden layer or global_pool=true")
        w = 1
        while fits(widths(w + 1)):
            w += 1
        channels = widths(w)
        # then the last stage as wide as what is left allows (uniform steps of w leave up to a third of the budget unused)
        while fits([*channels[:-1], channels[-1] + 1]):
            channels[-1] += 1
        super().__init__(channels=channels, **shape)
        self.channels = channels


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
