"""The frontier study (docs/frontier.md): its jobs in order, run in parts, and its small files kept in the repository.

    python -m qt.tools.frontier list
    python -m qt.tools.frontier run  --out DIR --data DATA --results docs/results/frontier [STAGE ...]
    python -m qt.tools.frontier collect --out DIR --results docs/results/frontier
    python -m qt.tools.frontier choose --results docs/results/frontier [STAGE ...]

A stage is a list of jobs; a job is one multirun (``python -m qt.train -m ...``) in its own sweep dir
``DIR/JOB``. Every job resumes: a named search keeps its study in its sweep dir, a grid skips finished
runs and continues interrupted ones from their checkpoints, so ``run`` after a kill (or at the next
working session) goes on where the study stopped. Run it from a clone of a fixed commit outside the
work tree (``git clone -q REPO /work/frontier/qt && git -C /work/frontier/qt checkout COMMIT``), so
later edits cannot change a running study; ``--results`` points back into the work tree. A job whose
results are all collected there is skipped, so a machine that lost the output root resumes from the
repository (an unfinished job starts over).

After each job, ``collect`` copies each finished run's small files (summary.json, metrics.csv,
test_predictions.npz, the .hydra record) and the sweep's trials.csv / sweep_summary.json to
``RESULTS/JOB/``: no checkpoints, nothing of a run still going. ``qt.report`` reads that folder as it
reads outputs/, so the report regenerates from the repository alone.

``choose`` turns each finished search (its collected ``sweep_summary.json``) into a named experiment,
``conf/experiment/frontier/METHOD_DATASET_BUDGET.yaml``: the sweep's fixed choices, the budget and the best
trial's parameters, at the study's training length (:data:`EPOCHS`). The later stages train those.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from qt.analysis.runs import find_run_dirs
from qt.results.schema import PREDICTIONS, RANK, read_summary

#: the budgets searched (QT's trainable counts of mnist_700 and mnist_1500)
BUDGETS = (697, 1369)
#: short name -> the dataset option
DATASETS = {"mnist": "mnist", "fmnist": "fashion_mnist"}
#: the searched methods -> the key that sets their budget
SEARCHES = {"compact": "model.max_params", "qt": "max_trainable_params", "hashed": "max_trainable_params"}
#: the files of a finished run that the repository keeps (paths inside its run dir)
RUN_FILES = ("summary.json", "metrics.csv", PREDICTIONS, RANK, ".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml")
#: of a search's trials, the summary and curves only (the sweep's tables say what was chosen; no trial is reported)
TRIAL_FILES = ("summary.json", "metrics.csv")
#: the files of a sweep dir that the repository keeps
SWEEP_FILES = ("trials.csv", "sweep_summary.json")


#: seeds of the headline comparisons, per dataset (one batch: every method of a cell, same machine and threads)
HEADLINE_SEEDS = {"mnist": 10, "fmnist": 5}
#: QT's chosen configuration and the controls that pair with it by seed in the headline batch
QT_AND_CONTROLS = ("qt", "mps_born", "no_entanglement", "classical_generator")
#: the training length of every configuration the study reports (the searches' trials train 4 epochs)
EPOCHS = 20
#: where ``choose`` writes the chosen configurations (``experiment=frontier/NAME``)
CHOSEN = Path(__file__).resolve().parents[2] / "conf" / "experiment" / "frontier"


@dataclass(frozen=True)
class Job:
    """One multirun: ``name`` is its sweep dir under the output root (and its folder under the results);
    ``keep``: the files of each finished run that the repository keeps."""

    name: str
    overrides: tuple[str, ...]
    keep: tuple[str, ...] = RUN_FILES


def _anchor(model: str, suffix: str, seeds: str, *extra: str) -> Job:
    return Job(f"anchors/{model}{suffix}", (f"experiment=anchor_{model}", f"seed={seeds}", *extra))


def stages() -> dict[str, list[Job]]:
    """The study's stages, in the order ``run`` takes them.

    A job's configuration must not change once it has runs: a later commit's ``run`` resumes them, and a run dir
    holding another config is refused (the study would stop there). New work is a new job or stage.
    """
    out = {
        "anchors": [_anchor("697", "", "0,1,2,3,4"), _anchor("997", "", "0,1,2,3,4")],
    }
    for budget in BUDGETS:
        for short, dataset in DATASETS.items():
            out[f"search_{short}_{budget}"] = [
                Job(f"search/{method}_{short}_{budget}", (f"+sweep=frontier_{method}", f"dataset={dataset}", f"{key}={budget}"), TRIAL_FILES)
                for method, key in SEARCHES.items()
            ]
    for budget in BUDGETS:
        for short in DATASETS:
            seeds = ",".join(str(s) for s in range(HEADLINE_SEEDS[short]))
            cell = f"headline/{short}_{budget}"
            out[f"headline_{short}_{budget}"] = [
                Job(f"{cell}/qt", (f"experiment=frontier/qt_{short}_{budget}", f"variant={','.join(QT_AND_CONTROLS)}", f"seed={seeds}")),
                Job(f"{cell}/compact", (f"experiment=frontier/compact_{short}_{budget}", f"seed={seeds}")),
                Job(f"{cell}/hashed", (f"experiment=frontier/hashed_{short}_{budget}", f"seed={seeds}")),
                *([Job(f"{cell}/anchor_{budget}", (f"experiment=anchor_{budget}", f"model.max_params={budget}", f"seed={seeds}"))]
                  if short == "mnist" and budget == 697 else []),
            ]
    out["anchors_long"] = [
        _anchor("697", "_long", "0,1,2", "trainer.epochs=100", "scheduler=plateau", "scheduler.factor=0.25", "scheduler.patience=50"),
        _anchor("997", "_long", "0,1,2", "trainer.epochs=100", "scheduler=plateau", "scheduler.factor=0.1", "scheduler.patience=8"),
    ]
    return out


def command(job: Job, out: Path, data: Path, launcher: str, extra: tuple[str, ...] = ()) -> list[str]:
    """The job's command line (``extra``: overrides appended, for a quick look at a stage: not the study's runs)."""
    return [sys.executable, "-m", "qt.train", "-m", *job.overrides, f"paths.data_dir={data}", f"hydra/launcher={launcher}",
            f"hydra.sweep.dir={out / job.name}", *extra]  # fmt: skip


def collect(out: Path, results: Path, jobs: list[Job] | None = None) -> int:
    """Copy the small files of every finished run (and each sweep's tables) from ``out`` to ``results``; returns the files written.

    A run still going (no summary, or status running) is left out; a file already there with the same bytes is not
    rewritten, so repeated collects change only what changed.
    """
    written = 0
    known = {job.name: job.keep for jobs_ in stages().values() for job in jobs_}
    names = [j.name for j in jobs] if jobs is not None else [p.relative_to(out).as_posix() for p in sorted(out.glob("*/*")) if p.is_dir()]
    for name in names:
        keep = known.get(name, RUN_FILES)
        sweep = out / name
        if not sweep.is_dir():
            continue
        pairs = [(sweep / f, results / name / f) for f in SWEEP_FILES]
        for run_dir in find_run_dirs(sweep):
            summary = read_summary(run_dir)
            if summary is None or summary.get("status") == "running":
                continue
            rel = run_dir.relative_to(out)
            pairs += [(run_dir / f, results / rel / f) for f in keep]
        for src, dest in pairs:
            if src.is_file() and not (dest.is_file() and filecmp.cmp(src, dest, shallow=False)):
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
                written += 1
    return written


def _nested(flat: dict) -> dict:
    """``{"a.b": 1}`` as ``{"a": {"b": 1}}``."""
    out: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def chosen_experiment(job: Job, summary: dict) -> str:
    """The experiment file of a finished search: the sweep file's group overrides, the job's dataset and budget, the best trial's
    parameters (a group's option as an override, a key as a value), ``trainer.epochs`` :data:`EPOCHS`."""
    sweep = next(o.split("=", 1)[1] for o in job.overrides if o.startswith("+sweep="))
    spec = OmegaConf.to_container(OmegaConf.load(Path(__file__).resolve().parents[2] / "sweeps" / f"{sweep}.yaml"))
    overrides = {k.split("/", 1)[1]: v for entry in spec.get("defaults", []) if isinstance(entry, dict)
                 for k, v in entry.items() if k.startswith("override /") and not k.startswith("override /hydra")}  # fmt: skip
    given = dict(o.split("=", 1) for o in job.overrides if not o.startswith("+"))
    overrides["dataset"] = given.pop("dataset")
    best = dict(summary["best_params"])
    overrides.update({k: best.pop(k) for k in list(best) if "." not in k})
    values = {k: v for k, v in spec.items() if k not in ("defaults", "hydra", "objective", "trainer", "model", "max_trainable_params")}
    values.update({k: int(v) for k, v in given.items()})  # the budget
    values.update(best)
    values["trainer.epochs"] = EPOCHS
    body = OmegaConf.to_yaml(OmegaConf.create(_nested(values)))
    head = (f"# @package _global_\n# Chosen by the frontier study's search {job.name} ({' '.join(job.overrides)}): trial "
            f"{summary['best_trial']} of {summary['n_trials']}, best validation accuracy {summary['best_value']:.4f} after its "
            f"4-epoch trial; generated by python -m qt.tools.frontier choose (docs/frontier.md). Trained {EPOCHS} epochs.\n")
    defaults = "defaults:\n" + "".join(f"  - override /{group}: {option}\n" for group, option in overrides.items())
    return head + defaults + "\n" + body


def _n_trials(job: Job) -> int:
    """The trials a search job's sweep file asks for."""
    sweep = next(o.split("=", 1)[1] for o in job.overrides if o.startswith("+sweep="))
    return int(OmegaConf.load(Path(__file__).resolve().parents[2] / "sweeps" / f"{sweep}.yaml").hydra.sweeper.n_trials)


def finished(job: Job, results: Path) -> bool:
    """Whether ``results`` already holds the whole job: a search's collected sweep_summary.json with every trial, or a
    completed summary for every run of a grid (the product of its comma-separated overrides).

    ``run`` skips such a job, so the study resumes from the repository on a machine that lost its output root.
    """
    folder = results / job.name
    if any(o.startswith("+sweep=") for o in job.overrides):
        path = folder / "sweep_summary.json"
        return path.is_file() and json.loads(path.read_text()).get("n_trials", 0) >= _n_trials(job)
    expected = 1
    for override in job.overrides:
        value = override.split("=", 1)[1]
        if "," in value and not value.startswith(("[", "{")):
            expected *= len(value.split(","))
    summaries = [read_summary(d) for d in find_run_dirs(folder)] if folder.is_dir() else []
    return sum(1 for s in summaries if s is not None and s.get("status") == "completed") >= expected


def choose(results: Path, jobs: list[Job], dest: Path = CHOSEN) -> list[Path]:
    """Write the experiment of every search in ``jobs`` whose collected sweep_summary.json has a best trial; returns the files."""
    written = []
    for job in jobs:
        path = results / job.name / "sweep_summary.json"
        if not job.name.startswith("search/") or not path.exists():
            continue
        summary = json.loads(path.read_text())
        if not summary.get("best_params") or summary.get("n_trials", 0) < _n_trials(job):
            continue  # a search still under way: nothing chosen yet
        target = dest / f"{job.name.split('/', 1)[1]}.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(chosen_experiment(job, summary))
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qt.tools.frontier", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="the stages and their commands")
    for action in ("run", "collect", "choose"):
        p = sub.add_parser(action)
        p.add_argument("stages", nargs="*", help="stages to take (default: all, in order)")
        if action != "choose":
            p.add_argument("--out", type=Path, required=True, help="output root (outside the repository's tree)")
        p.add_argument("--results", type=Path, required=True, help="where the small files go (docs/results/frontier)")
        if action == "run":
            p.add_argument("--data", type=Path, required=True, help="paths.data_dir")
            p.add_argument("--launcher", default="parallel", help="hydra/launcher (parallel: two 1-thread jobs)")
            p.add_argument("--extra", nargs="*", default=[], help="overrides appended to every job (a quick look, e.g. "
                           "trainer.epochs=1 dataset=mnist_5k; not the study)")
    args = parser.parse_args(argv)
    plan = stages()
    if args.action == "list":
        for stage, jobs in plan.items():
            for job in jobs:
                print(f"{stage:18s} {job.name:28s} {' '.join(job.overrides)}")
        return 0
    unknown = [s for s in args.stages if s not in plan]
    if unknown:
        print(f"error: unknown stage(s) {unknown}: choose from {', '.join(plan)}", file=sys.stderr)
        return 2
    chosen = [job for stage in (args.stages or list(plan)) for job in plan[stage]]
    if args.action == "choose":
        for path in choose(args.results, chosen):
            print(f"wrote {path}")
        return 0
    if args.action == "collect":
        print(f"{collect(args.out.resolve(), args.results, chosen)} files written to {args.results}")
        return 0
    for job in chosen:
        if finished(job, args.results):
            print(f"{job.name}: finished in {args.results}, skipped", flush=True)
            continue
        cmd = command(job, args.out.resolve(), args.data.resolve(), args.launcher, tuple(args.extra))
        print("$", " ".join(cmd), flush=True)
        code = subprocess.run(cmd).returncode
        print(f"{job.name}: exit {code}; {collect(args.out.resolve(), args.results, [job])} files collected", flush=True)
        if code not in (0, 1):  # 1: a sweep whose trials all failed says so and exits 1: the study goes on
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
