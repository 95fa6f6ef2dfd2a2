"""What a training run is configured with and what of it must survive a kill.

``TrainerConfig`` is the ``trainer`` config group (conf/trainer/default.yaml holds the same
defaults and says what each is); ``TrainState`` is the loop's own state, saved in
``checkpoints/last.pt`` with the model, optimizer, scheduler and random states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


@dataclass
class TrainerConfig:
    """The ``trainer`` config group, with its default option's values (a test keeps them equal)."""

    epochs: int = 30
    batch_size: int = 128
    eval_batch_size: int = 2000
    clip_norm: float | None = 10.0
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    progress: bool | None = None  # None: only on a terminal
    checkpoint_every: int = 100  # steps between mid-epoch last.pt writes (0: epoch ends only)
    limit_train_batches: int | None = None  # cap steps per epoch (smoke tests, quick looks)
    test_subset: int | None = None  # also report the accuracy on this many random test images (the authors report 1,000)
    resume: bool = True  # continue from checkpoints/last.pt when the run dir has one


def zero_acc() -> dict:
    """The partial-epoch sums of a fresh epoch."""
    return {"loss": 0.0, "correct": 0, "count": 0, "steps": 0, "gn": {}}


@dataclass
class TrainState:
    """Everything of the loop that must survive a kill (besides model/optimizer/scheduler)."""

    epoch: int = 0  # epochs fully completed
    step_in_epoch: int = 0  # batches done in the current epoch
    global_step: int = 0
    best_val_acc: float = -1.0  # task=classification's kept epoch (qt.training.tasks)
    best_val_mse: float = math.inf  # task=sequence's
    best_val_return: float = -math.inf  # task=rl's
    best_epoch: int | None = None
    rows: list[dict] = field(default_factory=list)
    acc: dict = field(default_factory=zero_acc)  # partial-epoch sums
    initial_loss: float | None = None  # cross-entropy of the first training batch, before any step
    train_time_s: float = 0.0  # in training steps (forward, backward, optimizer), all sessions
    wall_time_s: float = 0.0  # the whole run up to the last checkpoint, all sessions (see Trainer.elapsed)
    epoch_train_time_s: float = 0.0  # training steps of the current epoch


class Diverged(Exception):
    """Non-finite loss: the run stops with status 'diverged'."""


class Pruned(Exception):
    """A sweep's pruner stopped the run after an epoch (qt.sweeps.pruning): status 'pruned'."""


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The shuffling order of an epoch: a function of (seed, epoch) only, so a resumed run sees the same batches."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g).to(device)
