"""The report's statistics and pairing rules on hand-built tables: Pareto fronts, paired and Welch intervals, duplicates."""

import pandas as pd
import pytest

from qt.analysis.runs import COLUMNS
from qt.analysis.report import experiments_table, split_factors, varied_factors
from qt.errors import QTError


def test_no_clipping_and_exact_shots_count_as_settings():
    """clip_norm null vs 10 is a varied factor; a classical run's missing circuit is not."""
    base = dict.fromkeys(COLUMNS)
    rows = [
        {**base, "status": "completed", "dataset": "mnist", "model": "cnn_qtt", "mode": "qt", "circuit": "u3", "clip_norm": None},
        {**base, "status": "completed", "dataset": "mnist", "model": "cnn_qtt", "mode": "qt", "circuit": "u3", "clip_norm": 10.0},
        {**base, "status": "completed", "dataset": "mnist", "model": "cnn_qtt", "mode": "classical", "clip_norm": 10.0},
    ]
    factors = varied_factors(pd.DataFrame(rows))
    assert "clip_norm" in factors and "circuit" not in factors and "shots" not in factors
    rows[1]["shots"] = 1000
    assert "shots" in varied_factors(pd.DataFrame(rows))


def test_pareto_front_keeps_exactly_the_undominated_points():
    from qt.results.objectives import pareto_front

    points = [(100, 0.90), (200, 0.95), (150, 0.85), (300, 0.94), (200, 0.95)]
    assert pareto_front(points, ["minimize", "maximize"]) == [0, 1, 4]  # (150, .85) and (300, .94) are beaten
    assert pareto_front(points, ["maximize", "maximize"]) == [1, 3, 4]


def test_paired_differences_and_their_t_interval_against_a_hand_computed_case():
    from qt.analysis.stats import paired_differences, t_interval

    # differences 1, 2, 3: mean 2, s = 1, t(0.975, 2) = 4.302653 -> 2 -/+ 4.302653 / sqrt(3) = [-0.48414, 4.48414]
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    assert (mean, low, high) == pytest.approx((2.0, -0.484138, 4.484138), abs=1e-5)
    rows = [(_cfg(1e-2, s), "qt", s, a) for s, a in ((0, 0.95), (1, 0.96), (2, 0.97))]
    rows += [(_cfg(1e-2, s, circuit__freeze=True), "frozen", s, 0.94) for s in (0, 1, 2)]
    rows += [({**_cfg(1e-2, 0, circuit__freeze=True), "circuit": {"n_blocks": 8, "freeze": True}}, "frozen", 0, 0.5)]  # another group's
    # the baseline pairs on its training (its circuit and mapping are unused), whichever experiment launched it: seeds 1, 2 pair
    rows += [({**_cfg(1e-2, s, mode="classical"), "circuit": {"n_blocks": 3}}, "classical", s, 0.99) for s in (1, 2, 3)]
    rows += [(_cfg(0.1, 0, mode="classical"), "classical", 0, 0.5)]  # trained otherwise: no pair
    diff = paired_differences(_frame(rows)).set_index("control")
    assert diff.loc["frozen", "n_qt"] == 3 and diff.loc["frozen", "diff_mean"] == pytest.approx(0.02)
    assert diff.loc["frozen", "ci_low"] == pytest.approx(0.02 - 4.302653 * 0.01 / 3**0.5, abs=1e-6)
    assert diff.loc["classical", "n_qt"] == 2 and diff.loc["classical", "diff_mean"] == pytest.approx(-0.025)  # (0.96 - 0.99 + 0.97 - 0.99) / 2
    assert set(diff.index) == {"frozen", "classical"}


def test_a_large_qt_target_against_a_small_network_trained_directly_welch_interval():
    from scipy import stats

    from qt.analysis.stats import other_target_differences, welch_interval

    # a = 1, 2, 3 (var 1), b = 0, 0, 0, 4 (var 4): se^2 = 1/3 + 1 = 4/3, dof = (4/3)^2 / ((1/3)^2 / 2 + 1 / 3) = 4.571
    diff, low, high = welch_interval([1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 4.0])
    half = stats.t.ppf(0.975, (4 / 3) ** 2 / ((1 / 3) ** 2 / 2 + 1 / 3)) * (4 / 3) ** 0.5
    assert (diff, low, high) == pytest.approx((1.0, 1.0 - half, 1.0 + half))
    rows = [(_cfg(1e-2, s), "qt", s, a) for s, a in ((0, 0.90), (1, 0.91), (2, 0.92))]
    rows += [(_cfg(1e-2, 0, mode="classical"), "classical", 0, 0.93)]  # the same target: a control, not here
    rows += [(_cfg(1e-2, s, mode="classical", model__channels=[4]), "classical", s, 0.89) for s in range(4)]
    rows += [(_cfg(1e-2, 0, mode="classical", model__channels=[2]), "classical", 0, 0.99)]  # another dataset, below
    df = _frame(rows)
    df.loc[df.index[4:8], "model"] = "small"
    df.loc[df.index[8], ["model", "dataset"]] = ["small", "fmnist"]
    diff = other_target_differences(df)
    assert len(diff) == 1 and diff.control_model[0] == "small" and (diff.n_qt[0], diff.n_control[0]) == (3, 4)
    assert diff.diff_mean[0] == pytest.approx(0.02) and diff.ci_low[0] == pytest.approx(0.02 - stats.t.ppf(0.975, 2) * 0.01 / 3**0.5)


def test_settings_are_stated_once_where_they_belong():
    """Shared settings once; what tells experiments apart in the experiments table; the rest as columns."""
    base = {**dict.fromkeys(COLUMNS), "status": "completed", "dataset": "mnist", "model": "cnn_qtt", "lr": 0.01, "circuit": "ry_cnot"}
    rows = []
    for experiment, n_blocks in (("small", 40), ("large", 64)):
        for variant, generator in (("qt", "quantum"), ("classical_generator", "classical")):
            rows.append({**base, "experiment": experiment, "mode": "qt", "n_blocks": n_blocks, "variant": variant, "generator": generator})
    rows.append({**base, "experiment": "large", "mode": "classical", "variant": "classical", "circuit": None})
    df = pd.DataFrame(rows)
    shared, between, within = split_factors(df)
    assert shared["lr"] == "0.01" and shared["circuit"] == "ry_cnot" and "n_blocks" not in shared
    assert between == ["experiment", "n_blocks"]  # constant within each experiment (a classical run has no n_blocks)
    assert within == ["experiment", "dataset", "model", "mode", "variant"]  # generator is shown through variant
    header, table = experiments_table(df, between)
    assert header == ["experiment", "n_blocks"] and table == [["large", "64"], ["small", "40"]]


def _frame(rows):
    """Runs as the analysis gives them, keys derived from each run's config (qt.analysis.stats.run_keys)."""
    from qt.analysis.stats import run_keys

    out = []
    for cfg, variant, seed, acc in rows:
        out.append({**dict.fromkeys(COLUMNS), **run_keys(cfg), "status": "completed", "dataset": "mnist", "model": "cnn_qtt",
                    "experiment": "grid", "variant": variant, "seed": seed, "test_acc": acc, "run_dir": f"runs/{len(out)}",
                    "lr": cfg["optimizer"]["lr"], "trainable_params": 1369, "epochs": 20})  # fmt: skip
    return pd.DataFrame(out)


def _cfg(lr, seed=0, **control):
    cfg = {"mode": "qt", "generator": "quantum", "seed": seed, "paths": {"data_dir": "/anywhere"},
           "optimizer": {"_target_": "torch.optim.Adam", "lr": lr}, "trainer": {"epochs": 20, "seed": seed, "threads": 1},
           "circuit": {"n_blocks": 64, "freeze": False, "entangle": True}, "dataset": {"name": "mnist"}, "model": {"channels": [8, 12]}}  # fmt: skip
    for dotted, value in control.items():
        section, key = dotted.split("__") if "__" in dotted else (None, dotted)
        (cfg[section] if section else cfg)[key] = value
    return cfg


def test_a_control_pairs_with_the_qt_runs_it_was_trained_like_whatever_the_row_order():
    """The issue's counterexample: a grid lr=1e-2,1e-3 x seeds 0-2 with one frozen control at lr 1e-2."""
    from qt.analysis.stats import paired_differences

    rows = [(_cfg(lr, s), "qt", s, acc) for lr, accs in ((1e-2, (0.97, 0.98, 0.99)), (1e-3, (0.80, 0.82, 0.84))) for s, acc in enumerate(accs)]
    rows += [(_cfg(1e-2, s, circuit__freeze=True), "frozen", s, acc) for s, acc in enumerate((0.95, 0.96, 0.97))]
    for order in (rows, rows[::-1], rows[3:] + rows[:3]):
        diff = paired_differences(_frame(order))
        assert len(diff) == 1  # the lr 1e-3 group has no frozen control
        assert diff.lr[0] == 1e-2 and diff.n_qt[0] == 3 and diff.diff_mean[0] == pytest.approx(0.02)


def test_two_runs_of_one_config_and_seed_are_refused_not_picked(tmp_path):
    from qt.analysis.stats import AmbiguousRuns, paired_differences

    rows = [(_cfg(1e-2, s), "qt", s, 0.97) for s in (0, 1)]
    rows += [(_cfg(1e-2, s, circuit__freeze=True), "frozen", s, acc) for s, acc in ((0, 0.9), (1, 0.9), (1, 0.5))]
    with pytest.raises(AmbiguousRuns, match="share seed 1 .*runs/3, runs/4"):
        paired_differences(_frame(rows))
    rows[1] = (_cfg(1e-2, 0), "qt", 0, 0.96)  # two QT runs with seed 0
    with pytest.raises(AmbiguousRuns, match="share seed 0"):
        paired_differences(_frame(rows))


def test_equal_budget_controls_pair_and_the_small_network_is_compared_by_welch():
    from scipy import stats

    from qt.analysis.stats import comparisons

    rows = [(_cfg(1e-2, s), "qt", s, acc) for s, acc in enumerate((0.97, 0.98, 0.99))]
    rows += [(_cfg(1e-2, s, circuit__entangle=False), "no_entanglement", s, acc) for s, acc in enumerate((0.96, 0.97, 0.98))]
    rows += [(_cfg(1e-2, s, generator="hashed"), "hashed", s, acc) for s, acc in enumerate((0.90, 0.91, 0.92))]
    small = [(_cfg(3e-3, s, mode="classical", model__max_params=1369), "classical", s, acc) for s, acc in enumerate((0.98, 0.98, 0.98, 0.98))]
    other = [(_cfg(3e-3, s, mode="classical", model__max_params=697), "classical", s, 0.5) for s in range(2)]  # another budget
    df = _frame(rows + small + other)
    df.loc[df.index[-6:], "budget"] = [1369] * 4 + [697] * 2
    df.loc[df.index[-6:], "model"] = "cnn_budget"
    comp = comparisons(df).set_index("control")
    assert comp.loc["no_entanglement", "diff_mean"] == pytest.approx(0.01) and comp.loc["hashed", "diff_mean"] == pytest.approx(0.07)
    welch = comp.loc["small network"]
    assert welch.comparison == "Welch" and (welch.n_qt, welch.n_control) == (3, 4) and welch.diff_mean == pytest.approx(0.0)
    half = stats.t.ppf(0.975, 2) * 0.01 / 3**0.5  # the small networks do not vary: Welch's interval is QT's own
    assert welch.ci_high == pytest.approx(half)
    assert "other network" not in comp.index  # a budget network is compared at its budget only


def test_against_pairs_each_configuration_with_its_reference_by_seed():
    """``qt.report --against partitions=1``: each other QT group minus the reference of its experiment and training."""
    from qt.analysis.stats import AmbiguousRuns, comparisons

    rows = [(_cfg(1e-2, s, circuit__partitions=1), "qt", s, acc) for s, acc in enumerate((0.97, 0.98, 0.99))]
    rows += [(_cfg(1e-2, s, circuit__partitions=2), "qt", s, acc) for s, acc in enumerate((0.96, 0.96, 0.98))]
    rows += [(_cfg(3e-3, s, circuit__partitions=4), "qt", s, 0.9) for s in range(3)]  # trained otherwise: no reference
    df = _frame(rows)
    df["partitions"] = [1] * 3 + [2] * 3 + [4] * 3
    comp = comparisons(df, against={"partitions": "1"})
    ref = comp[comp.control == "reference partitions=1"]
    assert len(ref) == 1 and ref.partitions.iloc[0] == 2 and ref.n_qt.iloc[0] == 3
    assert ref.diff_mean.iloc[0] == pytest.approx(-0.01333333) and ref.ci_low.iloc[0] < ref.diff_mean.iloc[0] < ref.ci_high.iloc[0]
    # a second candidate reference (another mapping, same training) is refused, not picked
    extra = _frame(rows + [({**_cfg(1e-2, s, circuit__partitions=1), "mapping": {"hidden": [4]}}, "qt", s, 0.5) for s in range(3)])
    extra["partitions"] = [1] * 3 + [2] * 3 + [4] * 3 + [1] * 3
    with pytest.raises(AmbiguousRuns, match="several reference groups"):
        comparisons(extra, against={"partitions": "1"})
    with pytest.raises(QTError, match="no such report column"):
        comparisons(df, against={"partition": "1"})


def test_report_columns_derive_from_the_constructors():
    """No hand-kept field list: a circuit or mapping setting is a column because its class's constructor takes it, at
    the run's value or the constructor's default; a setting a class gains becomes a column with no other change."""
    from dataclasses import fields

    from qt.analysis.runs import COLUMNS, settings_columns
    from qt.core.checks import constructor_defaults
    from qt.core.mapping import MLPMapping
    from qt.core.quantum import QuantumCircuit
    from qt.core.quantum.noise import NoiseModel

    row = settings_columns("circuit", {"n_blocks": 8, "rotation": "U3", "noise": {"readout": 0.1}}, QuantumCircuit)
    assert (row["n_blocks"], row["rotation"], row["entangler"], row["frozen"], row["readout"], row["trajectories"]) == (8, "U3", "CNOT", False, 0.1, 8)
    settings = [k for k in constructor_defaults(QuantumCircuit) if k not in QuantumCircuit.OWN_ARGUMENTS]
    expected = {"freeze": ["frozen"], "noise": [f.name for f in fields(NoiseModel)], "spsa": ["perturbation", "decay", "resamplings"]}
    assert list(row) == [c for k in settings for c in expected.get(k, [k])]
    assert set(row) <= set(COLUMNS)

    class Wider(MLPMapping):
        def __init__(self, n_qubits: int, n_weights: int, dropout: float = 0.25, **common):
            super().__init__(n_qubits, n_weights, **common)

    mapping = settings_columns("mapping", {"hidden": [7, 7]}, Wider)
    assert mapping["dropout"] == 0.25 and mapping["mapping_hidden"] == "[7, 7]" and mapping["scale"] == "init"
