"""From real multirun dirs to the report: aggregation into one DataFrame, then Markdown + HTML, and the report CLI."""

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from qt.analysis.runs import load_runs
from qt.analysis.report import build_report
from tests.helpers import ROOT, TINY


def tiny_multirun(sweep_dir, *overrides):
    """A multirun at the TINY settings; it must succeed (its trials may fail, as the bad sweep's do)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "qt.train", "-m", f"hydra.sweep.dir={sweep_dir}", *TINY, *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablation")
    # the standard ablation with its controls, narrowed to a tiny grid, and its classical baseline
    tiny_multirun(root / "qt", "experiment=ablation", "circuit=ry_cnot,u3", "n_blocks=1", "mapping=medium", "seed=0,1",
                  "variant=qt,frozen,classical_generator,no_entanglement,hashed")
    tiny_multirun(root / "baseline", "experiment=ablation_baseline", "seed=0")
    tiny_multirun(root / "bad", "n_blocks=0")
    tiny_multirun(root / "study", "+sweep=lr_blocks_clip", "hydra.sweeper.n_trials=3", f"hydra.sweeper.storage=sqlite:///{root}/study/study.db")
    # a half-written run dir and one from a newer schema: reported, never crashed on
    (root / "half" / ".hydra").mkdir(parents=True)
    shutil.copy(root / "qt" / "0" / ".hydra" / "config.yaml", root / "half" / ".hydra" / "config.yaml")
    newer = root / "newer"
    shutil.copytree(root / "qt" / "0", newer)
    s = json.loads((newer / "summary.json").read_text())
    s["schema_version"] = 99
    (newer / "summary.json").write_text(json.dumps(s))
    return root


def test_load_runs_one_row_per_run(runs):
    df = load_runs(runs)
    assert len(df) == 20 + 1 + 1 + 2 + 3
    status = dict(zip(df.run_dir.map(lambda p: p[len(str(runs)) + 1 :]), df.status))
    assert status["bad/0"] == "failed" and status["half"] == "incomplete" and status["newer"] == "unsupported"
    done = df[df.status == "completed"]
    assert len(done) == 24
    done = done[~done.run_dir.str.contains("/study/")]
    assert sorted(done.variant.value_counts().items()) == [
        ("classical", 1), ("classical_generator", 4), ("frozen", 4), ("hashed", 4), ("no_entanglement", 4), ("qt", 4)
    ]  # fmt: skip
    qt = done[done.variant == "qt"].sort_values(["circuit", "seed"])
    assert list(qt.circuit) == ["ry_cnot", "ry_cnot", "u3", "u3"] and list(qt.seed) == [0, 1, 0, 1]
    assert set(qt.dataset) == {"mnist_5k"} and set(qt.model) == {"cnn_qtt"} and set(qt.n_blocks) == {1}
    assert set(qt.trainable_params) == {13 + 749, 78 + 749}  # medium mapping: 741 + 8 per-tensor gains
    gen = done[done.variant == "classical_generator"]
    assert set(gen.generator) == {"classical"} and set(gen.trainable_params) == {13 + 749, 78 + 749}  # equal budget
    assert set(done[done.variant == "frozen"].trainable_params) == {749}
    for equal in ("hashed", "no_entanglement"):  # the equal-budget controls train exactly QT's count
        assert set(done[done.variant == equal].trainable_params) == {13 + 749, 78 + 749}
    assert done.groupby("variant").group_key.nunique().to_dict()["qt"] == 2  # one QT group per circuit
    row = qt.iloc[0]
    assert row.gen_gap == pytest.approx(row.test_loss - row.train_loss)
    assert row.mapping == "medium" and row.optimizer == "adam" and row.lr == 1e-2 and row.clip_norm == 10
    assert "n_blocks must be" in df[df.status == "failed"].reason.iloc[0]


def test_report_sections_and_determinism(runs, tmp_path):
    inputs = [runs / name for name in ("qt", "baseline", "bad", "half", "newer")]
    a = build_report(inputs, tmp_path / "a", title="ablation")
    b = build_report(inputs, tmp_path / "b", title="ablation")
    md = a.read_text()
    assert md == b.read_text()
    assert (tmp_path / "a" / "report.html").read_bytes() == (tmp_path / "b" / "report.html").read_bytes()
    header = next(line for line in md.splitlines() if line.startswith("| dataset |"))
    assert "| circuit |" in header and "| seed |" not in header  # the varied factor is a column, seeds are replicates
    assert "| generator |" not in header and "| frozen |" not in header  # shown through variant
    shared = next(line for line in md.splitlines() if line.startswith("Shared by every run: "))
    assert "batch_size 32" in shared and "epochs 1" in shared and "| batch_size |" not in header  # constants once
    results = md.split("## Results")[1].split("\n## ")[0]
    table = [line for line in results.splitlines() if line.startswith("| mnist_5k")]
    assert len(table) == 11  # 2 circuits x (qt and 4 controls) + the classical baseline
    assert any("classical (baseline)" in line for line in table)
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    variant = header.strip("|").split("|").index(" variant ")
    assert sorted(c[variant] for c in cells) == [
        "classical", *["classical_generator"] * 2, *["frozen"] * 2, *["hashed"] * 2, *["no_entanglement"] * 2, *["qt"] * 2
    ]  # fmt: skip
    for c in cells:  # mean ± std over the 2 seeds for every QT and control row
        if c[variant] != "classical":
            assert "±" in c[header.strip("|").split("|").index(" test acc % ")] and "2" in c
    assert "failed" in md and "n_blocks must be" in md and "incomplete" in md and "unsupported" in md
    assert "## QT against its controls" in md and "## QT against equal-budget methods" in md
    comp = pd.read_csv(tmp_path / "a" / "comparisons.csv")
    paired = comp[comp.comparison == "paired t"]
    assert sorted(paired.control.value_counts().items()) == [
        ("classical", 2), ("classical_generator", 2), ("frozen", 2), ("hashed", 2), ("no_entanglement", 2)
    ]  # fmt: skip
    assert set(paired[paired.control != "classical"].n_qt) == {2} and set(paired.circuit) == {"ry_cnot", "u3"}
    assert set(paired[paired.control == "classical"].n_qt) == {1}  # the baseline ran seed 0 only
    row = paired.iloc[0]
    assert row.diff_mean == pytest.approx(row.qt_mean - row.control_mean)  # paired over the same seeds
    html = (tmp_path / "a" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2 and 'src="http' not in html


def test_report_with_an_optuna_study(runs, tmp_path):
    md = build_report([runs / "study" / "study.db"], tmp_path / "s").read_text()
    assert "optimization history" in md and "parameter importances" in md
    assert md.count("| mnist_5k") == 3  # the study's trials, read through the storage


def test_report_cli(runs, tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "qt.report", str(runs / "qt"), "--out", str(tmp_path / "r")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "r" / "report.md").exists() and (tmp_path / "r" / "runs.csv").exists()
    missing = subprocess.run([sys.executable, "-m", "qt.report", str(tmp_path / "nope"), "--out", str(tmp_path / "x")],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no such input")


def test_load_runs_counts_a_run_once_whatever_names_it(runs, monkeypatch):
    """A sweep dir with its own study file, in either order, relative or absolute: one row per run."""
    study = runs / "study"
    expected = len(load_runs(study))
    assert expected == 3
    assert len(load_runs(study, study / "study.db")) == expected
    assert len(load_runs(study / "study.db", study)) == expected
    monkeypatch.chdir(runs)
    assert len(load_runs("study", study, str(study / "study.db"))) == expected
    assert load_runs(study / "study.db", "study").trial.notna().all()  # the study's row (with its trial) is the one kept


def test_report_cli_refuses_a_malformed_against(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "qt.report", str(tmp_path), "--out", str(tmp_path / "r"), "--against", "partitions"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --against partitions: give COLUMN=VALUE, e.g. --against partitions=1"
