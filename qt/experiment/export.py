"""Turn a run into a plain classical checkpoint of its target network.

    python -m qt.export RUN_DIR [--out FILE] [--evaluate]

The file holds the target's ``state_dict`` (the weights the circuit + mapping generated at
the best validation epoch) and the target's model config. Loading it needs no quantum code:

    ckpt = torch.load(FILE, weights_only=True)       # tensors and plain values only
    model = qt.core.targets.SimpleCNN(**ckpt["model_kwargs"])   # or hydra.utils.instantiate(ckpt["model"])
    model.load_state_dict(ckpt["state_dict"])

``--evaluate`` loads the exported file that way and reports its test accuracy beside the
run's recorded one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from qt.errors import QTError
from qt.experiment.build import build_data, build_export, build_network, build_task, run_config
from qt.results.schema import load_checkpoint, read_summary, save_checkpoint
from qt.training.evaluation import evaluate


def export_run(run_dir: Path, out: Path | None = None) -> Path:
    """Write the run's export to ``out`` (default: ``RUN_DIR/export/target.pt``)."""
    out = Path(out) if out else Path(run_dir) / "export" / "target.pt"
    save_checkpoint(build_export(run_dir), out)
    return out


def load_exported(path: Path) -> torch.nn.Module:
    """The exported target network as an ordinary torch module (eval mode).

    Loaded as tensors and plain values only (no unpickling of objects), and the network is
    built from its config only if its ``_target_`` is trusted (qt.experiment.config.trusted_targets).
    """
    return build_network(load_checkpoint(path), path)


def evaluate_exported(path: Path, run_dir: Path) -> float:
    """The test value of the task's metric (accuracy; a sequence's MSE) of an exported file, on the data of the run it came from."""
    cfg = run_config(run_dir)
    return evaluate(load_exported(path), build_data(cfg).test, int(cfg.trainer.eval_batch_size), build_task(cfg))[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qt.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="output file (default RUN_DIR/export/target.pt)")
    parser.add_argument("--evaluate", action="store_true", help="reload the file as a plain model and report test accuracy")
    args = parser.parse_args(argv)
    try:
        out = export_run(args.run_dir, args.out)
        print(f"exported {args.run_dir} -> {out}")
        if args.evaluate:
            value = evaluate_exported(out, args.run_dir)
            m = build_task(run_config(args.run_dir)).monitor
            recorded = (read_summary(args.run_dir) or {}).get(f"test_{m}")
            shown = "n/a" if recorded is None else f"{recorded:.4f}"
            print(f"test {'accuracy' if m == 'acc' else m.upper()} of the exported model: {value:.4f} (run recorded {shown})")
    except QTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
