"""The frontier study's tools as a user runs them: a stage of ``python -m qt.tools.frontier`` (real multiruns,
resumed, collected, reported) and ``python -m qt.tools.rank`` on a trained run."""

import json
import os
import shutil
import subprocess
import sys

import pandas as pd

from tests.helpers import ROOT, TINY, run_train

QUICK = ["dataset=mnist_5k", "trainer.epochs=1", "trainer.limit_train_batches=2", "trainer.batch_size=32", "trainer.threads=1"]


def tool(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_a_stage_runs_resumes_collects_and_reports(tmp_path):
    out, results = tmp_path / "out", tmp_path / "results"
    args = ["qt.tools.frontier", "run", "anchors", "--out", str(out), "--data", str(tmp_path), "--results", str(results),
            "--launcher", "basic", "--extra", *QUICK]  # fmt: skip
    first = tool(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    for model in ("697", "997"):
        for seed in range(5):
            kept = results / "anchors" / model / str(seed)
            assert {p.name for p in kept.iterdir()} == {"summary.json", "metrics.csv", "test_predictions.npz", ".hydra"}
            assert json.loads((kept / "summary.json").read_text())["status"] == "completed"
        assert not (results / "anchors" / model / "0" / "checkpoints").exists()
    again = tool(*args)  # every run collected: both jobs skipped, nothing run
    said = again.stdout + again.stderr
    assert again.returncode == 0 and said.count("skipped") == 2 and "nothing to do" not in said
    shutil.rmtree(results / "anchors" / "997" / "4")  # a collected run lost: its job resumes, retrains nothing
    third = tool(*args)
    said = third.stdout + third.stderr
    assert third.returncode == 0 and said.count("nothing to do") == 5 and "anchors/997: exit 0; 6 files collected" in said
    report = tool("qt.report", str(results), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr[-2000:]
    points = pd.read_csv(tmp_path / "report" / "frontier.csv")
    assert sorted(points.method) == ["direct compact_697", "direct compact_997"] and set(points.n) == {5}
    assert sorted(points.trainable_params) == [697, 997]


def test_the_rank_tool_measures_a_trained_run(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_train(run_dir, *TINY, "variant=no_entanglement")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ranked = tool("qt.tools.rank", str(run_dir))
    assert ranked.returncode == 0, ranked.stderr[-2000:]
    ranks = json.loads((run_dir / "generator_rank.json").read_text())
    assert ranks["init"] == ranks["final"] == 13 and ranks["params"] == 26  # a product state over 13 qubits, 2 blocks
    hashed = tmp_path / "hashed"
    assert run_train(hashed, *TINY, "variant=hashed").returncode == 0
    assert "nothing written" in tool("qt.tools.rank", str(hashed)).stdout and not (hashed / "generator_rank.json").exists()
