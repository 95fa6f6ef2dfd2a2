"""task=sequence as a user runs it: the CLI trains QT, its controls and the baseline, a sweep optimises the task's
objective, the report reads the runs, and a killed run resumes to the same result."""

import csv
import json

import pytest

from qt.analysis.report import build_report
from tests.helpers import killed_and_resumed, multirun, summary

pytestmark = pytest.mark.e2e

#: the real series (statsmodels' sunspots, offline), a few short epochs
SEQ = ["experiment=sunspots_lstm", "n_blocks=2", "trainer.epochs=3", "trainer.threads=1"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sequence")
    proc = multirun(root / "grid", *SEQ, "variant=qt,classical,frozen,no_entanglement,hashed", "seed=0,1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "grid"


def test_qt_learns_the_series_and_writes_the_tasks_results(sweep):
    assert sorted(summary(d)["status"] for d in sweep.iterdir() if (d / "summary.json").exists()) == ["completed"] * 10
    qt = summary(sweep / "0")  # variant=qt, seed 0
    assert qt["status"] == "completed" and qt["mode"] == "qt" and qt["params"]["target_weights"] == 31051
    assert qt["test_acc"] is None and qt["best_val_mse"] is not None and qt["test_mse"] > 0 and qt["test_mae"] > 0
    assert qt["train_mse"] < 0.5 * qt["init"]["first_step_loss"]  # it learns: the training error halves in 3 short epochs
    rows = list(csv.DictReader(open(sweep / "0" / "metrics.csv")))
    assert len(rows) == 3 and rows[0]["val_acc"] == "" and float(rows[-1]["val_mse"]) > 0
    assert min(float(r["val_mse"]) for r in rows) == pytest.approx(qt["best_val_mse"], rel=1e-5)  # the kept epoch's
    assert not (sweep / "0" / "test_predictions.npz").exists()  # classes only


def test_the_report_compares_qt_with_its_controls_on_the_tasks_metric(sweep, tmp_path):
    text = build_report([sweep], tmp_path / "report").read_text()
    assert "## Results: task=sequence" in text and "test MSE" in text and "test acc %" not in text
    table = text.split("## QT against its controls and the networks trained directly: task=sequence")[1].split("##")[0]
    for control in ("classical", "frozen", "no_entanglement", "hashed"):
        assert f"| {control} (" in table
    assert "2 / 2" in table and "paired t" in table


def test_a_sweep_minimises_the_tasks_objective(tmp_path):
    d = tmp_path / "study"
    proc = multirun(d, *SEQ, "+sweep=lr_blocks_clip", "objective=best_val_mse", "hydra.sweeper.n_trials=3",
                    f"hydra.sweeper.storage=sqlite:///{d}/study.db", "hydra/sweeper/pruner=none")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = json.loads((d / "sweep_summary.json").read_text())
    values = [summary(d / str(i))["best_val_mse"] for i in range(3)]
    assert best["n_trials"] == 3 and best["best_value"] == pytest.approx(min(values))
    refused = multirun(tmp_path / "refused", *SEQ, "+sweep=lr_blocks_clip", "hydra.sweeper.n_trials=1")
    assert "objective best_val_acc is not measured by task=sequence: use objective=best_val_mse" in refused.stderr


def test_a_killed_sequence_run_resumes_to_the_same_result(tmp_path):
    args = [*SEQ, "trainer.epochs=2", "trainer.batch_size=8", "trainer.checkpoint_every=5", "model.dropout=0.2"]
    ref, run_dir = killed_and_resumed(tmp_path, *args)
    a, b = summary(ref), summary(run_dir)
    for key in ("best_val_mse", "test_mse", "test_mae", "train_mse", "val_loss", "steps"):
        assert a[key] == b[key], key


# -- task=rl ------------------------------------------------------------------------------------------------------
RL = ["experiment=qtrl_cartpole", "trainer.threads=1", "task.eval_episodes=3", "task.test_episodes=5"]


def test_qtrl_learns_cartpole_and_the_report_reads_returns(tmp_path):
    d = tmp_path / "grid"
    proc = multirun(d, *RL, "trainer.epochs=10", "variant=qt,classical", "seed=0,1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [summary(d / str(i)) for i in range(4)]
    assert [r["status"] for r in runs] == ["completed"] * 4 and [r["episodes"] for r in runs] == [500] * 4
    for qt in runs[:2]:  # variant=qt, seeds 0 and 1: 651 trainable parameters learn to balance (a random policy: ~20)
        assert qt["params"]["trainable_params"] == 651 and qt["best_val_return"] >= 100, qt["best_val_return"]
    rows = list(csv.DictReader(open(d / "0" / "metrics.csv")))
    assert len(rows) == 10 and float(rows[-1]["train_return"]) > 1.5 * float(rows[0]["train_return"])
    text = build_report([d], tmp_path / "report").read_text()
    assert "## Results: task=rl" in text and "| classical (" in text


def test_a_killed_actor_critic_run_resumes_to_the_same_episodes(tmp_path):
    """The episodes are functions of (seed, index), and the critic and the returns so far ride in last.pt."""
    args = [*RL, "task.algorithm=a2c", "trainer.epochs=2", "task.episodes_per_epoch=30", "trainer.checkpoint_every=7"]
    ref, run_dir = killed_and_resumed(tmp_path, *args)
    a, b = summary(ref), summary(run_dir)
    assert a["critic_params"] == 769 and a["episodes"] == b["episodes"] == 60
    for key in ("best_val_return", "test_return", "test_return_sampled", "train_return", "steps"):
        assert a[key] == b[key], key
    rows = [list(csv.DictReader(open(p / "metrics.csv"))) for p in (ref, run_dir)]
    assert [r["train_return"] for r in rows[0]] == [r["train_return"] for r in rows[1]]
