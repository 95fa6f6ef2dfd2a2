"""The one training loop, for every mode (QT, classical, controls).

Per step: generate the target's weights once (``learner.weights()``), run the batch through
the target functionally, the loss, backward, per-part gradient norms, clip, step.
Per epoch: validation, a metrics row, the LR scheduler, which epoch's model is kept (the best
validation accuracy; without a validation split, as the authors train, the last epoch's, and
ReduceLROnPlateau follows the epoch's training loss). Everything else (checkpoints and resume,
metrics files, trackers, progress, the initialisation report, pruning) is a callback
(:mod:`qt.training.callbacks`). The shuffling order of an epoch is a function of (seed, epoch)
and the partial-epoch sums are part of the state, so a resumed run ends exactly where an
uninterrupted one does.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from qt.core.learners import Learner
from qt.training.callbacks import Callback
from qt.training.data import DataSplits, Split
from qt.training.evaluation import CLASSIFICATION, clip_, evaluate, grad_norms, measure
from qt.training.state import Diverged, TrainerConfig, TrainState, epoch_order, zero_acc
from qt.training.tasks import Task

Factory = Callable[..., object]


class Trainer:
    """Trains a :class:`~qt.core.learners.Learner` on in-memory splits.

    ``optimizer(params)`` and ``scheduler(optimizer)`` are factories (``functools.partial``, or
    Hydra's ``_partial_`` objects); ``loss_fn(logits, y)`` any loss (a loss with
    ``needs_inputs = True``, such as distillation, also gets the batch: ``loss_fn(logits, y, x)``).
    ``task`` (:mod:`qt.training.tasks`): what is measured and which epoch is kept (default: classification).
    """

    def __init__(
        self,
        learner: Learner,
        data: DataSplits,
        optimizer: Factory,
        scheduler: Factory | None = None,
        cfg: TrainerConfig | None = None,
        device: torch.device | str = "cpu",
        loss_fn: torch.nn.Module | None = None,
        callbacks: Sequence[Callback] = (),
        started: float | None = None,
        task: Task = CLASSIFICATION,
    ):
        self.task = task
        self.device = torch.device(device)
        self.learner = learner.to(self.device)
        self.loss_fn = (loss_fn or torch.nn.CrossEntropyLoss()).to(self.device)
        self.data = data.to(self.device)
        self.has_val = task.has_val(self.data)  # without one (val_fraction 0) the last epoch's model is kept
        self.cfg = cfg or TrainerConfig()
        self.groups = learner.param_groups()
        self.optimizer = optimizer(learner.trainable_parameters())
        self.scheduler = scheduler(self.optimizer) if scheduler is not None else None
        self.state = TrainState()
        self.step_times: list[float] = []
        self.callbacks = list(callbacks)
        self.clock = time.perf_counter() if started is None else started  # this session's start (perf_counter)
        self.previous_sessions_s = 0.0  # wall time of the sessions before a resume
        self.call("setup")

    def call(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def elapsed(self) -> float:
        """Wall time of the run: earlier sessions (up to their last checkpoint) plus this one so far."""
        return self.previous_sessions_s + time.perf_counter() - self.clock

    def n_batches(self) -> int:
        n = self.task.n_batches(self)
        return min(n, int(self.cfg.limit_train_batches)) if self.cfg.limit_train_batches else n

    def fit(self) -> None:
        """Train to ``cfg.epochs``; raises :class:`~qt.training.state.Diverged` on a non-finite loss (callbacks may raise too)."""
        self.call("on_fit_start")
        try:
            while self.state.epoch < self.cfg.epochs:
                self.call("on_epoch_start")
                self.train_epoch()
                self.end_epoch()
        except BaseException as e:
            self.call("on_exception", e)
            raise
        self.call("on_fit_end")

    def train_epoch(self) -> None:
        st = self.state
        for b, batch in self.task.batches(self, st.step_in_epoch, self.n_batches()):
            t0 = time.perf_counter()
            self.train_step(batch)
            dt = time.perf_counter() - t0
            self.step_times.append(dt)
            st.train_time_s += dt
            st.epoch_train_time_s += dt
            st.step_in_epoch, st.global_step = b + 1, st.global_step + 1
            self.call("on_train_batch_end")

    def train_step(self, batch) -> None:
        """One update: the weights generated once (the circuit does not see the batch), the task's loss on the batch
        (a supervised task's examples, an episode), backward, per-part gradient norms, clip, step."""
        st, acc = self.state, self.state.acc
        loss, sums = self.task.step(self, batch, self.learner.weights())
        if not torch.isfinite(loss):
            raise Diverged(f"loss is {float(loss.detach())} at epoch {st.epoch + 1}, step {st.step_in_epoch + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norms = grad_norms(self.groups)
        for name, norm in norms.items():
            acc["gn"][name] = acc["gn"].get(name, 0.0) + float(norm)
        if self.cfg.clip_norm and norms:
            clip_(self.groups, norms, float(self.cfg.clip_norm))
        self.optimizer.step()
        acc["loss"] += float(loss.detach()) * sums["count"]
        for key, value in sums.items():
            acc[key] = acc.get(key, 0) + value
        acc["steps"] += 1

    def end_epoch(self) -> dict:
        """Validate, append the epoch's metrics row, step the scheduler, decide the kept model, then the callbacks."""
        st, acc, task = self.state, self.state.acc, self.task
        val_loss, val = task.evaluate(self, "val")[:2] if self.has_val else (None, {})
        train_loss = acc["loss"] / max(acc["count"], 1)  # the training objective (CE, or KD)
        train = task.means(acc)
        row = {"epoch": st.epoch + 1, "step": st.global_step, "train_loss": train_loss}
        if task.metrics == ("acc",):  # classification's columns, in their place
            row |= {"train_acc": train["acc"], "val_loss": val_loss, "val_acc": val.get("acc")}
        else:
            row |= {"train_acc": None, "val_loss": val_loss, "val_acc": None}
        row |= {
            "lr": self.optimizer.param_groups[0]["lr"], "epoch_train_time_s": st.epoch_train_time_s,
            "steps_per_s": acc["steps"] / st.epoch_train_time_s if st.epoch_train_time_s > 0 else None,
        }  # fmt: skip
        if task.metrics != ("acc",):  # another task's metrics: columns after qt's (qt.results.schema.write_metrics)
            row |= {f"{part}_{m}": values.get(m) for m in task.metrics for part, values in (("train", train), ("val", val))}
        row |= {f"grad_norm_{k}": acc["gn"][k] / max(acc["steps"], 1) for k in ("circuit", "mapping", "target") if k in acc["gn"]}
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val_loss if self.has_val else train_loss)
        elif self.scheduler is not None:
            self.scheduler.step()
        st.rows.append(row)
        st.epoch, st.step_in_epoch, st.acc, st.epoch_train_time_s = st.epoch + 1, 0, zero_acc(), 0.0
        monitored = val.get(task.monitor)
        if not self.has_val or task.improved(monitored, st):  # no validation: the last epoch's model is the one kept
            st.best_epoch = row["epoch"]
            if self.has_val:
                task.keep(monitored, st)
        self.call("on_epoch_end", row)
        return row

    def progress(self) -> dict:
        """Summary fields of the training so far (best epoch, counts, times), whatever the run's end."""
        st = self.state
        return {
            self.task.best_key: self.task.best(st) if st.best_epoch and self.has_val else None,
            "best_epoch": st.best_epoch,
            "epochs_completed": st.epoch,
            "steps": st.global_step,
            "train_time_s": st.train_time_s,
            "wall_time_s": self.elapsed(),
            "step_time_s": statistics.median(self.step_times) if self.step_times else None,
        }

    def final_metrics(self) -> dict:
        """The learner as it is now (the kept model, once a Checkpoint callback put it back) on train, val and test.

        The test set's only use. ``test_predicted``: what the task keeps per test example (the class predicted for
        each test image, in order; None for a task that keeps none). ``test_subset``: also the accuracy on that
        many test images drawn at random with the run's seed, the way the authors report theirs (1,000 of 10,000).
        """
        task = self.task
        train_loss, train, _ = task.evaluate(self, "train")
        val_loss, val, _ = task.evaluate(self, "val") if self.has_val else (None, {}, None)
        test_loss, tested, predicted = task.evaluate(self, "test")
        out = {task.best_key: val.get(task.monitor), "best_epoch": self.state.best_epoch, "val_loss": val_loss, "test_predicted": predicted}
        out |= {"test_loss": test_loss, "train_loss": train_loss}
        out |= {f"{part}_{m}": values.get(m) for m in task.metrics for part, values in (("test", tested), ("train", train))}
        out |= {f"val_{m}": val.get(m) for m in task.metrics if m != task.monitor}
        if self.cfg.test_subset:
            bs, test = self.cfg.eval_batch_size, self.data.test
            idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(int(self.cfg.seed)))[: int(self.cfg.test_subset)]
            out["test_subset_acc"] = evaluate(self.learner, Split(test.x[idx.to(test.x.device)], test.y[idx.to(test.x.device)]), bs)[1]
        return out
