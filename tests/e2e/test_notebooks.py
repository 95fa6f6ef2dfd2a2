"""The analysis notebooks execute headless against a sweep the test produces."""

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, TINY


nbformat = pytest.importorskip("nbformat")

nbclient = pytest.importorskip("nbclient")


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("nb")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for circuit in ("ry_cnot", "u3"):
        cmd = [sys.executable, "-m", "qt.train", "-m", f"hydra.sweep.dir={root / circuit}", *TINY,
               f"circuit={circuit}", "n_blocks=1,2", "seed=0,1"]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def execute(name: str, env: dict) -> str:
    nb = nbformat.read(ROOT / "analysis" / name, as_version=4)
    old = dict(os.environ)
    os.environ.update(env)
    try:
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", out
            texts.append(str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", "")))
            if "image/png" in out.get("data", {}):
                texts.append("<png>")
    return "\n".join(texts)


def test_ablation_report_notebook(sweeps):
    text = execute("ablation_report.ipynb", {"QT_SWEEP": str(sweeps / "ry_cnot") + ":" + str(sweeps / "u3")})
    assert "8 runs" in text and "completed" in text
    assert "±" in text  # the main table: mean ± std over seeds
    assert text.count("<png>") >= 2


def test_compare_sweeps_notebook(sweeps):
    text = execute("compare_sweeps.ipynb", {
        "QT_SWEEP_A": str(sweeps / "ry_cnot"), "QT_SWEEP_B": str(sweeps / "u3"),
        "QT_LABEL_A": "ry_cnot", "QT_LABEL_B": "u3",
    })
    assert "B - A (pp)" in text and "ry_cnot" in text and "u3" in text and "<png>" in text
