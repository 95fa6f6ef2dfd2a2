"""Where a run starts: the generated network at initialisation against the target's own default init.

    python -m qt.probe_init [--seeds 5] [--batch 256] [--tensors] "OVERRIDES" ["OVERRIDES" ...]

Each argument is one run's Hydra overrides, space-separated (``""`` is the default run;
``"mode=classical"`` is the target with PyTorch's init). Per run, over ``--seeds`` seeds,
on the first ``--batch`` training images of the run's dataset: the first-step
cross-entropy (chance is ln(classes)), the std of the logits, and each conv/linear layer's
output std divided by the same layer's output std in the target at its own default
initialisation (same seed, same batch): 1 means the signal keeps the scale PyTorch's init
gives it. ``--tensors`` adds, per target tensor, the generated std against the default
init's, the share of its variance in the output units' means, and the mean |cosine|
between its output units (``Learner.weight_report``), for the generated network and for
``mode=classical`` alike.
Nothing is trained and nothing is written.
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch
import torch.nn.functional as F
from torch import nn

from qt.experiment.config import compose_config, instantiate
from qt.experiment.build import build_learner


def layer_output_stds(learner, x: torch.Tensor, weights: dict) -> tuple[torch.Tensor, list[float]]:
    """(logits, std of every conv/linear layer's output) of the learner's target with ``weights``."""
    stds: list[float] = []
    layers = [m for m in learner.target.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    hooks = [m.register_forward_hook(lambda m, i, out: stds.append(float(out.std()))) for m in layers]
    try:
        logits = learner(x, weights)
    finally:
        for h in hooks:
            h.remove()
    return logits, stds


@torch.no_grad()
def probe(overrides: list[str], seeds: int, batch: int) -> dict:
    cfg = compose_config(overrides)
    data = instantiate(cfg.dataset).load()
    x, y = data.train.x[:batch], data.train.y[:batch]
    losses, logit_stds, ratios, reports = [], [], [], []
    for seed in range(seeds):
        torch.manual_seed(seed)
        learner = build_learner(cfg)
        logits, gen = layer_output_stds(learner, x, learner.weights())
        _, ref = layer_output_stds(learner, x, dict(learner.target.named_parameters()))  # the target's own init
        losses.append(float(F.cross_entropy(logits, y)))
        logit_stds.append(float(logits.std()))
        ratios.append([g / r for g, r in zip(gen, ref)])
        reports.append(learner.weight_report())
    return {
        "losses": losses,
        "chance": math.log(data.num_classes),
        "logit_std": statistics.median(logit_stds),
        "layer_ratio": [statistics.median(col) for col in zip(*ratios)],
        "report": reports[0],
    }


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qt.probe_init", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help='one run\'s overrides per argument, e.g. "" "circuit=u3 n_blocks=16"')
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--tensors", action="store_true", help="per-tensor table for every run (seed 0)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"first-step cross-entropy over seeds 0-{args.seeds - 1} (median [min, max]); layer output std / the target's own init's (median)\n")
    print("| run | first-step loss | chance | logits std | conv/linear output std ratio, layer by layer |")
    print("|---|---|---|---|---|")
    results = {}
    for run in args.runs:
        r = results[run] = probe(run.split(), args.seeds, args.batch)
        loss = f"{statistics.median(r['losses']):.2f} [{min(r['losses']):.2f}, {max(r['losses']):.2f}]"
        layers = " / ".join(f"{v:.2f}" for v in r["layer_ratio"])
        print(f"| `{run or 'default'}` | {loss} | {r['chance']:.2f} | {r['logit_std']:.2f} | {layers} |")
    if args.tensors:
        for run, r in results.items():
            print(f"\n`{run or 'default'}`, seed 0\n")
            print("| tensor | generated std | default-init std | ratio | unit-mean share | unit similarity |\n|---|---|---|---|---|---|")
            for name, t in r["report"].items():
                cells = [_fmt(t["std_ratio"], 2), _fmt(t["unit_mean_share"], 3), _fmt(t["unit_similarity"], 2)]
                print(f"| {name} | {t['std']:.4f} | {t['default_std']:.4f} | " + " | ".join(cells) + " |")
    return 0
