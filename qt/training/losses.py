"""Training objectives (``loss`` config group). Evaluation always reports the task's plain loss (cross-entropy for
classification, mean squared error for sequences: :mod:`qt.training.tasks`).

* ``ce``: cross-entropy with the labels.
* ``mse``: mean squared error (``task=sequence``).
* ``kd``: knowledge distillation from a trained classical teacher (Hinton et al.):

      total = (1 - alpha) * CE(student, y) + alpha * T^2 * KL( softmax(teacher / T) || softmax(student / T) )

  The teacher's logits are computed on the same batch, in eval mode, without gradients;
  the T^2 factor keeps the soft term's gradient scale independent of T. ``alpha = 0`` is
  plain cross-entropy. The teacher (``loss.teacher``) is a qt run dir (its kept model, e.g.
  from ``mode=classical``, exported in memory: the teacher's folder is only read) or a file
  written by ``python -m qt.export``; it may be a different, larger network than the student's
  target. ``qt.experiment.build.build_teacher`` builds it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qt.core.checks import number
from qt.errors import ConfigError


class CrossEntropy(nn.Module):
    """Cross-entropy with the labels; ``label_smoothing`` mixes each target with the uniform distribution (torch's)."""

    name = "ce"

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        if not 0 <= number(label_smoothing, "loss.label_smoothing") < 1:
            raise ConfigError(f"loss.label_smoothing must be in [0, 1) (got {label_smoothing}): e.g. loss.label_smoothing=0.1")
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)


class MSE(nn.Module):
    """Mean squared error over every predicted value (``task=sequence``)."""

    name = "mse"

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, y)


class Distillation(nn.Module):
    """``teacher``: the trained classifier (the builder makes it from ``loss.teacher``, a run dir or export file);
    ``source``: where it came from, for summary.json."""

    name = "kd"
    needs_inputs = True  # the trainer passes the batch: the teacher sees the same images

    def __init__(self, teacher: nn.Module | None = None, temperature: float = 3.0, alpha: float = 0.9, source: str | None = None):
        super().__init__()
        if not isinstance(teacher, nn.Module):
            raise ConfigError("loss=kd needs a teacher: set loss.teacher=RUN_DIR (e.g. a mode=classical run) or an exported .pt")
        if not float(temperature) > 0:
            raise ConfigError(f"loss.temperature must be positive (got {temperature})")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ConfigError(f"loss.alpha must be in [0, 1] (got {alpha})")
        self.source = source or type(teacher).__name__
        self.teacher = teacher
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.temperature, self.alpha = float(temperature), float(alpha)

    def train(self, mode: bool = True) -> "Distillation":
        super().train(mode)
        self.teacher.eval()  # always: batch-norm statistics and dropout stay those of the trained teacher
        return self

    def forward(self, logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, y)
        if self.alpha == 0.0:
            return ce
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        t = self.temperature
        kl = F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1), reduction="batchmean", log_target=True)
        return (1 - self.alpha) * ce + self.alpha * t * t * kl
