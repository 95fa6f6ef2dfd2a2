"""How sure a comparison is: seed-matched paired differences with a t interval, and Welch's interval where nothing pairs.

What belongs together is derived from each run's resolved config, never from a hand-kept list
of columns (:func:`run_keys`):

* a **QT group** is the set of runs whose configs are equal except the seed (and the keys that
  change nothing a run computes: ``qt.experiment.config.RESULT_FREE_KEYS``);
* a **control** belongs to the QT group whose config it equals apart from the keys that make it
  that control (``qt.experiment.controls.CONTROL_KEYS``: ``mode``, ``generator``, ``circuit.freeze``,
  ``circuit.entangle``): frozen circuit, classical generator, fixed vector, no entanglement,
  hashed. A grid over ``optimizer.lr`` is as many QT groups as learning rates, and a control
  pairs only with the one it was trained like;
* the **classical baseline** (the target trained directly) has no circuit or mapping and pairs
  with every QT group trained the same way: equal dataset, model, optimizer, scheduler, loss and
  trainer config, whatever experiment file launched it.

For each QT group and each control, this module reports the number of seed-matched pairs, both
means, and the mean paired difference (QT minus control) with its two-sided t interval:
mean ± t(1 - (1 - level) / 2, n - 1) · s / sqrt(n), s the standard deviation of the n
differences. Two completed runs of one configuration with the same seed are never resolved
silently: :class:`AmbiguousRuns` names them.

Networks trained directly that are no control have no pairs: the **small network at QT's
budget** (``model=cnn_budget`` with ``model.max_params`` equal to the QT group's trainable count,
the same dataset and epochs) and **other targets** on the same dataset get the unpaired
difference of means with Welch's t interval.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from qt.experiment.config import RESULT_FREE_KEYS
from qt.experiment.controls import CONTROL_KEYS, CONTROLS
from qt.results.schema import flatten
from qt.errors import QTError

#: the config sections that make up a run's training, for the classical baseline (no circuit, no mapping)
TRAINING_PARTS = ("dataset", "model", "optimizer", "scheduler", "loss", "trainer")
#: columns that describe a QT group in tables (description only: groups come from the configs)
DESCRIBE = [
    "experiment", "dataset", "model", "target_activation", "circuit", "layout", "n_blocks", "partitions", "shots", "gradient", "depolarizing",
    "depolarizing_2q", "amplitude_damping", "readout", "mapping_net", "mapping_hidden", "bond_dim", "activation", "scale", "rescale", "center", "signed_bits", "chunk", "optimizer", "lr", "weight_decay", "scheduler",
    "loss", "clip_norm", "batch_size", "epochs", "task_algorithm", "task_entropy", "dataset_truncation", "cut_gradient", "trainable_params",
]  # fmt: skip


class AmbiguousRuns(QTError):
    """Two completed runs of one configuration with the same seed: a report will not pick one."""


def _under(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _digest(items: dict) -> str:
    return hashlib.sha1(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_keys(config: dict) -> dict[str, str | None]:
    """``group_key`` (what the run is, seed and control keys aside) and ``training_key`` (its training) of a resolved config."""
    if not config:
        return {"group_key": None, "training_key": None}
    flat = {k: v for k, v in flatten(config).items() if not _under(k, RESULT_FREE_KEYS)}
    return {
        "group_key": _digest({k: v for k, v in flat.items() if not _under(k, CONTROL_KEYS)}),
        "training_key": _digest({k: v for k, v in flat.items() if _under(k, TRAINING_PARTS)}),
    }


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the two-sided t interval of the mean (scipy's one-sample t test); NaN bounds below 2 values."""
    n = len(values)
    mean = sum(values) / n if n else math.nan
    if n < 2:
        return mean, math.nan, math.nan
    if max(values) == min(values):  # no spread: scipy would warn and give NaN
        return mean, mean, mean
    ci = stats.ttest_1samp(values, 0.0).confidence_interval(level)
    return mean, float(ci.low), float(ci.high)


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean(a) - mean(b), low, high): Welch's two-sided t interval (scipy, unequal variances); NaN bounds below 2 values each."""
    na, nb = len(a), len(b)
    diff = sum(a) / na - sum(b) / nb
    if na < 2 or nb < 2:
        return diff, math.nan, math.nan
    if max(a) == min(a) and max(b) == min(b):
        return diff, diff, diff
    with warnings.catch_warnings():  # one constant side (every seed equal): scipy warns, the interval stands
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(level)
    return diff, float(ci.low), float(ci.high)


def seed_image_bootstrap(a: np.ndarray, b: np.ndarray, level: float = 0.95, reps: int = 4000, seed: int = 0) -> tuple[float, float, float, float]:
    """(difference, low, high, p): method a's accuracy minus b's, from per-image correctness over paired seeds.

    ``a`` and ``b``: seeds x test images, 1 where that seed's run classified that image correctly, row s of both
    the same seed. The difference is the mean of ``a - b``. Its uncertainty has two sources, the seeds (training
    randomness) and the test images (a finite sample of the digits the network will meet), and both are paired:
    each bootstrap replicate draws seeds with replacement and, independently, images with replacement, the same
    draw for both methods, and recomputes the difference (a two-way crossed bootstrap; ``scipy.stats.bootstrap``
    resamples one axis only). The interval is the replicates' percentile interval; ``p`` the two-sided
    bootstrap p-value of a zero difference, 2 x the smaller share of replicates on either side of 0 (add-one
    smoothed, at most 1). Deterministic for a given ``seed``.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n_seeds, n_images = d.shape
    rng = np.random.default_rng(seed)
    stats_ = []
    for start in range(0, reps, 500):
        k = min(500, reps - start)
        seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=k)  # k x S
        drawn = rng.integers(0, n_images, size=(k, n_images)) + n_images * np.arange(k)[:, None]
        image_counts = np.bincount(drawn.ravel(), minlength=k * n_images).reshape(k, n_images).astype(np.float64)  # k x N
        per_seed = d @ image_counts.T  # S x k: each seed's difference summed over the drawn images
        stats_.append((seed_counts * per_seed.T).sum(axis=1) / (n_seeds * n_images))
    boot = np.concatenate(stats_)
    alpha = (1 - level) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    below, above = (np.sum(boot <= 0) + 1) / (reps + 1), (np.sum(boot >= 0) + 1) / (reps + 1)
    return float(d.mean()), float(low), float(high), float(min(1.0, 2 * min(below, above)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (statsmodels' ``multipletests``); NaN entries stay NaN and are no member."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return [float(v) for v in out]


def _completed(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    return df[(df.status == "completed") & df[metric].notna()].copy()


def _one_per_seed(runs: pd.DataFrame, what: str) -> pd.DataFrame:
    """``runs`` with at most one run per seed, or :class:`AmbiguousRuns` naming the runs that share one."""
    dup = runs[runs.seed.duplicated(keep=False)]
    if not dup.empty:
        seed = dup.seed.iloc[0]
        dirs = ", ".join(sorted(map(str, dup[dup.seed == seed].run_dir)))
        raise AmbiguousRuns(
            f"{what}: several completed runs share seed {_seed(seed)} ({dirs}); a comparison pairs by seed and will not "
            "pick one: pass only one of them to the report (or give them different seeds)"
        )
    return runs


def _seed(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _describe(group: pd.DataFrame) -> dict:
    first = group.iloc[0]
    return {c: first.get(c) for c in DESCRIBE if c in group.columns}


def qt_groups(df: pd.DataFrame, metric: str = "test_acc") -> list[tuple[str, pd.DataFrame]]:
    """(group key, its completed QT runs, one per seed) for every QT group, in a stable order."""
    done = _completed(df, metric)
    qt = done[(done.variant == "qt") & done.group_key.notna()]
    return [(key, _one_per_seed(g, f"QT group {_label(g)}")) for key, g in sorted(qt.groupby("group_key"), key=lambda kv: _order(kv[1]))]


def _order(g: pd.DataFrame) -> tuple:
    return tuple(str(g.iloc[0].get(c)) for c in DESCRIBE) + (str(g.run_dir.min()),)


def _label(g: pd.DataFrame) -> str:
    first = g.iloc[0]
    parts = [f"{c}={first.get(c)}" for c in ("experiment", "dataset", "variant") if first.get(c) is not None]
    return " ".join(parts) or str(first.run_dir)


def paired_differences(df: pd.DataFrame, metric: str = "test_acc", level: float = 0.95) -> pd.DataFrame:
    """One row per (QT group, control) with at least one seed-matched pair: n, means, mean difference, interval."""
    done = _completed(df, metric)
    done = done[done.seed.notna()]
    rows = []
    for key, qt in qt_groups(df, metric):
        qt = qt[qt.seed.notna()]
        for control in CONTROLS:
            same = done.training_key == qt.training_key.iloc[0] if control == "classical" else done.group_key == key
            other = done[same & (done.variant == control)]
            if other.empty or qt.empty:
                continue
            other = _one_per_seed(other, f"the {control} runs of QT group {_label(qt)}")
            rows += _paired_row(qt, key, other, control, metric, level)
    return pd.DataFrame(rows)


def _paired_row(qt: pd.DataFrame, key: str, other: pd.DataFrame, control: str, metric: str, level: float) -> list[dict]:
    """The QT group minus ``other`` over the seeds both ran: mean and t interval (no row without a pair)."""
    pairs = qt[["seed", metric]].merge(other[["seed", metric]], on="seed", suffixes=("_qt", "_control"))
    if pairs.empty:
        return []
    mean, low, high = t_interval(list(pairs[f"{metric}_qt"] - pairs[f"{metric}_control"]), level)
    return [{
        **_describe(qt), "group_key": key, "comparison": "paired t", "control": control,
        "control_params": other.trainable_params.iloc[0], "n_qt": len(pairs), "n_control": len(pairs),
        "qt_mean": pairs[f"{metric}_qt"].mean(), "control_mean": pairs[f"{metric}_control"].mean(),
        "diff_mean": mean, "ci_low": low, "ci_high": high,
    }]  # fmt: skip


def _welch_rows(qt: pd.DataFrame, key: str, others: pd.DataFrame, control: str, metric: str, level: float) -> list[dict]:
    rows = []
    for _, other in sorted(others.groupby("training_key"), key=lambda kv: str(kv[1].run_dir.min())):
        mean, low, high = welch_interval(list(qt[metric]), list(other[metric]), level)
        rows.append({
            **_describe(qt), "group_key": key, "comparison": "Welch", "control": control,
            "control_model": other.model.iloc[0], "control_experiment": other.experiment.iloc[0],
            "control_params": other.trainable_params.iloc[0], "control_lr": other.lr.iloc[0],
            "n_qt": len(qt), "n_control": len(other), "qt_mean": qt[metric].mean(), "control_mean": other[metric].mean(),
            "diff_mean": mean, "ci_low": low, "ci_high": high,
        })  # fmt: skip
    return rows


def _welch_against(df: pd.DataFrame, metric: str, level: float, control: str, matches) -> pd.DataFrame:
    """Each QT group against the runs trained directly that ``matches(direct runs, the group's first run)`` selects."""
    done = _completed(df, metric)
    direct = done[done.variant == "classical"]
    rows = []
    for key, qt in qt_groups(df, metric):
        rows += _welch_rows(qt, key, direct[matches(direct, qt.iloc[0])], control, metric, level)
    return pd.DataFrame(rows)


def equal_budget_differences(df: pd.DataFrame, metric: str = "test_acc", level: float = 0.95) -> pd.DataFrame:
    """Each QT group against the small networks trained directly at its trainable count (same dataset, epochs): Welch."""
    return _welch_against(df, metric, level, "small network", lambda d, q: d.budget.notna() & (d.dataset == q.dataset)
                          & (d.budget == q.trainable_params) & (d.epochs == q.epochs))  # fmt: skip


def other_target_differences(df: pd.DataFrame, metric: str = "test_acc", level: float = 0.95) -> pd.DataFrame:
    """Each QT group against each other target network trained directly on its dataset (no budget): Welch."""
    return _welch_against(df, metric, level, "other network", lambda d, q: d.budget.isna() & (d.dataset == q.dataset) & (d.model != q.model))


def _same_value(column: pd.Series, value: str) -> pd.Series:
    """Cells of ``column`` equal to ``value`` as typed on a command line (``1`` matches 1 and 1.0, ``null`` a missing cell)."""
    if value in ("null", "None"):
        return column.isna()
    return column.map(lambda v: v is not None and not (isinstance(v, float) and math.isnan(v)) and _seed(v) == value)


def reference_differences(df: pd.DataFrame, against: dict[str, str], metric: str = "test_acc", level: float = 0.95) -> pd.DataFrame:
    """Each QT group against its reference configuration, paired by seed: the ablation comparisons (``qt.report --against``).

    ``against`` names the reference by report columns (``{"partitions": "1"}``, ``{"mapping_net": "mlp"}``). A QT
    group that is not the reference is compared with the one QT group of the same experiment, dataset and training
    (``training_key``: data, target, optimizer, schedule, loss, trainer) that matches every ``against`` value; the
    difference is the group minus the reference over the seeds both ran, with a t interval. Two candidate references
    is an error naming them (pass fewer runs, or a narrower ``against``).
    """
    unknown = [c for c in against if c not in df.columns]
    if unknown:
        raise QTError(f"--against {unknown[0]}=...: no such report column; use one of {', '.join(c for c in DESCRIBE if c in df.columns)} or mapping_net")
    done = _completed(df, metric)
    groups = qt_groups(df, metric)
    rows = []
    for key, qt in groups:
        first = qt.iloc[0]
        if all(bool(_same_value(qt[c].iloc[:1], v).iloc[0]) for c, v in against.items()):
            continue  # a reference itself
        same = (done.variant == "qt") & (done.training_key == first.training_key) & (done.dataset == first.dataset)
        if "experiment" in done.columns:
            same &= done.experiment.map(str) == str(first.get("experiment"))
        for c, v in against.items():
            same &= _same_value(done[c], v)
        refs = done[same]
        if refs.empty:
            continue
        if refs.group_key.nunique() > 1:
            names = "; ".join(sorted(str(g.run_dir.min()) for _, g in refs.groupby("group_key")))
            raise AmbiguousRuns(f"QT group {_label(qt)} has several reference groups for --against ({names}): pass fewer runs or name the reference by more columns")
        ref = _one_per_seed(refs, f"the reference runs of QT group {_label(qt)}")
        rows += _paired_row(qt, key, ref, "reference " + ", ".join(f"{c}={v}" for c, v in against.items()), metric, level)
    return pd.DataFrame(rows)


def comparisons(df: pd.DataFrame, metric: str = "test_acc", level: float = 0.95, against: dict[str, str] | None = None) -> pd.DataFrame:
    """Every comparison of the report, one row per QT group x comparison (``comparisons.csv``)."""
    frames = [f(df, metric, level) for f in (paired_differences, equal_budget_differences, other_target_differences)]
    if against:
        frames.append(reference_differences(df, against, metric, level))
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
