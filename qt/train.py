"""Entry point: ``python -m qt.train [group=option ...] [key=value ...]`` (``-m`` for multirun).

Composes ``conf/train.yaml`` with the overrides, trains in the Hydra run dir and returns the
best validation accuracy (the objective sweeps maximise). User errors print one line and
exit with status 2; a diverged run exits with status 3 (in a multirun both are recorded in
the run's summary.json and the sweep goes on).
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from qt.config import trusted_targets
from qt.errors import QTError, RunDirError
from qt.run import record_failure, run

log = logging.getLogger("qt.train")

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3


@hydra.main(config_path="../conf", config_name="train", execution_whitelist=trusted_targets())
def main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        value = run(cfg, run_dir)
    except QTError as e:
        log.error("%s", e)
        if not isinstance(e, RunDirError):
            record_failure(run_dir, cfg, str(e))
        if multirun:
            return math.nan
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except Exception as e:  # noqa: BLE001 - in a sweep, one broken trial must not stop the others
        if not multirun:
            raise
        log.exception("trial failed")
        record_failure(run_dir, cfg, f"{type(e).__name__}: {e}")
        return math.nan
    if math.isnan(value) and not multirun:
        sys.exit(EXIT_DIVERGED)
    return value


CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def check_group_options(argv: list[str], conf_dir: Path = CONF_DIR) -> str | None:
    """One-line message for a ``group=option`` override naming an option with no YAML file, else None."""
    for arg in argv:
        if "=" not in arg or arg.startswith("-"):
            continue
        key, value = arg.split("=", 1)
        group = key.lstrip("+~")
        folder = conf_dir / group
        if "(" in value or not folder.is_dir() or group == "hydra":
            continue
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        for option in filter(None, (v.strip() for v in value.split(","))):
            if option != "null" and option not in options:
                return f"unknown {group} '{option}': choose one of {', '.join(options)} (files in conf/{group}/)"
    return None


if __name__ == "__main__":
    problem = check_group_options(sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    main()
