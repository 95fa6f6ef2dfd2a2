"""The CIFAR-10 path trains the authors' target from files in torchvision's layout."""

from tests.helpers import fake_cifar, run_train, summary


def test_the_cifar_path_trains_the_authors_target_from_torchvision_files(tmp_path):
    """dataset=cifar10 model=cnn_cifar as a user with the data runs it: 285,226 weights, chunked to 11 qubits."""
    fake_cifar(tmp_path / "data", per_batch=20)
    run_dir = tmp_path / "run"
    proc = run_train(
        run_dir, "dataset=cifar10", "model=cnn_cifar", f"paths.data_dir={tmp_path / 'data'}", "mapping.chunk=256",
        "n_blocks=2", "trainer.epochs=1", "trainer.batch_size=16", "trainer.threads=1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = summary(run_dir)
    assert done["status"] == "completed" and done["data_sizes"] == {"train": 80, "val": 20, "test": 20}
    assert (done["params"]["target_weights"], done["params"]["n_qubits"]) == (285226, 11)
