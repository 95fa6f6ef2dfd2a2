"""The accuracy–parameter frontier: every method's configurations as points, and the comparisons at equal budgets.

* :func:`method_of`: what a run is, for the frontier: QT (``qt``), one of its controls by name (``hashed``,
  ``mps_born``, ...), or a network trained directly, named by its model option (``direct compact``,
  ``direct cnn_budget``, ...).
* :func:`frontier_points`: one point per configuration with at least two seeds (a search's single-seed
  trials are no point): the mean and standard deviation of its test accuracy over seeds, its trainable
  parameters and the weights it deploys (the target's, which for QT and HashedNets is larger than what
  trains), and its budget (``max_trainable_params`` for QT and its controls, ``model.max_params`` for a
  network trained directly).
* :func:`budget_comparisons`: at each dataset, budget and epoch count, each QT configuration against each
  other method's configuration there, over the seeds both ran, with the paired bootstrap over seeds and
  test images (:func:`qt.analysis.stats.seed_image_bootstrap`), and Holm-adjusted p-values across all of them.
* :func:`plot_frontier`: accuracy against trainable parameters and against deployed weights, one line per
  method, error bars one standard deviation over seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from qt.analysis.stats import holm, seed_image_bootstrap, t_interval
from qt.results.plots import pyplot
from qt.results.schema import read_predictions

#: frontier.csv's columns
POINT_COLUMNS = ["dataset", "method", "budget", "epochs", "trainable_params", "deployed_weights", "n", "mean", "std", "ci_low",
                 "ci_high", "rank_init", "rank_final", "experiment", "model", "group_key", "run_dirs"]  # fmt: skip


def method_of(df: pd.DataFrame) -> pd.Series:
    """The method of each run: its variant (``qt`` and the controls), or ``direct MODEL`` for a network trained directly."""
    direct = df.variant == "classical"
    return df.variant.where(~direct, "direct " + df.model.astype(str))


def _budget(df: pd.DataFrame) -> pd.Series:
    """The budget a run was held to: ``max_trainable_params`` (QT and its controls) or ``model.max_params`` (``budget``)."""
    qt_budget = df["max_trainable_params"] if "max_trainable_params" in df.columns else pd.Series(np.nan, index=df.index)
    direct = df["budget"] if "budget" in df.columns else pd.Series(np.nan, index=df.index)
    return qt_budget.where(df.variant != "classical", direct)


def frontier_points(df: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """One row per configuration (``group_key`` and method) with at least two completed seeds, in a stable order."""
    done = df[(df.status == "completed") & df[metric].notna() & df.group_key.notna()].copy()
    if done.empty:
        return pd.DataFrame(columns=POINT_COLUMNS)
    done["method"], done["budget_"] = method_of(done), _budget(done)
    rows = []
    for (method, key), g in done.groupby(["method", "group_key"]):
        if g.seed.nunique() < 2:
            continue
        values = list(g[metric])
        mean, low, high = t_interval(values)
        first = g.iloc[0]
        rows.append({
            "dataset": first.dataset, "method": method, "budget": first.budget_, "epochs": first.get("epochs"),
            "trainable_params": int(first.trainable_params), "deployed_weights": int(first.target_weights), "n": len(values),
            "mean": mean, "std": float(np.std(values, ddof=1)), "ci_low": low, "ci_high": high,
            **{k: g[k].mean() if k in g.columns and g[k].notna().any() else None for k in ("rank_init", "rank_final")},
            "experiment": first.get("experiment"), "model": first.get("model"), "group_key": key,
            "run_dirs": ";".join(sorted(map(str, g.run_dir))),
        })  # fmt: skip
    out = pd.DataFrame(rows, columns=POINT_COLUMNS)
    return out.sort_values(["dataset", "method", "trainable_params", "group_key"], kind="stable").reset_index(drop=True)


def _correct(run_dirs: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """(labels, correctness per run x image) of runs that saved their test predictions; None if any did not."""
    labels, rows = None, []
    for run_dir in run_dirs:
        got = read_predictions(run_dir)
        if got is None:
            return None
        label, predicted = got
        if labels is not None and not np.array_equal(labels, label):
            return None  # another test set: not comparable image by image
        labels = label
        rows.append(label == predicted)
    return labels, np.asarray(rows, dtype=np.float64)


def budget_comparisons(df: pd.DataFrame, metric: str = "test_acc", level: float = 0.95, reps: int = 4000) -> pd.DataFrame:
    """QT against every other method at the same dataset, budget and epochs, over the seeds both ran (at least two).

    The difference is QT's accuracy minus the other's, over the common seeds and the full test set; its interval and
    two-sided p-value come from the paired bootstrap over seeds and images. ``p_holm``: Holm's adjustment over every
    row returned (the family the verdict rests on); pairs without saved predictions get the seed-only t interval
    and no p-value.
    """
    done = df[(df.status == "completed") & df[metric].notna() & df.group_key.notna() & df.seed.notna()].copy()
    if done.empty:
        return pd.DataFrame()
    done["method"], done["budget_"] = method_of(done), _budget(done)
    done = done[done.budget_.notna()]
    rows = []
    for (dataset, budget, epochs), cell in done.groupby(["dataset", "budget_", "epochs"]):
        groups = [(m, k, g) for (m, k), g in cell.groupby(["method", "group_key"]) if g.seed.nunique() >= 2]
        for qt_method, qt_key, qt in groups:
            if qt_method != "qt":
                continue
            for method, key, other in groups:
                if key == qt_key:
                    continue
                seeds = sorted(set(qt.seed) & set(other.seed))
                if len(seeds) < 2:
                    continue
                a = qt.drop_duplicates("seed").set_index("seed").loc[seeds]
                b = other.drop_duplicates("seed").set_index("seed").loc[seeds]
                row = {"dataset": dataset, "budget": budget, "epochs": epochs, "comparison": "paired bootstrap (seeds x images)",
                       "control": method, "n_qt": len(seeds), "n_control": len(seeds), "qt_params": int(a.trainable_params.iloc[0]),
                       "control_params": int(b.trainable_params.iloc[0]), "qt_weights": int(a.target_weights.iloc[0]),
                       "control_weights": int(b.target_weights.iloc[0]), "qt_mean": a[metric].mean(), "control_mean": b[metric].mean(),
                       "group_key": qt_key, "control_key": key}  # fmt: skip
                ca, cb = _correct(list(a.run_dir)), _correct(list(b.run_dir))
                if ca is not None and cb is not None and np.array_equal(ca[0], cb[0]):
                    diff, low, high, p = seed_image_bootstrap(ca[1], cb[1], level=level, reps=reps)
                else:
                    diff, low, high = t_interval(list(a[metric].to_numpy() - b[metric].to_numpy()), level)
                    p = math.nan
                    row["comparison"] = "paired t (seeds; no saved predictions)"
                rows.append({**row, "diff_mean": diff, "ci_low": low, "ci_high": high, "p_value": p})
    out = pd.DataFrame(rows)
    if not out.empty:
        out["p_holm"] = holm(list(out.p_value))
    return out


def plot_frontier(points: pd.DataFrame):
    """Test accuracy (%) against trainable parameters and against deployed weights, one row of panels per dataset,
    one line per method; None without points of two methods."""
    if points.empty or points.method.nunique() < 2:
        return None
    plt = pyplot()
    datasets = sorted(points.dataset.unique())
    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 4.2 * len(datasets)), squeeze=False)
    for row, dataset in zip(axes, datasets):
        sub = points[points.dataset == dataset]
        for ax, x, label in ((row[0], "trainable_params", "trainable parameters"), (row[1], "deployed_weights", "deployed weights")):
            for method, g in sub.groupby("method"):
                g = g.sort_values(x)
                ax.errorbar(g[x], 100 * g["mean"], yerr=100 * g["std"], marker="o", ms=4, capsize=3, label=method)
            ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel(f"{dataset} test accuracy (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
