"""The effective dimension of each run's generator, at initialisation and at the kept epoch.

    python -m qt.tools.rank RUN_DIR [RUN_DIR ...] [--max-entries 50000000]

For every QT run whose weights come from a generator of probabilities (the circuit, ``no_entanglement``,
the classical generator, ``mps_born``, the frozen circuit, the fixed vector; not HashedNets, not a network
trained directly), the numerical rank of dp/dtheta (:func:`qt.core.generators.effective_dimension`) in
float64: the circuit rebuilt with ``circuit.dtype=float64``, the others converted, each loaded with the run's
parameters. At initialisation: the learner drawn as the run drew it (``seed_everything`` then
``build_learner``, as ``qt.experiment.run.setup``); at the end: ``checkpoints/best.pt``. Writes
``generator_rank.json`` into the run dir (``qt.report`` reads it: columns ``rank_init``, ``rank_final``);
a run whose Jacobian would exceed ``--max-entries`` (2^n x parameters) is skipped, said so.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omegaconf import open_dict

from qt.core.generators import effective_dimension
from qt.errors import QTError
from qt.experiment.build import build_learner, run_config
from qt.experiment.run import seed_everything
from qt.results.schema import RANK, atomic_write, load_checkpoint, read_summary


def initial_learner(cfg):
    """The learner a run of ``cfg`` starts from, drawn as ``qt.experiment.run.setup`` draws it."""
    seed_everything(int(cfg.trainer.seed))
    return build_learner(cfg)


def generator_ranks(run_dir: Path, max_entries: int = 50_000_000) -> dict | None:
    """``{"params", "states", "init", "final", ...}`` for a run with a generator; None for one without."""
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    summary = read_summary(run_dir) or {}
    if cfg.get("mode") == "classical" or cfg.get("generator") == "hashed":
        return None
    if isinstance(summary.get("config", {}).get("n_blocks"), int):  # n_blocks=fill: the count the run filled
        cfg.n_blocks = summary["config"]["n_blocks"]
    learner = initial_learner(cfg)
    init = {k: v.clone() for k, v in learner.circuit.state_dict().items()}
    with open_dict(cfg):
        cfg.circuit.dtype = "float64"
    twin = build_learner(cfg).circuit.double()
    params = sum(p.numel() for p in twin.parameters() if p.requires_grad)
    states = 2**learner.n_qubits
    out = {"params": params, "states": states, "h": 1e-5, "rtol": 1e-8, "method": "central differences, float64"}
    if params * states > max_entries:
        return {**out, "skipped": f"a {states} x {params} Jacobian is over --max-entries={max_entries}"}
    twin.load_state_dict(init)
    out["init"] = effective_dimension(twin)
    best = run_dir / "checkpoints" / "best.pt"
    if best.exists():
        state = load_checkpoint(best)["learner"]
        twin.load_state_dict({k[len("circuit.") :]: v for k, v in state.items() if k.startswith("circuit.")})
        out["final"] = effective_dimension(twin)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qt.tools.rank", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--max-entries", type=int, default=50_000_000)
    args = parser.parse_args(argv)
    for run_dir in args.runs:
        try:
            ranks = generator_ranks(run_dir, args.max_entries)
        except QTError as e:
            print(f"{run_dir}: {e}", file=sys.stderr)
            return 2
        if ranks is None:
            print(f"{run_dir}: no generator of probabilities (trained directly or hashed): nothing written")
            continue
        text = json.dumps(ranks, indent=2) + "\n"
        atomic_write(run_dir / RANK, lambda f: f.write(text.encode()))
        print(f"{run_dir}: {ranks.get('init', '-')} at init, {ranks.get('final', '-')} at the end, of {ranks['params']} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
