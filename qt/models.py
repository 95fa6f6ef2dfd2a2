"""Target networks: the classical models whose weights Quantum-Train generates.

Any ``torch.nn.Module`` works as a target (set ``model._target_`` to its class); these
are the presets in ``conf/model/``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class SimpleCNN(nn.Module):
    """conv(k)->ReLU->maxpool(2) per entry of ``channels``, then fully connected layers.

    ``cnn_small``: channels [4, 8], k3, fc [30]  (6,676 weights on 1x28x28)
    ``cnn_qtt``:   channels [8, 12], k5, fc [20] (6,690 weights on 1x28x28, the authors' network)
    ``cnn_cifar``: channels [16, 32], k5 p2, fc [128, 64] (285,226 weights on 3x32x32)
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
    ):
        super().__init__()
        convs: list[nn.Module] = []
        c_in, size = in_channels, image_size
        for c_out in channels:
            convs += [nn.Conv2d(c_in, c_out, kernel_size, padding=padding), nn.ReLU(), nn.MaxPool2d(2)]
            size = (size + 2 * padding - kernel_size + 1) // 2
            c_in = c_out
        if size < 1:
            raise ValueError(f"image of size {image_size} is too small for {len(channels)} conv+pool stages")
        self.features = nn.Sequential(*convs)
        fcs: list[nn.Module] = [nn.Flatten()]
        width = c_in * size * size
        for h in hidden:
            fcs += [nn.Linear(width, h), nn.ReLU()]
            width = h
        fcs.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*fcs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def count_weights(module: nn.Module) -> int:
    """M: the number of trainable-by-default weights of a target network."""
    return sum(p.numel() for p in module.parameters())
