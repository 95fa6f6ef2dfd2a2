"""Turn a run into a plain classical checkpoint of its target network.

    python -m qt.export RUN_DIR [--out FILE] [--evaluate]

The file holds the target's ``state_dict`` (the weights the circuit + mapping generated at
the best validation epoch) and the target's model config. Loading it needs no quantum code:

    ckpt = torch.load(FILE, weights_only=True)       # tensors and plain values only
    model = qt.models.SimpleCNN(**ckpt["model_kwargs"])   # or hydra.utils.instantiate(ckpt["model"])
    model.load_state_dict(ckpt["state_dict"])

``--evaluate`` loads the exported file that way and reports its test accuracy beside the
run's recorded one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qt.build import build_learner
from qt.config import trusted
from qt.errors import QTError
from qt.loop import evaluate
from qt.learner import ClassicalLearner
from qt.results import load_checkpoint, read_summary, save_checkpoint


def run_config(run_dir: Path) -> DictConfig:
    path = run_dir / ".hydra" / "config.yaml"
    if not path.exists():
        raise QTError(f"{run_dir} is not a qt run dir (no .hydra/config.yaml): pass the folder a run wrote")
    return OmegaConf.load(path)


def export_run(run_dir: Path, out: Path | None = None) -> Path:
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    best = run_dir / "checkpoints" / "best.pt"
    if not best.exists():
        raise QTError(f"{run_dir} has no checkpoints/best.pt (the run finished no epoch): train it first")
    with trusted():
        learner = build_learner(cfg)
    learner.load_state_dict(load_checkpoint(best)["learner"])
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    out = Path(out) if out else run_dir / "export" / "target.pt"
    save_checkpoint(
        {
            "state_dict": learner.export_state_dict(),
            "model": model_cfg,
            "model_kwargs": {k: v for k, v in model_cfg.items() if k != "_target_"},
            "source_run": str(run_dir.resolve()),
            "mode": cfg.mode,
            "summary": read_summary(run_dir),
        },
        out,
    )
    return out


def load_exported(path: Path) -> torch.nn.Module:
    """The exported target network as an ordinary torch module (eval mode).

    Loaded as tensors and plain values only (no unpickling of objects), and the network is
    built from its config only if its ``_target_`` is trusted (qt.config.trusted_targets).
    """
    ckpt = load_checkpoint(path)
    if not (isinstance(ckpt.get("model"), dict) and isinstance(ckpt.get("state_dict"), dict)):
        raise QTError(f"{path} is not a qt export (no 'model' config and 'state_dict'): use a file written by python -m qt.export")
    try:
        with trusted():
            model = instantiate(ckpt["model"])
        model.load_state_dict(ckpt["state_dict"])
    except Exception as e:  # noqa: BLE001 - an untrusted _target_, a model that does not build, mismatched weights
        said = " ".join(str(e).split()) or type(e).__name__
        raise QTError(f"{path}: cannot rebuild its network ({said[:300]}): use a file written by python -m qt.export") from None
    return model.eval()


def model_accuracy(model: torch.nn.Module, split, batch_size: int) -> float:
    """Accuracy of a plain classical network (an export, a distillation teacher) on a split; leaves it in eval mode."""
    _, acc = evaluate(ClassicalLearner(model), split, batch_size)
    model.eval()
    return acc


def evaluate_exported(path: Path, run_dir: Path) -> float:
    cfg = run_config(run_dir)
    with trusted():
        data = instantiate(cfg.dataset).load()
    return model_accuracy(load_exported(path), data.test, int(cfg.trainer.eval_batch_size))


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
            acc = evaluate_exported(out, args.run_dir)
            recorded = (read_summary(args.run_dir) or {}).get("test_acc")
            shown = "n/a" if recorded is None else f"{recorded:.4f}"
            print(f"test accuracy of the exported model: {acc:.4f} (run recorded {shown})")
    except QTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
