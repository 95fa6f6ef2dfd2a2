"""A distributed circuit with an MPS mapping learns, through the CLI."""

from tests.helpers import TINY, run_train, summary


def test_a_distributed_circuit_with_an_mps_mapping_learns(tmp_path):
    """The CLI trains circuit.partitions=2 with mapping=mps; its summary shows it learned and counts the MPS."""
    proc = run_train(tmp_path / "run", *TINY[:1], "trainer.epochs=2", "trainer.limit_train_batches=40", "trainer.threads=1",
                     "circuit.partitions=2", "mapping=mps", "mapping.bond_dim=3")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = summary(tmp_path / "run")
    assert s["params"]["mapping_params"] == 14 * 2 * 9 + 9 + 8  # MPS over 13 bits + x, chi = 3, and the 8 tensor gains
    assert s["test_acc"] > 0.3  # chance is 0.1
