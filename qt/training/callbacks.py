"""The training loop's side jobs, each in its own place, passed to :class:`qt.training.loop.Trainer` at construction.

A callback overrides the hooks it needs; the trainer calls them in list order:

* ``setup(trainer)``: once, when the trainer is built (before any resume);
* ``on_fit_start(trainer)``, ``on_epoch_start(trainer)``, ``on_train_batch_end(trainer)``;
* ``on_epoch_end(trainer, row)``: ``row`` is the epoch's metrics.csv row, already in ``trainer.state``;
* ``on_fit_end(trainer)``, and ``on_exception(trainer, error)`` when fit ends by an exception
  (divergence, pruning, an interrupt), which is then re-raised.

Order matters where files do: trackers log an epoch before ``last.pt`` is written (a kill in
between re-runs and re-logs that epoch identically), and a pruner decides after it.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from qt.errors import ANOTHER_RUN_DIR, RunDirError
from qt.results.plots import plot_curves
from qt.results.schema import load_checkpoint, save_checkpoint, write_metrics
from qt.training.state import TrainState

#: qt.training.loop.Trainer (not imported: the loop imports this module)
Trainer = Any

log = logging.getLogger("qt.training")


class Callback:
    """A no-op for every hook: subclasses override what they need."""

    def setup(self, trainer: Trainer) -> None: ...
    def on_fit_start(self, trainer: Trainer) -> None: ...
    def on_epoch_start(self, trainer: Trainer) -> None: ...
    def on_train_batch_end(self, trainer: Trainer) -> None: ...
    def on_epoch_end(self, trainer: Trainer, row: dict) -> None: ...
    def on_fit_end(self, trainer: Trainer) -> None: ...
    def on_exception(self, trainer: Trainer, error: BaseException) -> None: ...


def rng_states() -> dict:
    """The global random states a step may draw from (finite-shot sampling, dropout): CPU and every CUDA device."""
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["cpu"])
    if states.get("cuda") is not None:
        if torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
        else:
            log.warning("the checkpoint holds CUDA random states but torch sees no GPU: random draws will differ from the run's")


def optimizer_state_for(learner: Any, ckpt: dict, path: Path) -> dict:
    """The checkpoint's optimizer state with its indices in the order of ``learner``'s trainable parameters now.

    The optimizer numbers parameters in the order it was given them; a later qt may register them in
    another order (the mapping's per-tensor gains moved before its MLP). ``last.pt`` names them
    (``param_names``); one written before it did lists them in its learner state dict, whose order is
    the registration order that optimizer saw. A state that still does not fit is refused in one line.
    """
    state = ckpt["optimizer"]
    now = learner.trainable_names()
    then = ckpt.get("param_names") or [name for name in ckpt["learner"] if name in set(now)]
    saved = sum(len(group["params"]) for group in state["param_groups"])
    if sorted(then) != sorted(now) or saved != len(now):
        raise RunDirError(f"{path} trained other parameters than this config has ({saved} against {len(now)}): {ANOTHER_RUN_DIR}")
    if then != now:
        where = {i: now.index(name) for i, name in enumerate(then)}
        state = {
            "state": {where[i]: v for i, v in state["state"].items()},
            "param_groups": [{**g, "params": sorted(where[i] for i in g["params"])} for g in state["param_groups"]],  # positional
        }
    params = learner.trainable_parameters()
    for i, slots in state["state"].items():
        shapes = {tuple(v.shape) for v in slots.values() if torch.is_tensor(v) and v.dim() > 0}
        if shapes - {tuple(params[i].shape)}:
            raise RunDirError(f"{path}'s optimizer state does not fit {now[i]} (written by another qt version): {ANOTHER_RUN_DIR}")
    return state


class Checkpoint(Callback):
    """``checkpoints/last.pt`` (everything to resume mid-epoch, bit for bit) and ``checkpoints/best.pt`` (the model kept).

    ``last.pt`` is written at every epoch end and every ``every`` steps; ``best.pt`` when the
    validation accuracy improves (without a validation split: every epoch, the last one kept).
    ``fingerprint`` (the config a resume must match) and ``extra`` are stored in ``last.pt`` as is.
    """

    def __init__(self, run_dir: Path, fingerprint: dict | None = None, every: int = 0, extra: dict | None = None):
        self.dir = Path(run_dir) / "checkpoints"
        self.fingerprint, self.every, self.extra = fingerprint or {}, int(every or 0), extra or {}

    def save_last(self, trainer: Trainer) -> None:
        trainer.state.wall_time_s = trainer.elapsed()
        scheduler = trainer.scheduler.state_dict() if trainer.scheduler is not None else None
        state = {"learner": trainer.learner.state_dict(), "optimizer": trainer.optimizer.state_dict(), "scheduler": scheduler}
        state |= {"state": asdict(trainer.state), "rng": rng_states(), "fingerprint": self.fingerprint, **self.extra}
        if trainer.task.state_dict():  # what the task carries (task=rl: its episodes' returns, a critic)
            state["task"] = trainer.task.state_dict()
        state["param_names"] = trainer.learner.trainable_names()  # what the optimizer's state indices are
        save_checkpoint(state, self.dir / "last.pt")

    def restore(self, trainer: Trainer) -> bool:
        """Continue from ``last.pt`` if there is one; False when there is none."""
        path = self.dir / "last.pt"
        if not path.exists():
            return False
        ckpt = load_checkpoint(path)
        unknown = set(ckpt["state"]) - {f.name for f in fields(TrainState)}
        if unknown:
            raise RunDirError(f"{path} was written by another qt version (training state {sorted(unknown)}): {ANOTHER_RUN_DIR}")
        trainer.learner.load_state_dict(ckpt["learner"])
        trainer.optimizer.load_state_dict(optimizer_state_for(trainer.learner, ckpt, path))
        if trainer.scheduler is not None and ckpt["scheduler"] is not None:
            trainer.scheduler.load_state_dict(ckpt["scheduler"])
        trainer.state = TrainState(**ckpt["state"])
        trainer.task.load_state_dict(ckpt.get("task") or {}, trainer)
        trainer.previous_sessions_s = trainer.state.wall_time_s
        restore_rng_states(ckpt["rng"])
        st = trainer.state
        log.info("resumed from %s: epoch %d, step %d of the epoch (global step %d)", path, st.epoch + 1, st.step_in_epoch, st.global_step)
        return True

    def load_best(self, trainer: Trainer) -> None:
        """Put the kept model (``best.pt``) back into the learner, if one was written."""
        best = self.dir / "best.pt"
        if best.exists():
            trainer.learner.load_state_dict(load_checkpoint(best)["learner"])

    def on_train_batch_end(self, trainer: Trainer) -> None:
        st = trainer.state
        if self.every and st.global_step % self.every == 0 and st.step_in_epoch < trainer.n_batches():
            self.save_last(trainer)

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
        if trainer.state.best_epoch == row["epoch"]:
            save_checkpoint({"learner": trainer.learner.state_dict(), "epoch": row["epoch"]}, self.dir / "best.pt")
        self.save_last(trainer)


class MetricsFiles(Callback):
    """``metrics.csv`` (every epoch's row) and ``curves.png`` in the run dir, rewritten at each epoch end."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
        write_metrics(self.run_dir, trainer.state.rows)
        plot_curves(self.run_dir, trainer.state.rows)


class ProgressBar(Callback):
    """A tqdm bar per epoch (``enabled=None``: only on a terminal), closed however the epoch ends."""

    def __init__(self, enabled: bool | None = None):
        self.enabled, self.bar = enabled, None

    def on_epoch_start(self, trainer: Trainer) -> None:
        show = self.enabled if self.enabled is not None else sys.stderr.isatty()
        st = trainer.state
        desc = f"epoch {st.epoch + 1}/{trainer.cfg.epochs}"
        self.bar = tqdm(total=trainer.n_batches(), initial=st.step_in_epoch, desc=desc, disable=not show, leave=False, dynamic_ncols=True)

    def on_train_batch_end(self, trainer: Trainer) -> None:
        acc = trainer.state.acc
        self.bar.update(1)
        if acc["count"]:
            self.bar.set_postfix(loss=f"{acc['loss'] / acc['count']:.4f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
        self.close()

    def on_exception(self, trainer: Trainer, error: BaseException) -> None:
        self.close()


class InitReport(Callback):
    """Is the network where a classical one starts? The generated weights against the target's default init
    (taken when the trainer is built, before any resume) and the first step's loss against chance:
    logged, and :meth:`report` is summary.json's ``init``."""

    def setup(self, trainer: Trainer) -> None:
        self.weights = trainer.learner.weight_report()
        self.chance, self.chance_said = trainer.task.chance(trainer.data)  # the loss of a guess that knows nothing

    def report(self, trainer: Trainer) -> dict:
        return {"first_step_loss": trainer.state.initial_loss, "chance_loss": self.chance, "tensors": self.weights}

    def on_fit_start(self, trainer: Trainer) -> None:
        if trainer.state.global_step:
            return
        parts = []
        for name, r in self.weights.items():
            ratio = "-" if r["std_ratio"] is None else f"{r['std_ratio']:.2f}"
            shape = [f"{r[k]:.2f}" for k in ("unit_mean_share", "unit_similarity") if r[k] is not None]
            parts.append(f"{name} {ratio}" + (f" ({', '.join(shape)})" if shape else ""))
        log.info("init: weight std / default-init std (unit-mean share, unit similarity): %s", ", ".join(parts))

    def on_train_batch_end(self, trainer: Trainer) -> None:
        if trainer.state.global_step != 1:
            return
        loss, chance, said = trainer.state.initial_loss, self.chance, self.chance_said
        if loss is None or chance is None:  # a task without a chance loss (a policy)
            return
        if loss > 2 * chance:
            log.warning(
                "first-step loss %.4g is %.0fx chance (%s = %.2f): the network starts far from a trainable init "
                "(see the init line above; mapping.scale=init gives each tensor its default-init scale)",
                loss, loss / chance, said, chance,
            )  # fmt: skip
        else:
            log.info("first-step loss %.4f (chance: %s = %.4f)", loss, said, chance)


class EpochLog(Callback):
    """One console line per epoch: losses, accuracies, per-part gradient norms, time."""

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
        parts = ("circuit", "mapping", "target")
        gn = "  ".join(f"|g_{k}| {row[f'grad_norm_{k}']:.3g}" for k in parts if f"grad_norm_{k}" in row)
        m = trainer.task.monitor
        shown = (lambda v: f"{v:.4f}") if m == "acc" else (lambda v: f"{v:.4g}")  # noqa: E731
        loss = "" if row["val_loss"] is None else f"loss {row['val_loss']:.4f} "
        val = "no val split" if row.get(f"val_{m}") is None else f"val {loss}{m} {shown(row[f'val_{m}'])}"
        log.info(
            "epoch %d/%d  train loss %.4f %s %s  %s  %s  %.1fs  %.1f steps/s",
            row["epoch"], trainer.cfg.epochs, row["train_loss"], m, shown(row[f"train_{m}"]), val, gn,
            row["epoch_train_time_s"], row["steps_per_s"] or 0.0,
        )  # fmt: skip


class KeepBest(Callback):
    """The kept model (best validation epoch; without validation, the last) held in memory: a Checkpoint without files."""

    def __init__(self):
        self.best: dict | None = None

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
        if trainer.state.best_epoch == row["epoch"]:
            self.best = {k: v.detach().clone() for k, v in trainer.learner.state_dict().items()}

    def load_best(self, trainer: Trainer) -> None:
        if self.best is not None:
            trainer.learner.load_state_dict(self.best)
