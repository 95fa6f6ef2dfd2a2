"""Comparative report from run dirs, sweep dirs and Optuna storages.

    python -m qt.report DIR_OR_STUDY_DB... --out REPORT_DIR [--title TEXT] [--curves 6]

Writes ``report.md`` (with its plots as PNG files beside it) and ``report.html`` (plots
embedded; opens without a server). Sections:

* the settings every run shares, stated once; when the runs come from several experiments,
  an experiments table with the settings that tell the experiments apart;
* the main table: completed runs grouped by every factor that varies across them (seeds
  are the replicates), those constant within each experiment left to the experiments table:
  n seeds, test, train and best-val accuracy as mean ± std (and the accuracy on a random test
  subset where runs measured one, as the authors report), trainable parameters (QNN /
  mapping), compression ratio, generalization gap, epochs, wall time (total and per epoch);
  classical baselines (``mode=classical``) are rows of the same table, marked;
* QT against each of its controls (frozen circuit, classical generator, fixed vector, no
  entanglement, hashed, classical baseline): seed-matched paired differences in test accuracy
  with 95 % t intervals (:mod:`qt.stats`, which pairs by config, not by column names);
* QT against equal-budget methods: the no-entanglement and HashedNets controls (paired) and
  the small network trained directly at QT's trainable count (Welch's interval);
* QT against other networks trained directly on the same dataset (a small target against the
  large one QT generates): unpaired differences with Welch's 95 % interval;
* the frontier (:mod:`qt.analysis.frontier`), where the runs hold configurations of two or more methods
  with two or more seeds each: one point per configuration (test accuracy mean ± std, trainable
  parameters, deployed weights; ``frontier.csv``) and its figure; and QT against every other method at
  the same dataset, budget and epochs, with the paired bootstrap over seeds and test images and Holm's
  adjustment across them;
* runs that failed, diverged or did not finish, each with its reason (never dropped);
* plots: test accuracy vs trainable parameters, one panel and Pareto front per dataset, accuracy vs
  n_blocks per circuit, learning curves of the best run of each group, and for an Optuna
  study its optimization history and parameter importances.

Every comparison is also written to ``comparisons.csv`` (one row per QT group x comparison),
so scripts read numbers, not Markdown. Output is deterministic for the same inputs (sorted rows, fixed formatting, no
timestamps), so reports can be diffed.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import math
import sys
import warnings
from pathlib import Path

import pandas as pd

from qt.analysis.runs import learning_curves, load_runs
from qt.results.objectives import MONITORS, pareto_front
from qt.results.plots import pyplot
from qt.errors import QTError
from qt.analysis.frontier import budget_comparisons, frontier_points, plot_frontier
from qt.analysis.stats import DESCRIBE, comparisons
from qt.sweeps.study import make_storage
from qt.training.tasks import TASKS

#: columns that may distinguish experiment groups (seed is the replicate axis): what a config is, not
#: what its options are called (``mapping=medium_16`` and ``mapping=medium mapping.hidden=[16,16]`` are one group)
FACTORS = [
    "experiment", "dataset", "model", "budget", "target_activation", "mode", "variant", "generator", "circuit", "layout", "n_blocks", "partitions", "frozen",
    "shots", "gradient", "depolarizing", "depolarizing_2q", "amplitude_damping", "readout", "mapping_net", "mapping_hidden", "bond_dim", "activation", "scale", "rescale", "center", "signed_bits", "chunk", "optimizer", "lr", "weight_decay", "scheduler", "loss", "clip_norm",
    "batch_size", "epochs", "task_algorithm", "task_entropy", "dataset_truncation", "cut_gradient",
]
ALWAYS = ["dataset", "model", "mode"]
#: factors that ``variant`` is made of (qt.experiment.controls.control_of): shown through it when it is shown
VARIANT_PARTS = ["generator", "frozen"]


def varied_factors(df: pd.DataFrame) -> list[str]:
    records = df[df.status == "completed"].to_dict("records")
    out = list(ALWAYS)
    for col in FACTORS:
        if col in out:
            continue
        if len(_values(records, col)) > 1:
            out.append(col)
    return out


def _values(records: list[dict], col: str) -> set[str]:
    """The settings of ``col`` among ``records``: a missing value counts where it is a setting (MISSING_MEANS);
    elsewhere it only means "not applicable" (a classical run's circuit)."""
    return {_factor(r, col) for r in records if not _missing(r.get(col)) or _missing_means(r, col)}


def split_factors(df: pd.DataFrame) -> tuple[dict[str, str], list[str], list[str]]:
    """(settings every completed run shares, factors that tell experiments apart, factors that vary within one).

    Without several experiments, every varied factor is a column of the main table.
    """
    records = df[df.status == "completed"].to_dict("records")
    varied = varied_factors(df)
    shared = {}
    for col in FACTORS:
        values = _values(records, col)
        if col not in varied and len(values) == 1:
            shared[col] = values.pop()
    if "variant" in varied:
        varied = [f for f in varied if f not in VARIANT_PARTS]
    if "experiment" not in varied:
        return shared, [], varied
    within = [f for f in varied if f in ALWAYS or any(len(_values(rs, f)) > 1 for rs in _by_experiment(records).values())]
    between = ["experiment", *(f for f in varied if f not in within and f != "experiment")]
    return shared, between, ["experiment", *(f for f in within if f != "experiment")]


def experiments_table(df: pd.DataFrame, between: list[str]) -> tuple[list[str], list[list[str]]]:
    """One row per experiment: the settings (constant within it) that tell it from the others."""
    if len(between) < 2:  # nothing but the experiments' names
        return [], []
    groups = _by_experiment(df[df.status == "completed"].to_dict("records"))
    return between, [[key, *(", ".join(sorted(_values(rs, f))) or "–" for f in between[1:])] for key, rs in sorted(groups.items())]


def _by_experiment(records: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(_fmt(r.get("experiment")), []).append(r)
    return groups


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e12:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def _pm(mean: float, std: float, n: int, pct: bool = True) -> str:
    """mean ± std: in percent with two decimals (accuracies), else to 4 significant digits (errors)."""
    if mean is None or math.isnan(mean):
        return "–"
    shown = (lambda v: f"{v * 100:.2f}") if pct else (lambda v: f"{v:.4g}")  # noqa: E731
    if n < 2 or std is None or math.isnan(std):
        return shown(mean)
    return f"{shown(mean)} ± {shown(std)}"


#: factors whose missing value is a setting of its own, for the runs it applies to
MISSING_MEANS = {"clip_norm": "none", "shots": "exact", "gradient": "adjoint", "depolarizing_2q": "= depolarizing", "cut_gradient": "none"}
#: factors of the circuit: no meaning for a classical run
CIRCUIT_ONLY = ("shots", "gradient", "depolarizing_2q", "cut_gradient")


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _missing_means(rec: dict, name: str) -> str | None:
    """What a missing ``name`` means for this run: no clipping, exact probabilities (not for classical runs)."""
    if name in CIRCUIT_ONLY and rec.get("mode") == "classical":
        return None
    return MISSING_MEANS.get(name)


def _factor(rec: dict, name: str) -> str:
    value = rec.get(name)
    if _missing(value) and _missing_means(rec, name):
        return _missing_means(rec, name)
    return _fmt(value)


def _solved(g: pd.DataFrame) -> str | None:
    """task=rl: how many seeds reached the environment's threshold (mean of the last task.window training returns), and
    at which episode (median over those seeds; the others are censored at the run's end)."""
    if "solved_episode" not in g or g.episodes.isna().all():
        return None
    hit = g.solved_episode.dropna()
    return f"{len(hit)} / {len(g)}" + (f", median episode {hit.median():.0f}" if len(hit) else "")


def _group_record(g: pd.DataFrame, factors: list[str], m: str = "acc") -> dict:
    """One configuration's row of the main table: its factors and its metrics over seeds (``m``: the task's monitored
    metric, ``acc`` for classification, ``mse`` for sequences: ``test_{m}_mean``, ``val_{m}_mean``, ...)."""
    first = g.iloc[0]
    rec = {f: first[f] for f in factors}
    higher = MONITORS[f"val_{m}"]
    rec.update(
        n_seeds=int(g.seed.nunique()) if g.seed.notna().any() else len(g),
        n_runs=len(g),
        **{f"{part}_{m}_{stat}": getattr(g[column], stat)() for part, column in (("test", f"test_{m}"), ("val", f"best_val_{m}"),
           ("train", f"train_{m}")) for stat in ("mean", "std")},  # fmt: skip
        subset_acc_mean=g.test_subset_acc.mean(),
        subset_acc_std=g.test_subset_acc.std(),
        **{f"{key}_{stat}": getattr(g[key], stat)() if key in g else float("nan") for key, _ in METRIC_EXTRA.values() for stat in ("mean", "std")},
        solved=_solved(g),
        trainable_params=first.trainable_params,
        qnn_params=first.qnn_params,
        mapping_params=first.mapping_params,
        compression_ratio=first.compression_ratio,
        gen_gap=g.gen_gap.mean(),
        epochs_completed=g.epochs_completed.mean(),
        wall_time_s=g.wall_time_s.mean(),
        epoch_time_s=(g.train_time_s / g.epochs_completed.where(g.epochs_completed > 0)).mean(),
        qpu_executions=g.qpu_executions.mean() if "qpu_executions" in g else float("nan"),
        qpu_shots=g.qpu_shots.mean() if "qpu_shots" in g else float("nan"),
        best_run=g.sort_values([f"best_val_{m}", "run_dir"], ascending=[not higher, True]).run_dir.iloc[0],
        at_budget=not _missing(first.get("budget")),
    )
    return rec


#: per monitored metric: how the tables name it, and whether it shows in percent
METRIC_LABELS = {"acc": ("acc %", True), "mse": ("MSE", False), "return": ("return", False)}
#: per monitored metric: another test metric the task reports beside it (its summary key, its column)
METRIC_EXTRA = {"mse": ("test_mae", "test MAE"), "return": ("test_return_sampled", "test return, sampled actions")}


def main_table(df: pd.DataFrame, factors: list[str] | None = None, m: str = "acc") -> tuple[list[str], list[list[str]], pd.DataFrame]:
    """(header, rows, grouped frame) of completed runs, grouped by ``factors`` (default: every varied factor); ``m``:
    the task's monitored metric (accuracy; ``mse`` for sequence runs, with their mean absolute error beside it)."""
    label, pct = METRIC_LABELS[m]
    factors = [f for f in (factors or varied_factors(df)) if f not in ALWAYS]
    factors = [*ALWAYS, *factors]
    done = df[df.status == "completed"].copy()
    if done.empty:
        return [], [], pd.DataFrame()
    keys = done[factors].map(str)  # NaN -> "nan": a missing value is its own group key
    done["_group"] = keys.agg(" | ".join, axis=1)
    rows, records = [], []
    for group, g in sorted(done.groupby("_group"), key=lambda kv: kv[0]):
        rec = _group_record(g, factors, m)
        records.append(rec)
    grouped = pd.DataFrame(records)
    grouped = grouped.sort_values(
        ["dataset", "model", "mode", f"test_{m}_mean"], ascending=[True, True, True, not MONITORS[f"val_{m}"]], kind="stable"
    ).reset_index(drop=True)
    shown = [f for f in factors if f not in ("dataset", "model", "mode")]
    subset = bool(done.test_subset_acc.notna().any())
    extra = METRIC_EXTRA.get(m)
    solved = m == "return"
    header = ["dataset", "model", "mode", *shown, "seeds", f"test {label}", *(["test acc, random subset %"] if subset else []),
              *([extra[1]] if extra else []), f"train {label}", f"best val {label}", *(["solved (seeds, episode)"] if solved else []),
              "trainable (QNN / mapping)", "compression", "gen. gap", "epochs done", "wall s", "train s / epoch"]
    qpu = "qpu_executions" in grouped and grouped.qpu_executions.notna().any()
    if qpu:  # what the training would have run on a processor (summary.json qpu)
        header += ["QPU circuit runs", "QPU shots"]
    for rec in grouped.to_dict("records"):
        mode = rec["mode"] + ((" (small network)" if rec["at_budget"] else " (baseline)") if rec["mode"] == "classical" else "")
        params = _fmt(rec["trainable_params"])
        if rec["mode"] != "classical" and (rec["qnn_params"] or rec["mapping_params"]):  # hashed: shared values only
            params += f" ({_fmt(rec['qnn_params'])} / {_fmt(rec['mapping_params'])})"
        rows.append([
            _fmt(rec["dataset"]), _fmt(rec["model"]), mode, *[_factor(rec, f) for f in shown], str(rec["n_seeds"]),
            _pm(rec[f"test_{m}_mean"], rec[f"test_{m}_std"], rec["n_runs"], pct),
            *([_pm(rec["subset_acc_mean"], rec["subset_acc_std"], rec["n_runs"])] if subset else []),
            *([_pm(rec[f"{extra[0]}_mean"], rec[f"{extra[0]}_std"], rec["n_runs"], False)] if extra else []),
            _pm(rec[f"train_{m}_mean"], rec[f"train_{m}_std"], rec["n_runs"], pct),
            _pm(rec[f"val_{m}_mean"], rec[f"val_{m}_std"], rec["n_runs"], pct),
            *([rec["solved"] or "–"] if solved else []),
            params, f"{rec['compression_ratio']:.2f}x", _fmt(rec["gen_gap"], 3), _fmt(rec["epochs_completed"], 3),
            _fmt(rec["wall_time_s"], 3), _fmt(rec["epoch_time_s"], 3),
            *([_count(rec["qpu_executions"]), _count(rec["qpu_shots"])] if qpu else []),
        ])
    return header, rows, grouped


def _count(x) -> str:
    """A large count in scientific notation (``–`` when missing)."""
    return "–" if _missing(x) else f"{x:.3g}"


def _difference(rec: dict) -> str:
    """A difference in points with its interval, from qt.stats' diff_mean / ci_low / ci_high (no interval below 2 values)."""
    interval = "" if math.isnan(rec["ci_low"]) else f" [{rec['ci_low'] * 100:+.2f}, {rec['ci_high'] * 100:+.2f}]"
    return f"{rec['diff_mean'] * 100:+.2f}{interval}"


#: comparisons at the QT config's trainable count: its classical stand-ins and the best small network
EQUAL_BUDGET = ("no_entanglement", "hashed", "small network")


def _shown(diff: pd.DataFrame) -> list[str]:
    """The describing columns that tell the table's QT groups apart (dataset always)."""
    return ["dataset", *(c for c in DESCRIBE if c != "dataset" and c in diff.columns and diff[c].map(str).nunique() > 1)]


def _comparison_rows(diff: pd.DataFrame, shown: list[str], who) -> list[list[str]]:
    return [[*(_fmt(rec[c]) for c in shown), who(rec), f"{rec['n_qt']} / {rec['n_control']}", f"{rec['qt_mean'] * 100:.2f}",
             f"{rec['control_mean'] * 100:.2f}", _difference(rec)] for rec in diff.to_dict("records")]  # fmt: skip


def _is_reference(diff: pd.DataFrame) -> pd.Series:
    return diff.control.map(lambda c: str(c).startswith("reference "))


def difference_table(diff: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """QT minus each of its controls on test accuracy, seed-matched pairs, mean and 95 % t interval (qt.stats)."""
    diff = diff[(diff.comparison == "paired t") & ~_is_reference(diff)] if not diff.empty else diff
    if diff.empty:
        return [], []
    shown = _shown(diff)
    header = [*shown, "control (trainable)", "pairs", "QT test acc %", "control test acc %", "difference, points [95 % t interval]"]
    return header, _comparison_rows(diff, shown, lambda r: f"{r['control']} ({_fmt(r['control_params'])})")


def equal_budget_table(diff: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """QT against the classical and separable methods with its trainable count: paired t (hashed, no entanglement), Welch (small network)."""
    diff = diff[diff.control.isin(EQUAL_BUDGET)] if not diff.empty else diff
    if diff.empty:
        return [], []
    order = diff.control.map(EQUAL_BUDGET.index)
    diff = diff.assign(_order=order).sort_values(["dataset", "experiment", "group_key", "_order"], kind="stable", key=lambda c: c.map(str))
    shown = _shown(diff)
    header = [*shown, "method (trainable)", "runs (QT / method)", "QT test acc %", "method test acc %",
              "difference, points [95 % interval]", "interval"]
    rows = _comparison_rows(diff, shown, _method)
    return header, [[*row, rec["comparison"]] for row, rec in zip(rows, diff.to_dict("records"))]


def _method(rec: dict) -> str:
    if rec["control"] == "small network":
        return f"small network {rec['control_model']}, lr {_fmt(rec['control_lr'])} ({_fmt(rec['control_params'])})"
    return f"{rec['control']} ({_fmt(rec['control_params'])})"


def other_target_table(diff: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """QT against other networks trained directly on its dataset: unpaired, Welch's 95 % interval (qt.stats)."""
    diff = diff[diff.control == "other network"] if not diff.empty else diff
    if diff.empty:
        return [], []
    shown = _shown(diff)
    header = [*shown, "trained directly", "runs (QT / direct)", "QT test acc %", "direct test acc %", "difference, points [95 % Welch interval]"]
    return header, _comparison_rows(diff, shown, lambda r: f"{r['control_model']} ({r['control_experiment']})")


def reference_table(diff: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Each QT group minus its reference configuration (``--against``), seed-matched pairs, 95 % t interval (qt.stats)."""
    diff = diff[_is_reference(diff)] if not diff.empty else diff
    if diff.empty:
        return [], []
    shown = _shown(diff)
    if "trainable_params" not in shown:
        shown.append("trainable_params")
    header = [*shown, "reference (trainable)", "pairs", "test acc %", "reference test acc %", "difference, points [95 % t interval]"]
    return header, _comparison_rows(diff, shown, lambda r: f"{r['control'][len('reference '):]} ({_fmt(r['control_params'])})")


#: the comparison sections of the report, in order: (heading, table from qt.analysis.stats.comparisons, how to read it)
COMPARISON_SECTIONS = (
    ("QT against its controls", difference_table, "Each difference is QT minus the control on test accuracy, over the "
     "seeds both were run with (pairs); the interval is the two-sided 95 % t interval of the mean paired difference "
     "(qt/analysis/stats.py). A control pairs with the QT runs whose config it equals but for what makes it that control."),
    ("QT against equal-budget methods", equal_budget_table, "Each row is a method with QT's trainable count: the circuit "
     "without entangling gates and HashedNets (paired by seed, t interval), and the small network trained directly at "
     "that budget (model=cnn_budget, its shape and lr searched: Welch's interval). The difference is QT minus the method, "
     "in points of test accuracy."),
    ("Against a reference configuration (--against)", reference_table, "Each difference is the QT configuration minus "
     "its reference (the QT group of the same experiment, dataset and training that matches every --against value) on "
     "test accuracy, over the seeds both ran; the interval is the two-sided 95 % t interval of the mean paired "
     "difference (qt/analysis/stats.py)."),
    ("QT against other networks trained directly", other_target_table, "Each difference is QT minus another target "
     "network trained directly on the same dataset (no pairs: a different network); the interval is Welch's two-sided "
     "95 % t interval for the difference of means (qt/analysis/stats.py)."),
)  # fmt: skip


def problem_table(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    bad = df[df.status != "completed"].sort_values("run_dir", kind="stable")
    rows = [[r.run_dir, r.status, (str(r.reason) if r.reason is not None else "–")[:200]] for r in bad.itertuples()]
    return ["run dir", "status", "reason"], rows


def baseline_note(df: pd.DataFrame) -> str | None:
    done = df[df.status == "completed"]
    missing = []
    for (dataset, model), g in sorted(done.groupby(["dataset", "model"], dropna=False)):
        if (g["mode"] != "classical").any() and not (g["mode"] == "classical").any():
            missing.append(f"{dataset} / {model}")
    if not missing:
        return None
    return ("No classical baseline for " + ", ".join(missing) + ": add a `mode=classical` run with the same dataset and "
            "model, so the QT rows can be compared with the network trained directly.")


FRONTIER_HOW = ("One point per configuration with two or more seeds: test accuracy mean ± std over seeds, its trainable "
                "parameters and the weights it deploys (the target's); the effective dimension is the rank of the generator's "
                "dp/dtheta (python -m qt.tools.rank; – where not measured). frontier.csv holds the points.")
BUDGET_HOW = ("QT minus each other method at the same dataset, budget and epochs, over the seeds both ran: 95 % interval and "
              "two-sided p from the paired bootstrap over seeds and test images (qt.analysis.stats.seed_image_bootstrap); "
              "Holm's adjustment across every row of this table.")


def frontier_table(points: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = ["dataset", "method", "budget", "epochs", "trainable", "deployed weights", "effective dimension (init / end)", "n", "test acc (%)"]
    rows = [[p.dataset, p.method, _fmt(p.budget), _fmt(p.epochs), f"{p.trainable_params:,}", f"{p.deployed_weights:,}",
             f"{_fmt(p.rank_init)} / {_fmt(p.rank_final)}", str(p.n), _pm(p.mean, p.std, p.n)] for p in points.itertuples()]  # fmt: skip
    return header, rows


def budget_table(diff: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = ["dataset", "budget", "epochs", "against", "seeds", "QT (trainable)", "other (trainable)", "QT − other, 95 % interval", "p", "p (Holm)"]
    rows = [[d.dataset, _fmt(d.budget), _fmt(d.epochs), d.control, str(d.n_qt), f"{100 * d.qt_mean:.2f} ({d.qt_params:,})",
             f"{100 * d.control_mean:.2f} ({d.control_params:,})", f"{100 * d.diff_mean:+.2f} [{100 * d.ci_low:+.2f}, {100 * d.ci_high:+.2f}]",
             _fmt(d.p_value, 3), _fmt(d.p_holm, 3)] for d in diff.itertuples()]  # fmt: skip
    return header, rows


# -- plots ---------------------------------------------------------------------------------
def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _finish(fig, ax, xlabel: str, ylabel: str, legend_size: int = 8):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    return fig


def plot_acc_vs_params(df: pd.DataFrame):
    plt = pyplot(offscreen=False)  # a notebook keeps its inline backend; the report set Agg first

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    done = df[(df.status == "completed") & df.test_acc.notna()].sort_values("run_dir")
    if done.empty:
        return None
    labels = done["mode"].astype(str) + done["circuit"].map(lambda c: f" {c}" if isinstance(c, str) else "") + done[
        "variant"
    ].map(lambda v: f" ({v})" if isinstance(v, str) and v not in ("qt", "classical") else "")
    colors = {label: f"C{i % 10}" for i, label in enumerate(sorted(labels.unique()))}
    datasets = sorted(done.dataset.map(str).unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):  # one panel, and one Pareto front, per dataset
        mine = done[done.dataset.map(str) == dataset]
        for label in sorted(labels[mine.index].unique()):
            sel = mine[labels[mine.index] == label]
            ax.scatter(sel.trainable_params, sel.test_acc * 100, label=label, alpha=0.8, color=colors[label])
        pts = list(zip(mine.trainable_params, mine.test_acc * 100))
        front = sorted(pts[i] for i in pareto_front(pts, ["minimize", "maximize"]))  # fewer parameters, higher accuracy
        ax.step([p for p, _ in front], [a for _, a in front], where="post", color="k", lw=1, label="Pareto front")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(dataset)
        _finish(fig, ax, "trainable parameters", "test accuracy %", legend_size=7)
    return fig


def plot_acc_vs_blocks(df: pd.DataFrame):
    plt = pyplot(offscreen=False)  # a notebook keeps its inline backend; the report set Agg first

    done = df[(df.status == "completed") & df.n_blocks.notna()]
    if done.empty or done.n_blocks.nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4))
    keys = ["circuit", "mapping"] if done.mapping.nunique() > 1 else ["circuit"]
    for key, g in sorted(done.groupby(keys, dropna=False), key=lambda kv: str(kv[0])):
        stats = g.groupby("n_blocks").test_acc.agg(["mean", "std"]).sort_index()
        label = " / ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        ax.errorbar(stats.index, stats["mean"] * 100, yerr=stats["std"].fillna(0) * 100, marker="o", capsize=3, label=label)
    return _finish(fig, ax, "n_blocks", "test accuracy % (mean ± std over seeds)")


def plot_val_curves(run_dirs: list[str], labels: list[str], metric: str = "acc"):
    """Validation accuracy (or another task's ``metric``, on a log axis) per epoch of several runs on one axis (one
    run's own curves: qt.results.plots.plot_curves)."""
    plt = pyplot(offscreen=False)  # a notebook keeps its inline backend; the report set Agg first

    if not run_dirs:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for run_dir, label in zip(run_dirs, labels):
        m = learning_curves(run_dir)
        if not m.empty and f"val_{metric}" in m:
            ax.plot(m.epoch, m[f"val_{metric}"] * (100 if metric == "acc" else 1), marker=".", label=label)
    if metric == "mse":
        ax.set_yscale("log")
    return _finish(fig, ax, "epoch", "validation accuracy %" if metric == "acc" else f"validation {METRIC_LABELS[metric][0]}", legend_size=7)


def plot_return_bands(runs: pd.DataFrame, within: list[str]):
    """task=rl: each group's mean training return per epoch over its seeds, with a ± 1 std band."""
    plt = pyplot(offscreen=False)

    done = runs[runs.status == "completed"]
    if done.empty:
        return None
    factors = [f for f in (within or varied_factors(done)) if f in done.columns and f != "seed"]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    keys = done[factors].map(str).agg(" ".join, axis=1) if factors else pd.Series("all", index=done.index)
    for label, g in sorted(done.groupby(keys), key=lambda kv: kv[0]):
        curves = [learning_curves(d).set_index("epoch").train_return for d in g.run_dir]
        table = pd.concat(curves, axis=1)
        mean, std = table.mean(axis=1), table.std(axis=1).fillna(0)
        episodes = mean.index * float(g.iloc[0].get("task_episodes_per_epoch") or 1)
        ax.plot(episodes, mean, label=f"{label} ({len(curves)} seeds)")
        ax.fill_between(episodes, mean - std, mean + std, alpha=0.2)
    return _finish(fig, ax, "episodes" if "task_episodes_per_epoch" in done else "epoch", "training return (mean ± std over seeds)", legend_size=7)


def study_plots(paths: list[Path]) -> list[tuple[str, object]]:
    import optuna

    with warnings.catch_warnings():  # optuna's matplotlib plots are "experimental": not the report's reader's concern
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _study_plots(paths)


def _study_plots(paths: list[Path]) -> list[tuple[str, object]]:
    import optuna

    out = []
    for path in paths:
        storage = make_storage(f"sqlite:///{path}")
        for s in sorted(optuna.get_all_study_summaries(storage), key=lambda s: s.study_name):
            study = optuna.load_study(study_name=s.study_name, storage=storage)
            complete = [t for t in study.trials if t.state.name == "COMPLETE"]
            if len(study.directions) > 1 or not complete:
                continue
            ax = optuna.visualization.matplotlib.plot_optimization_history(study)
            out.append((f"Optuna study {s.study_name}: optimization history", ax.figure))
            caption = f"Optuna study {s.study_name}: parameter importances (fANOVA)"
            if len({t.value for t in complete}) < 2 or len(study.best_trial.params) < 2:
                out.append((caption, "undefined: the completed trials do not differ in their objective value or parameters"))
                continue
            ax = optuna.visualization.matplotlib.plot_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
            out.append((caption, ax.figure))
    return out


# -- rendering ------------------------------------------------------------------------------
def md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
       "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
       "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}")


def task_difference_table(diff: pd.DataFrame, m: str) -> tuple[list[str], list[list[str]]]:
    """Another task's comparisons (QT minus each control, the baseline and small networks on the test metric ``m``):
    the values as they are (an error, not a percentage), the interval the comparison states."""
    if diff.empty:
        return [], []
    label = METRIC_LABELS[m][0]
    shown = _shown(diff)
    header = [*shown, "against (trainable)", "runs (QT / other)", f"QT test {label}", f"other test {label}",
              "difference [95 % interval]", "interval"]
    interval = lambda r: "" if math.isnan(r["ci_low"]) else f" [{r['ci_low']:+.4g}, {r['ci_high']:+.4g}]"  # noqa: E731
    rows = [[*(_fmt(r[c]) for c in shown), _method(r), f"{r['n_qt']} / {r['n_control']}", f"{r['qt_mean']:.4g}",
             f"{r['control_mean']:.4g}", f"{r['diff_mean']:+.4g}{interval(r)}", r["comparison"]] for r in diff.to_dict("records")]  # fmt: skip
    return header, rows


def task_sections(df: pd.DataFrame, within: list[str], against: dict[str, str] | None) -> tuple[list, list, pd.DataFrame]:
    """The Results and comparison sections of the runs of each task but classification (``task=sequence``): (sections
    as (heading, header, rows, how), figures, every comparison). Their metric is the task's (mean squared error), and
    lower is better: a negative difference is QT ahead."""
    sections, figures, frames = [], [], []
    for name, runs in sorted(df.groupby(df.task.fillna("classification").map(str))):
        if name == "classification":
            continue
        m = TASKS[name].monitor
        header, rows, grouped = main_table(runs, within, m)
        how = (f"task={name}: {METRIC_LABELS[m][0]} of the kept epoch's model on each split, mean ± std over seeds, in the "
               "dataset's scaled units (qt/training/series.py); lower is better." if m == "mse" else
               f"task={name}: the mean episode return of the kept epoch's policy, mean ± std over seeds: test and best val "
               "with greedy actions (and test with sampled ones) on fixed starts, train over the last task.window training "
               "episodes as played; solved: the seeds whose last-window training mean reached the environment's threshold, "
               "and the median episode it happened (the other seeds censored).")
        sections.append((f"Results: task={name}", header, rows, how))
        diff = comparisons(runs, metric=f"test_{m}", against=against)
        if not diff.empty:
            frames.append(diff)
            sections.append((f"QT against its controls and the networks trained directly: task={name}", *task_difference_table(diff, m),
                             f"QT minus each other method on test {METRIC_LABELS[m][0]} (negative: QT lower): paired t over "
                             "seeds for the controls, Welch for networks trained directly (qt/analysis/stats.py)."))
        if not grouped.empty and m == "return":
            figures.append((f"Training return per epoch, task={name}: mean over seeds, band ± 1 std (each group)", plot_return_bands(runs, within)))
        if not grouped.empty:
            best = grouped.sort_values([f"test_{m}_mean", "best_run"], ascending=[not MONITORS[f"val_{m}"], True]).head(6)
            figures.append((f"Validation {METRIC_LABELS[m][0]} per epoch, task={name} (best run of the top groups)",
                            plot_val_curves(list(best.best_run), curve_labels(best), m)))
    return sections, figures, pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def report_figures(df: pd.DataFrame, grouped: pd.DataFrame, inputs: list[Path], curves: int) -> list[tuple[str, object]]:
    """(caption, figure, or why there is none) for every plot of the report."""
    figures = [("Test accuracy vs trainable parameters", plot_acc_vs_params(df)),
               ("Accuracy vs n_blocks", plot_acc_vs_blocks(df))]
    frontier = plot_frontier(frontier_points(df))
    if frontier is not None:
        figures.insert(0, ("The frontier: test accuracy vs trainable parameters and vs deployed weights (mean, ± 1 std over seeds)", frontier))
    if not grouped.empty:
        best = grouped.sort_values(["test_acc_mean", "best_run"], ascending=[False, True]).head(curves)
        figures.append(("Learning curves (best run of the top groups)", plot_val_curves(list(best.best_run), curve_labels(best))))
    return figures + study_plots([p for p in inputs if p.is_file() and p.suffix == ".db"])


def curve_labels(groups: pd.DataFrame) -> list[str]:
    """A legend that names what differs between the plotted groups (factor=value), and each curve's run."""
    records = groups.to_dict("records")
    differ = [f for f in groups.columns if f in FACTORS and f not in VARIANT_PARTS and len({_factor(r, f) for r in records}) > 1]
    return [" ".join([*(f"{f}={_factor(r, f)}" for f in differ), f"({Path(r['best_run']).name})"]) for r in records]


def render_figures(figures: list[tuple[str, object]], out: Path, md: list[str], parts_html: list[str]) -> None:
    """PNG files beside report.md, and the same plots embedded in report.html."""
    plt = pyplot(offscreen=False)  # a notebook keeps its inline backend; the report set Agg first

    md += ["## Plots", ""]
    parts_html.append("<h2>Plots</h2>")
    try:
        for i, (caption, fig) in enumerate(figures):
            _render(i, caption, fig, out, md, parts_html)
    finally:  # every figure closed, whatever happened to one
        for _, fig in figures:
            if fig is not None and not isinstance(fig, str):
                plt.close(fig)


def _render(i: int, caption: str, fig, out: Path, md: list[str], parts_html: list[str]) -> None:
    if fig is None:
        return
    if isinstance(fig, str):  # a plot that cannot be drawn, and why
        md += [f"### {caption}", "", fig, ""]
        parts_html += [f"<h3>{html.escape(caption)}</h3>", f"<p>{html.escape(fig)}</p>"]
        return
    png = _png(fig)
    name = f"plot_{i}.png"
    (out / name).write_bytes(png)
    md += [f"### {caption}", "", f"![{caption}]({name})", ""]
    parts_html += [f"<h3>{html.escape(caption)}</h3>",
                   f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">']


def build_report(inputs: list[Path], out: Path, title: str = "qt report", curves: int = 6, against: dict[str, str] | None = None) -> Path:
    pyplot()  # off-screen before any figure
    out.mkdir(parents=True, exist_ok=True)
    everything = load_runs(*inputs)
    shared, between, within = split_factors(everything)
    df = everything[everything.task.fillna("classification") == "classification"] if "task" in everything else everything
    others, other_figures, other_diff = task_sections(everything, within, against)
    header, rows, grouped = main_table(df, within)
    pheader, prows = problem_table(everything)
    counts = everything.status.value_counts().sort_index()
    md = [f"# {title}", "", f"Inputs: {', '.join(str(p) for p in inputs)}", "",
          f"Runs: {len(everything)} ({', '.join(f'{k} {v}' for k, v in counts.items())}). Accuracies (errors, for sequences) are those of each run's "
          "best-validation checkpoint (the last epoch's model where a run has no validation split); ± is the standard "
          "deviation over seeds.", ""]
    parts_html = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(md[2])}</p>", f"<p>{html.escape(md[4])}</p>"]

    def table_section(heading: str, header: list[str], rows: list[list[str]], empty: str, how: str | None = None) -> None:
        md.extend([f"## {heading}", ""])
        parts_html.append(f"<h2>{html.escape(heading)}</h2>")
        md.extend([md_table(header, rows) if rows else empty, ""])
        parts_html.append(html_table(header, rows) if rows else f"<p>{html.escape(empty)}</p>")
        if how:
            md.extend([how, ""])
            parts_html.append(f"<p>{html.escape(how)}</p>")

    if shared:
        line = "Shared by every run: " + ", ".join(f"{k} {v}" for k, v in shared.items()) + "."
        md += [line, ""]
        parts_html.append(f"<p>{html.escape(line)}</p>")
    eheader, erows = experiments_table(everything, between)
    if erows:
        table_section("Experiments", eheader, erows, "")
    if rows or not others:
        table_section("Results", header, rows, "No completed runs.")
    for heading, theader, trows, how in others:
        table_section(heading, theader, trows, "No completed runs.", how)
    note = baseline_note(df)
    if note:
        md += [f"> {note}", ""]
        parts_html.append(f"<p><em>{html.escape(note)}</em></p>")
    points, at_budget = frontier_points(df), budget_comparisons(df)
    diff = comparisons(df, against=against)
    frames = [f for f in (diff, at_budget, other_diff) if not f.empty]
    if frames:  # every comparison, the bootstrap ones at the budgets included
        pd.concat(frames, ignore_index=True).to_csv(out / "comparisons.csv", index=False)
    if points.method.nunique() >= 2:
        points.to_csv(out / "frontier.csv", index=False)
        table_section("Frontier", *frontier_table(points), "", FRONTIER_HOW)
    if not at_budget.empty:
        table_section("QT against every method at its budget (seeds and test images)", *budget_table(at_budget), "", BUDGET_HOW)
    for heading, table, how in COMPARISON_SECTIONS:
        cheader, crows = table(diff)
        if crows:
            table_section(heading, cheader, crows, "", how)
    table_section("Runs that did not complete (pruned, diverged, failed, unfinished)", pheader, prows, "None.")

    figures = report_figures(df, grouped, inputs, curves) if not df.empty or not others else []
    render_figures(figures + other_figures, out, md, parts_html)
    return write_report(out, title, md, parts_html, everything)


def write_report(out: Path, title: str, md: list[str], parts_html: list[str], runs: pd.DataFrame) -> Path:
    """report.md, report.html (plots embedded) and runs.csv in ``out``."""
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "report.html").write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style>"
        f"</head><body>{''.join(parts_html)}</body></html>\n"
    )
    runs.to_csv(out / "runs.csv", index=False)
    return out / "report.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qt.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="run dirs, sweep dirs, folders of runs, or Optuna .db files")
    parser.add_argument("--out", type=Path, required=True, help="report folder (report.md, report.html, plots, runs.csv)")
    parser.add_argument("--title", default="qt report")
    parser.add_argument("--curves", type=int, default=6, help="learning curves of the best N groups")
    parser.add_argument("--against", action="append", default=[], metavar="COLUMN=VALUE",
                        help="compare each QT group with the reference configuration of its experiment that has these values "
                        "(e.g. --against partitions=1, --against mapping_net=mlp; repeat for several columns)")
    args = parser.parse_args(argv)
    bad = [a for a in args.against if "=" not in a]
    if bad:
        print(f"error: --against {bad[0]}: give COLUMN=VALUE, e.g. --against partitions=1", file=sys.stderr)
        return 2
    against = dict(a.split("=", 1) for a in args.against)
    missing = [str(p) for p in args.inputs if not p.exists()]
    if missing:
        print(f"error: no such input: {', '.join(missing)}: pass run dirs, sweep dirs or Optuna .db files", file=sys.stderr)
        return 2
    try:
        path = build_report(args.inputs, args.out, args.title, args.curves, against)
    except QTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report: {path} and {path.with_suffix('.html')}")
    return 0
