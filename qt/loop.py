"""The one training loop, for every mode (QT, classical, controls).

Per step: generate the target's weights once (``learner.weights()``), run the batch through
the target functionally, cross-entropy, backward, per-part gradient norms, clip, step.
Per epoch: validation, a metrics row, LR scheduler, best-checkpoint tracking, ``last.pt``.
Without a validation split (``dataset.val_fraction=0``, as the authors train) the model of the
last epoch is the one evaluated and ReduceLROnPlateau follows the epoch's training loss.
Resume: ``last.pt`` (also written every ``checkpoint_every`` steps) holds everything needed
to continue mid-epoch and end exactly where an uninterrupted run ends: the shuffling
order of an epoch is a function of (seed, epoch) and the partial-epoch accumulators are saved.
"""

from __future__ import annotations

import logging
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from qt.data import DataSplits, Split
from qt.errors import ANOTHER_RUN_DIR, RunDirError
from qt.learner import Learner
from qt.loggers import Loggers
from qt.results import load_checkpoint, plot_curves, save_checkpoint, write_metrics

log = logging.getLogger(__name__)


@dataclass
class TrainerConfig:
    """The ``trainer`` config group (conf/trainer/default.yaml holds the values and says what each is)."""

    epochs: int
    batch_size: int
    eval_batch_size: int
    clip_norm: float | None
    seed: int
    device: str
    threads: int | None
    progress: bool | None  # None: only on a terminal
    checkpoint_every: int  # steps between mid-epoch last.pt writes (0: epoch ends only)
    limit_train_batches: int | None  # cap steps per epoch (smoke tests, quick looks)
    test_subset: int | None  # also report the accuracy on this many random test images (the authors report 1,000)
    resume: bool  # continue from checkpoints/last.pt when the run dir has one


@dataclass
class TrainState:
    """Everything of the loop that must survive a kill (besides model/optimizer/scheduler)."""

    epoch: int = 0  # epochs fully completed
    step_in_epoch: int = 0  # batches done in the current epoch
    global_step: int = 0
    best_val_acc: float = -1.0
    best_epoch: int | None = None
    rows: list[dict] = field(default_factory=list)
    acc: dict = field(default_factory=dict)  # partial-epoch sums
    initial_loss: float | None = None  # cross-entropy of the first training batch, before any step
    train_time_s: float = 0.0  # in training steps (forward, backward, optimizer), all sessions
    wall_time_s: float = 0.0  # the whole run up to the last checkpoint, all sessions (see Trainer.elapsed)
    epoch_train_time_s: float = 0.0  # training steps of the current epoch


class Diverged(Exception):
    """Non-finite loss: the run stops with status 'diverged'."""


class Pruned(Exception):
    """A sweep's pruner stopped the run after an epoch (qt.pruning): status 'pruned'."""


def _zero_acc() -> dict:
    return {"loss": 0.0, "correct": 0, "count": 0, "steps": 0, "gn": {}}


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g).to(device)


@torch.no_grad()
def evaluate(learner: Learner, split: Split, batch_size: int) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the learner's current weights on a split."""
    learner.eval()
    weights = learner.weights()
    loss, correct = 0.0, 0
    for i in range(0, len(split), batch_size):
        x, y = split.x[i : i + batch_size], split.y[i : i + batch_size]
        logits = learner(x, weights)
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    learner.train()
    n = max(len(split), 1)
    return loss / n, correct / n


def grad_norms(groups: dict[str, list[torch.nn.Parameter]]) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """(L2 norm of each group's gradients, every gradient): one fused norm op per group."""
    norms, grads = {}, []
    for name, params in groups.items():
        g = [p.grad for p in params if p.grad is not None]
        if g:
            norms[name] = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(g)))
            grads += g
    return norms, grads


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


def clip_(grads: list[torch.Tensor], total_norm: torch.Tensor, max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` given the norm already computed: scale by min(1, max / (norm + 1e-6))."""
    coef = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)
    torch._foreach_mul_(grads, coef)


class Trainer:
    def __init__(
        self,
        learner: Learner,
        data: DataSplits,
        optimizer: Callable,
        scheduler: Callable | None,
        cfg: TrainerConfig,
        run_dir: Path,
        device: torch.device,
        fingerprint: dict,
        loss_fn: torch.nn.Module,
    ):
        self.learner = learner.to(device)
        self.loss_fn = loss_fn.to(device)  # called as loss_fn(logits, y, x): see qt.losses
        self.data = DataSplits(
            data.train.to(device), data.val.to(device), data.test.to(device), data.num_classes, data.name
        )
        self.has_val = len(self.data.val) > 0  # without one (val_fraction 0) the last epoch's model is kept
        self.cfg = cfg
        self.device = device
        self.params = learner.trainable_parameters()
        self.groups = learner.param_groups()
        self.optimizer = optimizer(self.params)
        self.scheduler = scheduler(self.optimizer) if scheduler is not None else None
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.fingerprint = fingerprint
        self.state = TrainState(acc=_zero_acc())
        self.step_times: list[float] = []
        self.init_weights = learner.weight_report()  # before any resume: the weights at initialisation
        self.chance_loss = math.log(self.data.num_classes)  # cross-entropy of a uniform guess
        self.extra_checkpoint: dict = {}  # stored in last.pt as is (e.g. the run's Hydra config text)
        self.clock = time.perf_counter()  # this session's start (run() sets it to when the run began)
        self.previous_sessions_s = 0.0  # wall time of the sessions before a resume
        self.loggers = Loggers([])  # trackers (qt.loggers); the results schema is written regardless
        # after each epoch, pruning(rows so far, last_epoch) -> why to stop or None (qt.pruning; sweeps with a pruner)
        self.pruning: Callable[[list[dict], bool], str | None] | None = None

    def elapsed(self) -> float:
        """Wall time of the run: earlier sessions (up to their last checkpoint) plus this one so far."""
        return self.previous_sessions_s + time.perf_counter() - self.clock

    # -- checkpoints ---------------------------------------------------------------------
    def save_last(self) -> None:
        self.state.wall_time_s = self.elapsed()
        save_checkpoint(
            {
                "learner": self.learner.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "state": asdict(self.state),
                "rng": rng_states(),
                "fingerprint": self.fingerprint,
                **self.extra_checkpoint,
            },
            self.ckpt_dir / "last.pt",
        )

    def try_resume(self) -> bool:
        path = self.ckpt_dir / "last.pt"
        if not (self.cfg.resume and path.exists()):
            return False
        ckpt = load_checkpoint(path)
        self.learner.load_state_dict(ckpt["learner"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt["scheduler"] is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        unknown = set(ckpt["state"]) - {f.name for f in fields(TrainState)}
        if unknown:
            raise RunDirError(
                f"{path} was written by another qt version (training state {sorted(unknown)}): {ANOTHER_RUN_DIR}"
            )
        self.state = TrainState(**ckpt["state"])
        self.previous_sessions_s = self.state.wall_time_s
        restore_rng_states(ckpt["rng"])
        log.info(
            "resumed from %s: epoch %d, step %d of the epoch (global step %d)",
            path,
            self.state.epoch + 1,
            self.state.step_in_epoch,
            self.state.global_step,
        )
        return True

    # -- training ------------------------------------------------------------------------
    def _n_batches(self) -> int:
        n = math.ceil(len(self.data.train) / self.cfg.batch_size)
        if self.cfg.limit_train_batches:
            n = min(n, int(self.cfg.limit_train_batches))
        return n

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        acc = self.state.acc
        weights = self.learner.weights()  # once per step: the circuit does not see the batch
        logits = self.learner(x, weights)
        loss = self.loss_fn(logits, y, x)
        if not torch.isfinite(loss):
            raise Diverged(
                f"loss is {float(loss)} at epoch {self.state.epoch + 1}, step {self.state.step_in_epoch + 1}"
            )
        if self.state.initial_loss is None:
            self.state.initial_loss = float(F.cross_entropy(logits.detach(), y))
            self.log_initial_loss()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norms, grads = grad_norms(self.groups)
        for name, norm in norms.items():
            acc["gn"][name] = acc["gn"].get(name, 0.0) + float(norm)
        if self.cfg.clip_norm and grads:
            clip_(grads, torch.linalg.vector_norm(torch.stack(list(norms.values()))), float(self.cfg.clip_norm))
        self.optimizer.step()
        acc["loss"] += float(loss.detach()) * len(y)
        acc["correct"] += int((logits.argmax(1) == y).sum())
        acc["count"] += len(y)
        acc["steps"] += 1

    def train_epoch(self) -> None:
        st, cfg = self.state, self.cfg
        order = epoch_order(len(self.data.train), cfg.seed, st.epoch, self.device)
        n_batches = self._n_batches()
        show = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
        bar = tqdm(
            total=n_batches,
            initial=st.step_in_epoch,
            desc=f"epoch {st.epoch + 1}/{cfg.epochs}",
            disable=not show,
            leave=False,
            dynamic_ncols=True,
        )
        for b in range(st.step_in_epoch, n_batches):
            t0 = time.perf_counter()
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            self.train_step(self.data.train.x[idx], self.data.train.y[idx])
            dt = time.perf_counter() - t0
            self.step_times.append(dt)
            st.train_time_s += dt
            st.epoch_train_time_s += dt
            st.step_in_epoch = b + 1
            st.global_step += 1
            bar.update(1)
            if st.acc["count"]:
                bar.set_postfix(loss=f"{st.acc['loss'] / st.acc['count']:.4f}", refresh=False)
            if cfg.checkpoint_every and st.global_step % cfg.checkpoint_every == 0 and b + 1 < n_batches:
                self.save_last()
        bar.close()

    def end_epoch(self) -> dict:
        st = self.state
        has_val = self.has_val
        val_loss, val_acc = evaluate(self.learner, self.data.val, self.cfg.eval_batch_size) if has_val else (None, None)
        acc = st.acc
        train_loss = acc["loss"] / max(acc["count"], 1)  # the training objective (CE, or KD)
        row = {
            "epoch": st.epoch + 1,
            "step": st.global_step,
            "train_loss": train_loss,
            "train_acc": acc["correct"] / max(acc["count"], 1),
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": self.optimizer.param_groups[0]["lr"],
            "epoch_train_time_s": st.epoch_train_time_s,
            "steps_per_s": acc["steps"] / st.epoch_train_time_s if st.epoch_train_time_s > 0 else None,
        }
        for name in ("circuit", "mapping", "target"):
            if name in acc["gn"]:
                row[f"grad_norm_{name}"] = acc["gn"][name] / max(acc["steps"], 1)
        if self.scheduler is not None:
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(val_loss if has_val else train_loss)
            else:
                self.scheduler.step()
        st.rows.append(row)
        st.epoch += 1
        st.step_in_epoch = 0
        st.acc = _zero_acc()
        st.epoch_train_time_s = 0.0
        if not has_val or val_acc > st.best_val_acc:  # no validation: the last epoch's model is the one kept
            st.best_epoch = row["epoch"]
            if has_val:
                st.best_val_acc = val_acc
            save_checkpoint({"learner": self.learner.state_dict(), "epoch": row["epoch"]}, self.ckpt_dir / "best.pt")
        self.loggers.log_epoch(row)  # before last.pt: a kill in between re-runs (and re-logs) this epoch identically
        self.save_last()
        write_metrics(self.run_dir, st.rows)
        plot_curves(self.run_dir, st.rows)
        gn = "  ".join(f"|g_{k}| {row[f'grad_norm_{k}']:.3g}" for k in ("circuit", "mapping", "target") if f"grad_norm_{k}" in row)
        val = f"val loss {val_loss:.4f} acc {val_acc:.4f}" if has_val else "no val split"
        log.info(
            "epoch %d/%d  train loss %.4f acc %.4f  %s  %s  %.1fs  %.1f steps/s",
            row["epoch"],
            self.cfg.epochs,
            row["train_loss"],
            row["train_acc"],
            val,
            gn,
            row["epoch_train_time_s"],
            row["steps_per_s"] or 0.0,
        )
        return row

    # -- the start: is the network where a classical one starts? --------------------------
    def init_report(self) -> dict:
        """summary.json's ``init``: first-step loss against chance, generated weights against the default init."""
        return {
            "first_step_loss": self.state.initial_loss,
            "chance_loss": self.chance_loss,
            "tensors": self.init_weights,
        }

    def log_init_weights(self) -> None:
        parts = []
        for name, r in self.init_weights.items():
            ratio = "-" if r["std_ratio"] is None else f"{r['std_ratio']:.2f}"
            shape = [f"{r[k]:.2f}" for k in ("unit_mean_share", "unit_similarity") if r[k] is not None]
            parts.append(f"{name} {ratio}" + (f" ({', '.join(shape)})" if shape else ""))
        log.info("init: weight std / default-init std (unit-mean share, unit similarity): %s", ", ".join(parts))

    def log_initial_loss(self) -> None:
        loss, chance = self.state.initial_loss, self.chance_loss
        if loss > 2 * chance:
            log.warning(
                "first-step loss %.4g is %.0fx chance (ln %d = %.2f): the network starts far from a trainable init "
                "(see the init line above; mapping.scale=init gives each tensor its default-init scale)",
                loss,
                loss / chance,
                self.data.num_classes,
                chance,
            )
        else:
            log.info("first-step loss %.4f (chance: ln %d = %.4f)", loss, self.data.num_classes, chance)

    def fit(self) -> None:
        """Train to ``epochs``; raises :class:`Diverged` on a non-finite loss, :class:`Pruned` when pruned."""
        if self.state.global_step == 0:
            self.log_init_weights()
        while self.state.epoch < self.cfg.epochs:
            self.train_epoch()
            self.end_epoch()
            if self.pruning is not None and (why := self.pruning(self.state.rows, self.state.epoch >= self.cfg.epochs)):
                raise Pruned(why)

    def progress(self) -> dict:
        """Summary fields of the training so far (best epoch, counts, times), whatever the run's end."""
        st = self.state
        return {
            "best_val_acc": st.best_val_acc if st.best_epoch and self.has_val else None,
            "best_epoch": st.best_epoch,
            "epochs_completed": st.epoch,
            "steps": st.global_step,
            "train_time_s": st.train_time_s,
            "wall_time_s": self.elapsed(),
            "step_time_s": statistics.median(self.step_times) if self.step_times else None,
        }

    def final_metrics(self) -> dict:
        """Evaluate the best-validation checkpoint (without validation: the last epoch's) on train, val and test.

        The test set's only use. ``test_subset``: also the accuracy on that many test images drawn
        at random with the run's seed, the way the authors report theirs (1,000 of 10,000).
        """
        best = self.ckpt_dir / "best.pt"
        if best.exists():
            self.learner.load_state_dict(load_checkpoint(best)["learner"])
        bs = self.cfg.eval_batch_size
        train_loss, train_acc = evaluate(self.learner, self.data.train, bs)
        val_loss, val_acc = evaluate(self.learner, self.data.val, bs) if self.has_val else (None, None)
        test_loss, test_acc = evaluate(self.learner, self.data.test, bs)
        out = {
            "best_val_acc": val_acc,
            "best_epoch": self.state.best_epoch,
            "val_loss": val_loss,
            "test_acc": test_acc,
            "test_loss": test_loss,
            "train_acc": train_acc,
            "train_loss": train_loss,
        }
        if self.cfg.test_subset:
            test = self.data.test
            g = torch.Generator().manual_seed(int(self.cfg.seed))
            idx = torch.randperm(len(test), generator=g)[: int(self.cfg.test_subset)].to(test.x.device)
            out["test_subset_acc"] = evaluate(self.learner, Split(test.x[idx], test.y[idx]), bs)[1]
        return out
