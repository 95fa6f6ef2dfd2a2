"""One experiment, from a composed config to results on disk. ``qt.train`` is its entry point."""

from __future__ import annotations

import datetime as dt
import logging
import platform
import random
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import qt
from qt.config import diff_keys, fingerprint, validate
from qt.errors import ANOTHER_RUN_DIR, ConfigError, RunDirError
from qt.learner import ClassicalLearner, Learner, QTLearner, qubits_for
from qt.models import count_weights
from qt.loop import Diverged, Trainer, TrainerConfig
from qt.quantum.circuit import estimate_memory_bytes, resolve_backend
from qt.results import load_checkpoint, objective_values, read_summary, write_summary

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but torch sees no CUDA GPU: use trainer.device=cpu (or auto), or install a CUDA build of torch")
    return torch.device(name)


def available_memory_bytes(device: torch.device) -> int | None:
    """Free memory of ``device`` in bytes (psutil on the host: Linux, macOS, Windows); None if unreadable."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception as e:  # noqa: BLE001 - an unreadable host: say so, do not guess
        log.warning("cannot read the available memory (%s): the memory guard is off for this run", e)
        return None


def build_learner(cfg: DictConfig, device: torch.device | None = None) -> Learner:
    """The learner for ``cfg.mode``; with ``device``, first checks the circuit fits its memory."""
    target = instantiate(cfg.model)
    if cfg.mode == "classical":
        return ClassicalLearner(target)
    chunk = int(cfg.mapping.get("chunk", 1))
    if device is not None:
        check_memory(cfg, count_weights(target), chunk, device)
    circuit = instantiate(cfg.circuit, _partial_=True)
    if cfg.get("generator", "quantum") == "classical":
        circuit = partial(equal_budget_generator, circuit)
    return QTLearner(target, circuit=circuit, mapping=instantiate(cfg.mapping, _partial_=True), chunk=chunk)


def equal_budget_generator(circuit_factory, n_qubits: int) -> torch.nn.Module:
    """The classical-generator control with exactly the parameter count of the circuit it replaces."""
    from qt.generators import ClassicalGenerator

    circuit = circuit_factory(n_qubits=n_qubits)
    return ClassicalGenerator(n_qubits, n_params=circuit.ansatz.n_params, freeze=not any(p.requires_grad for p in circuit.parameters()))


def check_memory(cfg: DictConfig, n_weights: int, chunk: int, device: torch.device) -> None:
    """One-line error, before any allocation, when the circuit cannot be simulated on ``device``."""
    n_qubits = qubits_for(n_weights, chunk)
    circuit = OmegaConf.to_container(cfg.circuit, resolve=True)
    circuit["backend"] = resolve_backend(circuit.get("backend", "auto"), device)
    need = estimate_memory_bytes(n_qubits=n_qubits, **{k: v for k, v in circuit.items() if k != "_target_"})
    widths = n_qubits + 1 + sum(int(h) for h in cfg.mapping.get("hidden", [])) + chunk
    need += 2**n_qubits * widths * 4 * 3  # mapping activations over all basis states
    have = available_memory_bytes(device)
    if have is not None and need > 0.9 * have:
        raise ConfigError(
            f"the target has {n_weights:,} weights -> {n_qubits} qubits; simulating them on {circuit.get('backend')} "
            f"needs ~{need / 2**30:.1f} GiB but {device.type} has {have / 2**30:.1f} GiB free: use a smaller model, "
            "mapping.chunk=K (K weights per basis state) or fewer n_blocks"
        )


def check_budget(cfg: DictConfig, table: dict) -> None:
    """One-line error when a QT learner has more trainable parameters than ``max_trainable_params``."""
    budget = cfg.get("max_trainable_params")
    if budget is None or table["mode"] != "qt" or table["trainable_params"] <= budget:
        return
    raise ConfigError(
        f"this config has {table['trainable_params']:,} trainable parameters (generator {table['qnn_params']:,}, "
        f"mapping {table['mapping_params']:,}), over max_trainable_params={budget:,}: lower n_blocks or the mapping's "
        "widths, or lift the budget with max_trainable_params=null"
    )


def format_param_table(table: dict) -> str:
    rows = [
        ("target weights M", f"{table['target_weights']:,}"),
        ("qubits", "-" if table["n_qubits"] is None else str(table["n_qubits"])),
        ("QNN params" if table.get("generator", "quantum") == "quantum" else "generator params (classical)", f"{table['qnn_params']:,}"),
        ("mapping params", f"{table['mapping_params']:,}"),
        ("total trainable", f"{table['trainable_params']:,}"),
        ("compression M/trainable", f"{table['compression_ratio']:.2f}x"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"parameters ({table['mode']}):"] + [f"  {k:<{width}}  {v:>10}" for k, v in rows]
    return "\n".join(lines)


def versions() -> dict:
    import hydra

    out = {"qt": qt.__version__, "torch": torch.__version__, "hydra": hydra.__version__, "python": platform.python_version()}
    try:
        from importlib.metadata import version

        out["pennylane"] = version("pennylane")
    except Exception:  # noqa: BLE001
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
    from qt.loop import evaluate

    probe = ClassicalLearner(teacher).to(device)
    _, val_acc = evaluate(probe, data.val.to(device), batch_size)
    _, test_acc = evaluate(probe, data.test.to(device), batch_size)
    teacher.eval()
    info = {"source": loss_fn.source, "params": count_weights(teacher), "val_acc": val_acc, "test_acc": test_acc}
    log.info("teacher %s: %s weights, val acc %.4f, test acc %.4f", info["source"], f"{info['params']:,}", val_acc, test_acc)
    return info


def _protect_run_dir(run_dir: Path, fp: dict, resume: bool) -> None:
    """Refuse a run dir whose checkpoint comes from a different config, or any run's with ``trainer.resume=false``."""
    last = run_dir / "checkpoints" / "last.pt"
    if not last.exists():
        return
    ckpt = load_checkpoint(last)
    differing = diff_keys(ckpt.get("fingerprint", {}), fp)
    if resume and not differing:
        return
    # Hydra has just rewritten .hydra/*.yaml for the new invocation: put the run's own back.
    for name, text in (ckpt.get("hydra_files") or {}).items():
        (run_dir / ".hydra" / name).write_text(text)
    if differing:
        shown = ", ".join(differing[:4]) + (" ..." if len(differing) > 4 else "")
        raise RunDirError(f"{run_dir} holds a run with a different config (differs in {shown}): {ANOTHER_RUN_DIR}")
    raise RunDirError(f"trainer.resume=false, but {run_dir} holds a run that starting over would overwrite: {ANOTHER_RUN_DIR}")


def run(cfg: DictConfig, run_dir: Path) -> float | tuple[float, ...]:
    """Train and evaluate one configuration; returns ``cfg.objective`` (default: best validation accuracy)."""
    started = dt.datetime.now().isoformat(timespec="seconds")
    clock = time.perf_counter()
    validate(cfg)
    tcfg = TrainerConfig(**OmegaConf.to_container(cfg.trainer, resolve=True))
    run_dir = Path(run_dir)
    fp = fingerprint(cfg)
    _protect_run_dir(run_dir, fp, tcfg.resume)

    previous = read_summary(run_dir)
    if previous and previous.get("status") == "completed" and previous.get("epochs_completed", 0) >= tcfg.epochs:
        log.info("%s already holds a completed run of this config: nothing to do (best val acc %.4f)", run_dir, previous["best_val_acc"])
        return objective_values(previous, cfg.objective)

    if tcfg.threads:
        torch.set_num_threads(int(tcfg.threads))
    device = resolve_device(tcfg.device)
    data = instantiate(cfg.dataset).load()
    log.info("data %s: %s", data.name, data.sizes())
    if len(data.train) == 0 or len(data.val) == 0:
        raise ConfigError(f"dataset {data.name} has an empty train or val split {data.sizes()}: change dataset.val_fraction")

    seed_everything(int(tcfg.seed))
    learner = build_learner(cfg, device)
    table = learner.param_table()
    log.info("%s", format_param_table(table))
    check_budget(cfg, table)

    loss_fn = instantiate(cfg.loss) if cfg.get("loss") else None
    teacher = describe_teacher(loss_fn, data, tcfg.eval_batch_size, device)
    trainer = Trainer(
        learner,
        data,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        cfg=tcfg,
        run_dir=run_dir,
        device=device,
        fingerprint=fp,
        loss_fn=loss_fn,
    )
    trainer.clock = clock  # wall time counts from the start of run(): data loading and building too
    hydra_dir = run_dir / ".hydra"
    trainer.extra_checkpoint = {"hydra_files": {p.name: p.read_text() for p in sorted(hydra_dir.glob("*.yaml"))}}
    resumed = trainer.try_resume()
    if resumed and previous and previous.get("status") == "completed":
        log.info("continuing the completed %d-epoch run to %d epochs", previous.get("epochs_completed", 0), tcfg.epochs)
    if resumed and previous and previous.get("started_at"):
        started = previous["started_at"]

    base = {
        "mode": cfg.mode,
        "params": table,
        "data_sizes": data.sizes(),
        "teacher": teacher,
        "started_at": started,
        "versions": versions(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }

    def summary(**fields) -> dict:
        return {**base, "init": trainer.init_report(), **fields}

    write_summary(run_dir, summary(status="running"))
    try:
        trainer.fit()
    except Diverged as e:
        st = trainer.state
        diverged = summary(
            status="diverged",
            reason=str(e),
            best_val_acc=st.best_val_acc if st.best_epoch else None,
            best_epoch=st.best_epoch,
            epochs_completed=st.epoch,
            steps=st.global_step,
            train_time_s=st.train_time_s,
            wall_time_s=trainer.elapsed(),
            finished_at=dt.datetime.now().isoformat(timespec="seconds"),
        )
        write_summary(run_dir, diverged)
        log.error("run diverged (%s): lower optimizer.lr or set trainer.clip_norm; summary in %s", e, run_dir)
        return objective_values(diverged, cfg.objective)
    except BaseException as e:  # a crash or an interrupt mid-training: say so in the summary, keep last.pt
        st = trainer.state
        write_summary(
            run_dir,
            summary(
                status="failed",
                reason=f"{type(e).__name__}: {e}",
                epochs_completed=st.epoch,
                steps=st.global_step,
                train_time_s=st.train_time_s,
                wall_time_s=trainer.elapsed(),
                finished_at=dt.datetime.now().isoformat(timespec="seconds"),
            ),
        )
        raise
    final = trainer.final_metrics()
    completed = summary(**final, status="completed", finished_at=dt.datetime.now().isoformat(timespec="seconds"))
    write_summary(run_dir, completed)
    log.info(
        "done: best val acc %.4f (epoch %s), test acc %.4f, test loss %.4f, %.1fs; results in %s",
        final["best_val_acc"],
        final["best_epoch"],
        final["test_acc"],
        final["test_loss"],
        final["wall_time_s"],
        run_dir,
    )
    return objective_values(completed, cfg.objective)


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


