"""One experiment, from a composed config to results on disk. ``qt.train`` is its entry point."""

from __future__ import annotations

import datetime as dt
import logging
import platform
import random
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

import qt
from qt.experiment.build import build_data, build_learner, build_task, fill_blocks, build_loggers, build_optimization, check_budget, resolve_device
from qt.experiment.config import diff_keys, fingerprint, resume_bound
from qt.experiment.validation import validate
from qt.errors import ANOTHER_RUN_DIR, RunDirError
from qt.training.callbacks import Callback, Checkpoint, EpochLog, InitReport, MetricsFiles, ProgressBar
from qt.training.evaluation import evaluate
from qt.training.data import DataSplits
from qt.training.loggers import Loggers, RunInfo
from qt.training.loop import Trainer
from qt.training.state import Diverged, Pruned, TrainerConfig
from qt.training.tasks import Task
from qt.core.targets import count_weights
from qt.results.objectives import objective_values
from qt.results.compat import upgrade
from qt.results.schema import load_checkpoint, read_summary, write_predictions, write_summary

log = logging.getLogger(__name__)


GENERATOR_ROWS = {"quantum": "QNN params", "classical": "generator params (classical)"}


def format_param_table(table: dict) -> str:
    generator = table.get("generator", "quantum")
    parts = [
        (GENERATOR_ROWS[generator], f"{table['qnn_params']:,}"),
        ("mapping params", f"{table['mapping_params']:,}"),
    ] if generator in GENERATOR_ROWS else [("shared values (hashed)", f"{table['trainable_params']:,}")]  # fmt: skip
    rows = [
        ("target weights M", f"{table['target_weights']:,}"),
        ("qubits", "-" if table["n_qubits"] is None else str(table["n_qubits"])),
        *parts,
        ("total trainable", f"{table['trainable_params']:,}"),
        ("compression M/trainable", f"{table['compression_ratio']:.2f}x"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"parameters ({table['mode']}):"] + [f"  {k:<{width}}  {v:>10}" for k, v in rows]
    return "\n".join(lines)


def versions() -> dict:
    out = {"qt": qt.__version__, "torch": torch.__version__, "hydra": hydra.__version__, "python": platform.python_version()}
    try:
        out["pennylane"] = version("pennylane")
    except PackageNotFoundError:
        pass
    return out


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def describe_teacher(loss_fn, data, batch_size: int, device: torch.device) -> dict | None:
    """A distillation teacher's source and accuracy (val, test), for summary.json."""
    teacher = getattr(loss_fn, "teacher", None)
    if teacher is None:
        return None
    teacher.to(device)
    val_acc = evaluate(teacher, data.val.to(device), batch_size)[1] if len(data.val) else None
    test_acc = evaluate(teacher, data.test.to(device), batch_size)[1]
    info = {"source": loss_fn.source, "params": count_weights(teacher), "val_acc": val_acc, "test_acc": test_acc}
    val = "no val split" if val_acc is None else f"val acc {val_acc:.4f}"
    log.info("teacher %s: %s weights, %s, test acc %.4f", info["source"], f"{info['params']:,}", val, test_acc)
    return info


#: a run dir's ``.hydra/*.yaml`` as they were before Hydra rewrote them for this invocation (``qt.train`` reads them
#: first): the record of a run whose ``last.pt`` does not keep its own (written by a qt before it did)
HYDRA_FILES_BEFORE: dict[Path, dict[str, str]] = {}


def remember_hydra_files(run_dir: Path) -> None:
    """Keep ``run_dir``'s ``.hydra/*.yaml`` before Hydra rewrites them (:data:`HYDRA_FILES_BEFORE`)."""
    run_dir = Path(run_dir).resolve()
    HYDRA_FILES_BEFORE[run_dir] = {p.name: p.read_text() for p in sorted((run_dir / ".hydra").glob("*.yaml"))}


def restore_hydra_files(run_dir: Path) -> bool:
    """Put a run's own ``.hydra/*.yaml`` back (Hydra rewrites them for every invocation); False when no run lives there."""
    last = Path(run_dir) / "checkpoints" / "last.pt"
    if not last.exists():
        return False
    kept = load_checkpoint(last).get("hydra_files") or HYDRA_FILES_BEFORE.get(Path(run_dir).resolve()) or {}
    for name, text in kept.items():
        (Path(run_dir) / ".hydra" / name).write_text(text)
    return True


def _protect_run_dir(run_dir: Path, fp: dict, resume: bool) -> None:
    """Refuse a run dir whose checkpoint comes from a different config, or any run's with ``trainer.resume=false``."""
    last = run_dir / "checkpoints" / "last.pt"
    if not last.exists():
        return
    ckpt = load_checkpoint(last)
    differing = diff_keys(resume_bound(upgrade(ckpt.get("fingerprint", {}))), fp)  # an older qt's run: today's names
    if resume and not differing:
        return
    restore_hydra_files(run_dir)
    if differing:
        shown = ", ".join(differing[:4]) + (" ..." if len(differing) > 4 else "")
        raise RunDirError(f"{run_dir} holds a run with a different config (differs in {shown}): {ANOTHER_RUN_DIR}")
    raise RunDirError(f"trainer.resume=false, but {run_dir} holds a run that starting over would overwrite: {ANOTHER_RUN_DIR}")


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


def _nothing_to_do(previous: dict | None, epochs: int) -> bool:
    return bool(previous) and previous.get("status") == "completed" and previous.get("epochs_completed", 0) >= epochs


def setup(cfg: DictConfig, tcfg: TrainerConfig, run_dir: Path, fp: dict, pruning: Callback | None = None, started: float | None = None) -> tuple[Trainer, dict]:
    """The run's Trainer (data, learner, loss, optimizer, scheduler, callbacks) and the summary fields known before training."""
    if tcfg.threads:
        torch.set_num_threads(int(tcfg.threads))
    device = resolve_device(tcfg.device)
    data = build_data(cfg)
    seed_everything(int(tcfg.seed))
    largest = max(len(data.train), len(data.val), len(data.test)) if isinstance(data, DataSplits) else None  # an episode: no batch
    learner = build_learner(cfg, device, images=largest)
    table = learner.param_table()
    log.info("%s", format_param_table(table))
    check_budget(cfg, table)
    opt = build_optimization(cfg)
    task = build_task(cfg)
    teacher = describe_teacher(opt.loss, data, tcfg.eval_batch_size, device)
    hydra_files = {p.name: p.read_text() for p in sorted((run_dir / ".hydra").glob("*.yaml"))}
    callbacks = [
        build_loggers(cfg),  # before last.pt: a kill in between re-runs (and re-logs) the epoch identically
        Checkpoint(run_dir, fp, every=tcfg.checkpoint_every, extra={"hydra_files": hydra_files}),
        MetricsFiles(run_dir),
        ProgressBar(tcfg.progress),
        InitReport(),
        EpochLog(),
        *([pruning] if pruning is not None else []),  # last: it decides after the epoch is on disk
    ]
    trainer = Trainer(learner, data, opt.optimizer, opt.scheduler, tcfg, device, opt.loss, callbacks, started=started, task=task)
    base = {
        "mode": cfg.mode,
        "params": table,
        "data_sizes": data.sizes(),
        "teacher": teacher,
        "versions": versions(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    return trainer, base


def qpu_cost(trainer: Trainer) -> dict | None:
    """What the training steps so far would cost on a quantum processor (QT runs with a circuit; None otherwise)."""
    circuit = getattr(trainer.learner, "circuit", None)
    return circuit.qpu(trainer.state.global_step) if hasattr(circuit, "qpu") else None


def _one(trainer: Trainer, kind: type):
    return next(c for c in trainer.callbacks if isinstance(c, kind))


def outcome(done: dict, task: Task) -> str:
    """A completed run's result in words (the last log line): the kept epoch, its metric on train, val and test."""
    m = task.monitor
    shown = lambda v: "–" if v is None else (f"{v:.4f}" if m == "acc" else f"{v:.4g}")  # noqa: E731
    val = "no val split" if done[task.best_key] is None else f"best val {m} {shown(done[task.best_key])}"
    subset = f" ({done['test_subset_acc']:.4f} on a random {done['config']['trainer']['test_subset']:,})" if done.get("test_subset_acc") is not None else ""
    loss = f", test loss {done['test_loss']:.4f}" if done.get("test_loss") is not None else ""
    return f"{val} (epoch {done['best_epoch']}), train {m} {shown(done[f'train_{m}'])}, test {m} {shown(done[f'test_{m}'])}{subset}{loss}, {done['wall_time_s']:.1f}s"


def train_and_record(trainer: Trainer, base: dict, info: RunInfo, objective) -> float | tuple[float, ...]:
    """Fit, writing summary.json at the start (running) and at the end (completed, diverged or failed)."""
    run_dir = info.run_dir

    loggers, init = _one(trainer, Loggers), _one(trainer, InitReport)

    def summary(**fields) -> dict:
        return {**base, "init": init.report(trainer), **trainer.progress(), "qpu": qpu_cost(trainer), **trainer.task.summary(trainer), **fields}

    def record(final: dict) -> None:
        write_summary(run_dir, final)
        loggers.finish(final, info)

    write_summary(run_dir, summary(status="running"))
    loggers.start(info, trainer.state.rows)
    try:
        trainer.fit()
    except Pruned as e:  # a sweep's pruner stopped it: the best-so-far metrics stay, for the study and the reports
        record(summary(status="pruned", reason=str(e), finished_at=_now()))
        log.info("%s; summary in %s", e, run_dir)
        return objective_values(None, objective)
    except Diverged as e:
        diverged = summary(status="diverged", reason=str(e), finished_at=_now())
        record(diverged)
        log.error("run diverged (%s): lower optimizer.lr or set trainer.clip_norm; summary in %s", e, run_dir)
        return objective_values(diverged, objective)
    except BaseException as e:  # a crash or an interrupt mid-training: say so in the summary, keep last.pt
        record(summary(status="failed", reason=f"{type(e).__name__}: {e}", finished_at=_now()))
        raise
    _one(trainer, Checkpoint).load_best(trainer)
    final = trainer.final_metrics()
    predicted = final.pop("test_predicted")
    if predicted is not None:
        write_predictions(run_dir, trainer.data.test.y, predicted)
    done = summary(**final, status="completed")
    done["wall_time_s"] = trainer.elapsed()  # after the final evaluation
    record({**done, "finished_at": _now()})
    log.info("done: %s; results in %s", outcome(done, trainer.task), run_dir)
    return objective_values(done, objective)


def run(
    cfg: DictConfig, run_dir: Path, sweep_dir: Path | None = None, pruning: Callback | None = None
) -> float | tuple[float, ...]:
    """Train and evaluate one configuration; returns ``cfg.objective`` (default: best validation accuracy).

    ``sweep_dir``: the multirun this run is a job of (loggers group a sweep's runs by it).
    ``pruning``: the job's Optuna trial pruning (qt.sweeps.pruning), a callback after every epoch; NaN if pruned.
    """
    started, clock = _now(), time.perf_counter()
    validate(cfg)
    fill_blocks(cfg)
    tcfg = TrainerConfig(**OmegaConf.to_container(cfg.trainer, resolve=True))
    run_dir = Path(run_dir)
    fp = fingerprint(cfg)
    _protect_run_dir(run_dir, fp, tcfg.resume)
    previous = read_summary(run_dir)
    if _nothing_to_do(previous, tcfg.epochs):
        log.info("%s already holds a completed run of this config: nothing to do (%s)", run_dir, outcome(previous, build_task(cfg)))
        return objective_values(previous, cfg.objective)

    trainer, base = setup(cfg, tcfg, run_dir, fp, pruning, started=clock)  # wall time counts from here: loading and building too
    try:
        restored = tcfg.resume and _one(trainer, Checkpoint).restore(trainer)
    except RunDirError:  # a checkpoint this qt cannot continue: the run dir stays as it was
        restore_hydra_files(run_dir)
        raise
    if restored and previous:
        started = previous.get("started_at") or started
        if previous.get("status") == "completed":
            log.info("continuing the completed %d-epoch run to %d epochs", previous.get("epochs_completed", 0), tcfg.epochs)
    info = RunInfo(run_dir, base["config"], sweep_dir, job=run_dir.name)
    return train_and_record(trainer, {**base, "started_at": started}, info, cfg.objective)


def record_failure(run_dir: Path, cfg: DictConfig, reason: str) -> None:
    """Mark a run that could not start as failed, unless its run dir already holds a summary."""
    if read_summary(run_dir) is not None:
        return
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - unresolvable config: keep it unresolved
        config = OmegaConf.to_container(cfg, resolve=False)
    write_summary(
        run_dir,
        {
            "status": "failed",
            "reason": reason,
            "mode": cfg.get("mode"),
            "config": config,
            "finished_at": dt.datetime.now().isoformat(timespec="seconds"),
            "versions": versions(),
        },
    )


