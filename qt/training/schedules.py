"""Learning-rate schedules of qt's own (``scheduler`` config group), where torch's do not fit resume.

:class:`Cosine` is the default: cosine decay over the run's epochs, in closed form, so a run
can be extended. Raising ``trainer.epochs`` of a finished or interrupted run continues it on
the cosine of the new total: the lr of every epoch after the extension is the one a run
planned for that many epochs uses at that epoch (a 1-epoch run extended to 2 trains its
second epoch at lr/2, as a 2-epoch run does). torch's ``CosineAnnealingLR`` cannot do this:
it updates the lr recursively from the previous one and keeps the ``T_max`` it was saved with.
"""

from __future__ import annotations

import math

import torch


class Cosine(torch.optim.lr_scheduler.LRScheduler):
    """lr(e) = eta_min + (base - eta_min) (1 + cos(pi min(e, T_max) / T_max)) / 2, stepped once per epoch.

    ``T_max`` is the constructor's (the config's ``trainer.epochs``), never the checkpoint's:
    :meth:`load_state_dict` keeps it and sets the lr of the resumed epoch on that cosine.
    """

    #: config keys that may change when a run is resumed (qt.experiment.config.fingerprint leaves them out)
    resume_free = ("T_max",)

    def __init__(self, optimizer: torch.optim.Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        if not int(T_max) >= 1:
            raise ValueError(f"T_max must be at least 1 (got {T_max})")
        self.T_max, self.eta_min = int(T_max), float(eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        t = min(max(self.last_epoch, 0), self.T_max)
        f = (1.0 + math.cos(math.pi * t / self.T_max)) / 2.0
        return [self.eta_min + (base - self.eta_min) * f for base in self.base_lrs]

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict({k: v for k, v in state_dict.items() if k not in self.resume_free})
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
