"""How sure a comparison is: seed-matched paired differences with a t interval.

A control (``variant``) is run with the seeds of the Quantum-Train runs it controls, so each
seed gives a pair. For every QT group and every control of it in the same frame, this
module reports the number of pairs, both means, and the mean paired difference (QT minus
control) with its two-sided t interval: mean ± t(1 - (1 - level) / 2, n - 1) · s / sqrt(n),
where s is the standard deviation of the n differences (n - 1 in the denominator).

A control pairs with a QT group when it shares the group's context (dataset, target,
experiment, training budget); the frozen-circuit and generator controls must also share
its circuit and mapping. The classical baseline, which has neither, pairs with every QT group
trained the same way (dataset, target, loss, epochs, batch, optimizer and schedule), whatever
experiment file launched it: ``experiment=mnist_700 variant=classical`` would train exactly
the network ``experiment=mnist_1500 variant=classical`` trains.

A different network trained directly on the same dataset (a small target against the large
target QT generates) is no control and has no pairs: :func:`other_target_differences` gives
the unpaired difference of the means with Welch's t interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
from scipy import stats

#: the controls a QT group is compared with, in report order
CONTROLS = ("frozen", "classical_generator", "fixed_vector", "classical")
#: what a control must share with the QT group to be its control
CONTEXT = ["dataset", "model", "target_activation", "experiment", "loss", "epochs", "batch_size"]
#: ... and, for controls that keep a generator and mapping, these too
#: what the classical baseline must share with the QT group (its whole training, not the experiment's name)
TRAINING = ["dataset", "model", "target_activation", "loss", "epochs", "batch_size", "optimizer", "lr", "weight_decay", "scheduler", "clip_norm"]
QT_FACTORS = ["circuit", "layout", "n_blocks", "shots", "mapping_hidden", "activation", "scale", "rescale", "center", "signed_bits", "chunk"]


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the two-sided t interval of the mean; NaN bounds for fewer than 2 values."""
    n = len(values)
    mean = sum(values) / n if n else math.nan
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(1 - (1 - level) / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def _key(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    cols = [c for c in columns if c in frame.columns]
    return frame[cols].map(str).agg(" | ".join, axis=1) if cols else pd.Series("", index=frame.index)  # NaN -> "nan"


def _qt_group(frame: pd.DataFrame) -> pd.Series:
    """What makes runs one QT group (seeds aside): its context and its circuit and mapping."""
    return _key(frame, CONTEXT) + " || " + _key(frame, QT_FACTORS)


def paired_differences(df: pd.DataFrame, metric: str = "test_acc", level: float = 0.95) -> pd.DataFrame:
    """One row per (QT group, control) with at least one seed-matched pair: n, means, mean difference, interval."""
    done = df[(df.status == "completed") & df[metric].notna() & df.seed.notna()].copy()
    done["_grp"] = _qt_group(done)
    done["_train"] = _key(done, TRAINING)
    rows = []
    for grp, qt in done[done.variant == "qt"].groupby("_grp", sort=True):
        for control in CONTROLS:
            same = done["_train"] == qt["_train"].iloc[0] if control == "classical" else done["_grp"] == grp
            other = done[same & (done.variant == control)]
            pairs = qt[["seed", metric]].merge(other[["seed", metric]], on="seed", suffixes=("_qt", "_control"))
            pairs = pairs.drop_duplicates("seed")
            if pairs.empty:
                continue
            diffs = list(pairs[f"{metric}_qt"] - pairs[f"{metric}_control"])
            mean, low, high = t_interval(diffs, level)
            first = qt.iloc[0]
            rows.append({
                **{c: first.get(c) for c in CONTEXT + QT_FACTORS if c in qt.columns},
                "control": control,
                "n_pairs": len(pairs),
                "qt_mean": pairs[f"{metric}_qt"].mean(),
                "control_mean": pairs[f"{metric}_control"].mean(),
                "diff_mean": mean,
                "ci_low": low,
                "ci_high": high,
            })
    return pd.DataFrame(rows)


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean(a) - mean(b), low, high): Welch's two-sided t interval, unequal variances; NaN bounds below 2 values each."""
    na, nb = len(a), len(b)
    diff = sum(a) / na - sum(b) / nb
    if na < 2 or nb < 2:
        return diff, math.nan, math.nan
    va, vb = (pd.Series(a).var() / na), (pd.Series(b).var() / nb)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    half = stats.t.ppf(1 - (1 - level) / 2, dof) * se
    return diff, diff - half, diff + half


def other_target_differences(df: pd.DataFrame, metric: str = "test_acc", level: float = 0.95) -> pd.DataFrame:
    """Each QT group against each other network trained directly on its dataset: n, means, difference, Welch interval."""
    done = df[(df.status == "completed") & df[metric].notna()].copy()
    done["_grp"] = _qt_group(done)
    done["_direct"] = _key(done, TRAINING)
    rows = []
    for _, qt in done[done.variant == "qt"].groupby("_grp", sort=True):
        first = qt.iloc[0]
        direct = done[(done.variant == "classical") & (done.dataset == first.dataset) & (done.model != first.model)]
        for _, other in direct.groupby("_direct", sort=True):
            mean, low, high = welch_interval(list(qt[metric]), list(other[metric]), level)
            rows.append({
                **{c: first.get(c) for c in CONTEXT + QT_FACTORS if c in qt.columns},
                "other_model": other.model.iloc[0], "other_experiment": other.experiment.iloc[0],
                "n_qt": len(qt), "n_other": len(other), "qt_mean": qt[metric].mean(), "other_mean": other[metric].mean(),
                "diff_mean": mean, "ci_low": low, "ci_high": high,
            })  # fmt: skip
    return pd.DataFrame(rows)
