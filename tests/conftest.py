import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

# Tiny but real: the authors' 13-qubit target, few blocks, few steps, the embedded dataset.
TINY = [
    "n_blocks=2",
    "trainer.epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.batch_size=32",
    "trainer.threads=1",
]


def run_train(run_dir: Path, *overrides: str, timeout: float = 240, env_extra: dict | None = None):
    """Run ``python -m qt.train`` as a user would; returns the CompletedProcess."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env_extra or {})}
    cmd = [sys.executable, "-m", "qt.train", f"hydra.run.dir={run_dir}", *overrides]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def kill_when(run_dir: Path, marker: str, *overrides: str, timeout: float = 180) -> None:
    """Start ``python -m qt.train`` in ``run_dir`` and SIGKILL it once ``run_dir/marker`` exists (a real kill mid-run)."""
    import signal
    import time

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "qt.train", f"hydra.run.dir={run_dir}", *overrides], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    t0 = time.time()
    while not (run_dir / marker).exists():
        assert proc.poll() is None, f"the run ended before {marker} was written"
        assert time.time() - t0 < timeout
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"full MNIST not available at {SHARED_DATA} (the project's ../shared/data); nothing to test against")
    return SHARED_DATA
