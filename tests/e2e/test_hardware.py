"""Hardware-faithful training through the CLI: estimated gradients, noise, and a killed SPSA run resumed."""

import pytest

from tests.helpers import TINY, kill_when, run_train, summary


@pytest.mark.parametrize("gradient", ["parameter_shift", "spsa"])
@pytest.mark.parametrize("shots", [1000, None])
def test_the_cli_trains_with_an_estimated_gradient_and_counts_the_qpu_cost(tmp_path, gradient, shots):
    """A real run learns (50 steps), and the summary has what a processor would have run."""
    args = [*TINY[:1], "trainer.epochs=1", "trainer.limit_train_batches=60", "trainer.batch_size=64", "trainer.threads=1",
            f"circuit.gradient={gradient}", f"circuit.shots={shots or 'null'}"]  # fmt: skip
    proc = run_train(tmp_path / "run", *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = summary(tmp_path / "run")
    per_step = 1 + 2 * 26 if gradient == "parameter_shift" else 3  # 13 qubits x 2 blocks of RY
    assert s["qpu"]["executions_per_step"] == per_step
    assert s["qpu"]["steps"] == s["steps"] == 50  # the epoch: 3,200 training images in batches of 64
    assert s["qpu"]["circuit_executions"] == 50 * per_step
    assert s["qpu"]["shots"] == (50 * per_step * shots if shots else None)
    assert s["test_acc"] > 0.3  # chance is 0.1


def test_the_cli_trains_under_noise_on_the_fused_backend(tmp_path):
    """Depolarizing + damping + readout by trajectories at 13 qubits: it trains and its qpu record names the noise."""
    args = [*TINY[:1], "trainer.epochs=1", "trainer.limit_train_batches=60", "trainer.batch_size=64", "trainer.threads=1",
            "circuit.noise.depolarizing=0.001", "circuit.noise.amplitude_damping=0.001", "circuit.noise.readout=0.01",
            "circuit.noise.trajectories=2"]  # fmt: skip
    proc = run_train(tmp_path / "run", *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = summary(tmp_path / "run")
    assert s["qpu"]["gradient"] == "adjoint" and s["qpu"]["counted_as"] == "parameter_shift"
    assert s["qpu"]["noise"]["readout"] == 0.01 and s["qpu"]["shots"] is None
    assert s["test_acc"] > 0.3  # chance is 0.1


def test_a_killed_spsa_run_with_shots_and_noise_resumes_to_the_same_result(tmp_path):
    """SPSA's step count, the shot draws and the noise trajectories all continue where the checkpoint left them."""
    import csv

    args = [*TINY, "trainer.epochs=2", "trainer.limit_train_batches=12", "trainer.checkpoint_every=3", "circuit.gradient=spsa",
            "circuit.shots=500", "circuit.noise.depolarizing=0.01", "circuit.noise.readout=0.02", "circuit.noise.trajectories=2"]  # fmt: skip
    assert run_train(tmp_path / "ref", *args).returncode == 0
    run_dir = tmp_path / "killed"
    kill_when(run_dir, "checkpoints/last.pt", *args)
    assert summary(run_dir)["status"] == "running"
    resumed = run_train(run_dir, *args)
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr[-2000:]
    a, b = summary(tmp_path / "ref"), summary(run_dir)
    assert a["qpu"] == b["qpu"]
    for key in ("test_acc", "test_loss", "train_loss", "val_loss"):
        assert a[key] == b[key], key
    rows = [list(csv.DictReader(open(d / "metrics.csv"))) for d in (tmp_path / "ref", run_dir)]
    assert [r["train_loss"] for r in rows[0]] == [r["train_loss"] for r in rows[1]]
