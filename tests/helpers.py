"""What the tests share: the repository's paths, and running qt as a user does (``python -m qt.train``, single runs and multiruns)."""

import csv
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
#: real run dirs written by earlier qt versions (tests/fixtures/runs/README.md)
FIXTURES = ROOT / "tests" / "fixtures" / "runs"
OLD_RUNS = ("b8d8b52_qt", "b8d8b52_classical", "2cc19cc_qt")
#: the loss of a uniform guess over ten classes
LN10 = math.log(10)

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


def killed_and_resumed(root: Path, *overrides: str) -> tuple[Path, Path]:
    """An uninterrupted run in ``root/ref`` and one SIGKILLed at its first checkpoint then resumed in ``root/killed``
    (both must succeed; the kill must land mid-run); returns the two run dirs."""
    assert run_train(root / "ref", *overrides).returncode == 0
    run_dir = root / "killed"
    kill_when(run_dir, "checkpoints/last.pt", *overrides)
    assert summary(run_dir)["status"] == "running"
    resumed = run_train(run_dir, *overrides)
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr[-2000:]
    return root / "ref", run_dir


def summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


FAST = ["trainer.epochs=1", "trainer.limit_train_batches=3", "trainer.batch_size=32", "trainer.threads=1"]


def multirun(sweep_dir, *overrides, timeout=600):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "qt.train", "-m", f"hydra.sweep.dir={sweep_dir}", *overrides]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def optuna_args(sweep_dir, name="s", *extra):
    return [
        "+sweep=lr_blocks_clip",
        f"hydra.sweeper.study_name={name}",
        f"hydra.sweeper.storage=sqlite:///{sweep_dir}/study.db",
        *FAST,
        *extra,
    ]


def kill_mid_second_job(sweep_dir, *args):
    """Start a multirun and SIGKILL its whole process group once job 0 is done and job 1 is mid-training."""
    kill_once_written(sweep_dir, "1/checkpoints/last.pt", *args)


def kill_once_written(sweep_dir, marker, *args):
    """Start a multirun and SIGKILL its whole process group as soon as ``sweep_dir / marker`` exists."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "qt.train", "-m", f"hydra.sweep.dir={sweep_dir}", *args],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    t0 = time.time()
    while not (sweep_dir / marker).exists():
        assert proc.poll() is None, "the multirun ended before it could be interrupted"
        assert time.time() - t0 < 300
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def load(sweep_dir, name="s"):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir}/study.db")


def trials_csv(sweep_dir):
    return list(csv.DictReader(open(sweep_dir / "trials.csv")))


def fake_cifar(root, per_batch=4):
    """CIFAR-10 in torchvision's layout (``cifar-10-batches-py/``: five training pickles and a test pickle), random pixels."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(per_batch)]}, f)
