"""Evaluation and gradient bookkeeping: the one home of each."""

from __future__ import annotations

import torch
from torch import nn

from qt.training.data import Split
from qt.training.tasks import Classification, Task

#: the task of a call that names none (qt's runs before tasks existed)
CLASSIFICATION = Classification()


def evaluate(model: nn.Module, split: Split, batch_size: int, task: Task = CLASSIFICATION) -> tuple[float, float | None]:
    """(mean evaluation loss, the task's monitored metric) of a learner's current weights, or of any target network,
    on a split: (cross-entropy, accuracy) for classification. A learner generates its weights once for the whole
    split. The model's train/eval mode is restored afterwards."""
    loss, metrics, _ = measure(model, split, batch_size, task)
    return loss, metrics[task.monitor]


def predict(model: nn.Module, split: Split, batch_size: int) -> tuple[float, float, torch.Tensor]:
    """A classifier's (mean cross-entropy, accuracy) on a split, and the predicted class of every example, in order."""
    loss, metrics, predicted = measure(model, split, batch_size, CLASSIFICATION)
    return loss, metrics["acc"], torch.zeros(0, dtype=torch.long) if predicted is None else predicted


def measure(model: nn.Module, split: Split, batch_size: int, task: Task) -> tuple[float, dict, torch.Tensor | None]:
    """(mean evaluation loss, every metric of ``task``, what the task keeps per example or None) on a split
    (:meth:`qt.training.tasks.Task.measure`)."""
    return task.measure(model, split, batch_size)


def grad_norms(groups: dict[str, list[nn.Parameter]]) -> dict[str, torch.Tensor]:
    """The L2 norm of each named group's gradients (groups without any are left out)."""
    norms = {}
    for name, params in groups.items():
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            norms[name] = nn.utils.get_total_norm(grads)
    return norms


def clip_(groups: dict[str, list[nn.Parameter]], norms: dict[str, torch.Tensor], max_norm: float) -> None:
    """``clip_grad_norm_`` over all groups, reusing the per-group norms already computed."""
    params = [p for ps in groups.values() for p in ps if p.grad is not None]
    if params:
        nn.utils.clip_grads_with_norm_(params, max_norm, nn.utils.get_total_norm(list(norms.values())))
