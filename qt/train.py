"""Entry point: ``python -m qt.train [group=option ...] [key=value ...]`` (``-m`` for multirun).

Composes ``conf/train.yaml`` with the overrides, trains in the Hydra run dir and returns the
best validation accuracy (the objective sweeps maximise). User errors print one line and
exit with status 2; a diverged run exits with status 3 (in a multirun both are recorded in
the run's summary.json and the sweep goes on).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig

from qt.experiment.config import CONF_DIR, compose_config, experiment_conflict, override_options, trusted_targets
from qt.errors import ConfigError, QTError, RunDirError
from qt.sweeps.pruning import connect
from qt.results.objectives import objective_values
from qt.experiment.run import record_failure, remember_hydra_files, restore_hydra_files, run

log = logging.getLogger("qt.train")

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3


def threads_per_job(hc) -> int | None:
    """Torch threads for one job of a parallel launcher, so concurrent jobs do not oversubscribe the cores."""
    launcher = hc.launcher
    cores = os.cpu_count() or 1
    n_jobs = launcher.get("n_jobs")  # joblib
    if isinstance(n_jobs, int) and n_jobs != 1:
        return max(1, cores // (cores if n_jobs < 0 else n_jobs))
    cpus = launcher.get("cpus_per_task")  # submitit
    if isinstance(cpus, int) and cpus > 0:
        return cpus
    return None


def check_invocation(hc, multirun: bool) -> None:
    """What only the invocation shows: an experiment overriding a chosen option, a sweep config run without -m."""
    problem = experiment_conflict(hc.runtime.choices.get("experiment"), list(hc.overrides.task))
    if problem:
        raise ConfigError(problem)
    params = hc.sweeper.get("params")
    if not multirun and params:
        raise ConfigError(
            f"this config defines a sweep over {', '.join(params)} (hydra.sweeper.params): "
            "run it as a multirun, python -m qt.train -m ..."
        )


@hydra.main(config_path=str(CONF_DIR), config_name="train", execution_whitelist=trusted_targets())
def main(cfg: DictConfig) -> float | tuple[float, ...]:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    failed = objective_values(None, cfg.get("objective", "best_val_acc"))
    if multirun and cfg.trainer.get("threads") is None and (threads := threads_per_job(hc)):
        torch.set_num_threads(threads)
    try:
        check_invocation(hc, multirun)
        pruning = connect(hc.sweeper, run_dir, cfg.get("objective")) if multirun else None
        value = run(cfg, run_dir, sweep_dir=Path(hc.sweep.dir) if multirun else None, pruning=pruning)
    except QTError as e:
        log.error("%s", e)
        if multirun and not isinstance(e, RunDirError):  # a sweep records the trial's failure and goes on
            record_failure(run_dir, cfg, str(e))
            return failed
        if not multirun and not isinstance(e, RunDirError):
            discard_run_dir(run_dir)  # a refused command leaves nothing behind
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)  # a job dir holding another run stops a multirun: the sweep dir is another sweep's
    except Exception as e:  # noqa: BLE001 - in a sweep, one broken trial must not stop the others
        if not multirun:
            raise
        log.exception("trial failed")
        record_failure(run_dir, cfg, f"{type(e).__name__}: {e}")
        return failed
    values = value if isinstance(value, tuple) else (value,)
    if any(math.isnan(v) for v in values) and not multirun:
        sys.exit(EXIT_DIVERGED)
    return value


#: what Hydra writes into a run dir before qt's code runs
HYDRA_FILES = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "train.log")


def discard_run_dir(run_dir: Path) -> None:
    """Undo what a refused invocation wrote: in a run dir holding a run, put the run's own ``.hydra`` files
    back; otherwise remove Hydra's files and the folders left empty (other files are never touched)."""
    run_dir = Path(run_dir)
    if restore_hydra_files(run_dir) or (run_dir / "summary.json").exists():
        return
    logging.shutdown()  # release train.log
    for name in HYDRA_FILES:
        (run_dir / name).unlink(missing_ok=True)
    here = Path.cwd().resolve()
    for folder in (run_dir / ".hydra", run_dir, *run_dir.parents):
        if folder.resolve() == here or not folder.is_dir() or any(folder.iterdir()):
            break
        folder.rmdir()


def check_group_options(argv: list[str], conf_dir: Path = CONF_DIR) -> str | None:
    """One-line message for a ``group=option`` override naming an option with no YAML file, else None."""
    for arg in argv:
        if "=" not in arg or arg.startswith("-"):
            continue
        key, value = arg.split("=", 1)
        group = key.lstrip("+~")
        folder = conf_dir / group
        if "(" in value or not folder.is_dir() or group.split("/")[0] == "hydra":  # hydra/*: plugins add options
            continue
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        for option in override_options(value):
            if option != "null" and option not in options:
                return f"unknown {group} '{option}': choose one of {', '.join(options)} (files in conf/{group}/)"
    return None


def check_composes(argv: list[str]) -> str | None:
    """One-line message when the overrides do not compose (a key the config lacks, a malformed value), else None.

    Hydra would print several lines and exit 1; composing first makes it qt's one line and exit 2,
    with nothing written. Commands with flags (``-m``, ``--cfg``, ...) are left to Hydra.
    """
    if any(arg.startswith("-") for arg in argv):
        return None
    try:
        compose_config(argv)
    except (ConfigCompositionException, OverrideParseException, MissingConfigException) as e:
        parts = [str(e), str(e.__cause__ or "")]
        noise = ("Config search path", "provider=", "See https", "full_key", "object_type", "Available options")
        lines = [ln.strip() for part in parts for ln in part.splitlines() if ln.strip() and not ln.strip().startswith(noise)]
        return " ".join(dict.fromkeys(lines))[:400] + " (see python -m qt.train --help)"
    return None


def remember_run_dir(argv: list[str]) -> None:
    """Read the ``.hydra`` record of a run dir named on the command line before Hydra rewrites it, so that a refused
    command can put it back even where the run's ``last.pt`` does not keep it (runs of an earlier qt)."""
    for arg in argv:
        if arg.startswith("hydra.run.dir=") and (Path(arg.split("=", 1)[1]) / ".hydra").is_dir():
            remember_hydra_files(Path(arg.split("=", 1)[1]))


if __name__ == "__main__":
    problem = check_group_options(sys.argv[1:]) or check_composes(sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    remember_run_dir(sys.argv[1:])
    main()
