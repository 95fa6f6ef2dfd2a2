"""Evaluation and gradient bookkeeping: the one home of each."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qt.core.learners import Learner
from qt.training.data import Split


def evaluate(model: nn.Module, split: Split, batch_size: int) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of a learner's current weights, or of any classifier, on a split.

    A learner generates its weights once for the whole split. The model's train/eval mode is
    restored afterwards.
    """
    loss, acc, _ = predict(model, split, batch_size)
    return loss, acc


@torch.no_grad()
def predict(model: nn.Module, split: Split, batch_size: int) -> tuple[float, float, torch.Tensor]:
    """:func:`evaluate`'s (mean cross-entropy, accuracy), and the predicted class of every example, in the split's order."""
    was_training = model.training
    model.eval()
    try:
        if isinstance(model, Learner):
            weights = model.weights()
            forward = lambda x: model(x, weights)  # noqa: E731
        else:
            forward = model
        loss, correct, predicted = 0.0, 0, []
        for i in range(0, len(split), batch_size):
            x, y = split.x[i : i + batch_size], split.y[i : i + batch_size]
            logits = forward(x)
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            predicted.append(logits.argmax(1))
            correct += int((predicted[-1] == y).sum())
    finally:
        model.train(was_training)
    n = max(len(split), 1)
    return loss / n, correct / n, torch.cat(predicted) if predicted else torch.zeros(0, dtype=torch.long)


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
