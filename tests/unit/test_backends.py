"""The simulator registry (qt.core.quantum.backends) and the one gate encoding every backend compiles from (Ansatz.ops)."""

import re
from pathlib import Path

import pytest
import torch

from qt.core.quantum import QuantumCircuit, backends, build_ansatz
from qt.core.quantum.ansatz import GATES
from qt.core.quantum.backends import REGISTRY, Backend, Options, check_device, resolve, simulator
from qt.core.quantum.backends.torch_statevector import TorchStatevector
from qt.core.quantum.noise import NoiseModel
from qt.errors import ConfigError
from qt.experiment.memory import circuit_bytes

ROOT = Path(__file__).resolve().parents[2]
ANSATZE = [("RY", "CNOT", "chain"), ("U3", "CU3", "ring")]


def test_every_op_addresses_its_angles_in_the_tensors_and_the_flat_vector():
    for rotation, entangler, layout in [*ANSATZE, ("RY", "CU3", "ring")]:
        for entangle in (True, False):
            a = build_ansatz(rotation, entangler, layout, 4, 3, entangle=entangle)
            angles = [torch.randn(s) for s in a.angle_shapes()]
            flat = torch.cat([t.reshape(-1) for t in angles])
            ops = a.ops()
            assert len(ops) == a.n_blocks * sum(len(layer.wires) for layer in a.block)
            assert sum(op.kind.params for op in ops) == a.n_params == flat.numel()
            seen = set()
            for op in ops:
                assert len(op.wires) == GATES[op.gate].wires
                if op.kind.params:
                    assert torch.equal(flat[op.offset : op.offset + op.kind.params], op.angles_in(angles))
                    seen.update(range(op.offset, op.offset + op.kind.params))
                else:
                    assert op.angles_in(angles) is None
            assert seen == set(range(flat.numel()))  # every angle belongs to exactly one gate
            assert [op.block for op in ops] == sorted(op.block for op in ops)  # program order, block by block
            assert a.ops(blocks=1) == [op for op in ops if op.block == 0]


def test_gate_table_says_which_ansatz_stays_real():
    assert build_ansatz("RY", "CNOT", "chain", 3, 1).is_real
    assert not build_ansatz("RY", "CU3", "chain", 3, 1).is_real
    assert not build_ansatz("U3", "CNOT", "chain", 3, 1).is_real


def test_the_yaml_options_name_exactly_the_registered_backends():
    for path in sorted((ROOT / "conf" / "circuit").glob("*.yaml")):
        line = next(l for l in path.read_text().splitlines() if l.startswith("backend:"))
        listed = [part.split()[0] for part in line.split("#", 1)[1].split("|")]
        assert tuple(listed) == backends.names(), path.name


def test_auto_means_the_backend_registered_for_the_device():
    assert resolve("auto", "cpu") == "fused" and resolve("auto", torch.device("cuda")) == "torch"
    assert resolve("torch", "cuda") == "torch"
    with pytest.raises(ConfigError, match=r"unknown circuit backend 'gpu': use circuit.backend=auto, fused, torch"):
        resolve("gpu", "cpu")
    with pytest.raises(ConfigError, match="unknown circuit backend 'density'"):  # reached through noise.method only
        backends.get("density")


def test_a_backend_on_a_device_it_does_not_run_on_is_refused_before_anything_is_built():
    check_device("torch", "cuda")
    check_device("auto", "cuda")
    with pytest.raises(ConfigError, match=r"circuit.backend=fused runs on cpu, not cuda: use circuit.backend=auto or torch"):
        check_device("fused", "cuda")
    circuit = {"_target_": "qt.core.quantum.QuantumCircuit", "n_blocks": 2, "backend": "lightning.qubit"}
    with pytest.raises(ConfigError, match="lightning.qubit runs on cpu, not cuda"):
        circuit_bytes(circuit, 5, 2, torch.device("cuda"))  # the memory guard's step, before the circuit exists


def test_noise_goes_to_the_backend_that_simulates_its_method():
    density = NoiseModel(depolarizing=0.1, method="density")
    traj = NoiseModel(depolarizing=0.1, method="trajectories")
    assert backends.choose("torch", 4, density).name == "density"  # the density backend, whatever was asked
    assert backends.choose("auto", 4, traj).name == "fused"
    assert backends.choose("auto", 4, NoiseModel(readout=0.1)) is None  # readout only: auto stays per device
    with pytest.raises(ConfigError, match=r"circuit.noise by trajectories runs on the fused backend, not 'torch': set circuit.backend=fused"):
        backends.choose("torch", 4, traj)


@pytest.mark.parametrize("name", [n for n in backends.names() if n != "auto"])
def test_every_backend_simulates_what_it_states(name):
    """Each dtype it lists, each noise method it lists, partitions if it says so: equal to the torch reference."""
    spec = REGISTRY[name]
    for rotation, entangler, layout in ANSATZE:
        a = build_ansatz(rotation, entangler, layout, 4, 2)
        for dtype in spec.dtypes:
            angles = [torch.rand(s, dtype=backends.DTYPES[dtype]) * 6 for s in a.angle_shapes()]
            ref = TorchStatevector(a, dtype=torch.float64).probs([t.double() for t in angles])
            got = simulator(a, name, Options(dtype=backends.DTYPES[dtype])).probs(angles)
            assert torch.allclose(got.double(), ref, atol=1e-5 if dtype == "float32" else 1e-10)
        for method in spec.noise:
            noise = NoiseModel(depolarizing=0.05, method=method, trajectories=4)
            p = simulator(a, name, Options(dtype=torch.float64, noise=noise)).probs(angles)
            assert p.shape == (16,) and abs(float(p.sum()) - 1) < 1e-9
        if spec.partitions:
            c = QuantumCircuit(4, 2, rotation, entangler, layout, backend=name, dtype="float64", partitions=2)
            assert isinstance(c.simulator, backends.Partitioned) and abs(float(c().detach().sum()) - 1) < 1e-10
        assert 0 < spec.memory_bytes(build_ansatz(rotation, entangler, layout, 6, 2), Options()) < spec.memory_bytes(
            build_ansatz(rotation, entangler, layout, 8, 2), Options()
        )


class _Counting(TorchStatevector):
    built = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _Counting.built += 1


@pytest.fixture
def extra_backend():
    """A backend registered as a user would add one: the torch simulator under another name, no partitions."""
    spec = backends.register(Backend(
        name="counting", summary="test double", devices=("cpu",), exact_gradient="torch autograd", partitions=False,
        build=lambda ansatz, options: _Counting(ansatz, dtype=options.dtype),
        memory_bytes=lambda ansatz, options: 12345 * ansatz.n_qubits,
    ))  # fmt: skip
    yield spec
    del REGISTRY[spec.name]


def test_a_registered_backend_is_a_circuit_backend_with_its_memory_and_capabilities(extra_backend):
    with pytest.raises(ValueError, match="taken"):
        backends.register(extra_backend)
    assert "counting" in backends.names()
    _Counting.built = 0
    c = QuantumCircuit(3, 2, backend="counting", dtype="float64")
    assert _Counting.built == 1 and torch.allclose(c().sum(), torch.tensor(1.0, dtype=torch.float64))
    assert QuantumCircuit.memory_bytes(5, n_blocks=2, backend="counting") == 12345 * 5  # the memory guard asks the backend
    with pytest.raises(ConfigError, match="circuit.partitions runs its sub-circuits on backends that support it, not 'counting'"):
        QuantumCircuit(4, 2, backend="counting", partitions=2)
    with pytest.raises(ConfigError, match="runs on cpu, not cuda"):
        check_device("counting", "cuda")


def test_the_circuit_module_has_no_backend_branches():
    """QuantumCircuit asks the registry: no backend name is compared in circuit.py."""
    source = (ROOT / "qt" / "core" / "quantum" / "circuit.py").read_text()
    names = "|".join(re.escape(n) for n in REGISTRY)
    assert not re.search(rf"""["']({names})["']""", source)


def test_the_memory_estimate_takes_the_constructors_arguments_and_refuses_others():
    assert QuantumCircuit.memory_bytes(6, n_blocks=2) == QuantumCircuit.memory_bytes(n_qubits=6, n_blocks=2, backend="auto", rotation="RY")
    assert QuantumCircuit.memory_bytes(6, n_blocks=2, backend="fused", dtype="float64") == REGISTRY["fused"].memory_bytes(
        build_ansatz("RY", "CNOT", "chain", 6, 2), Options(dtype=torch.float64)
    )
    with pytest.raises(ConfigError, match=r"circuit.foo is not a setting of QuantumCircuit: use n_blocks, rotation"):
        QuantumCircuit.memory_bytes(6, n_blocks=2, foo=1)


def test_readout_error_applies_whatever_the_backend_resolves_to():
    """A regression guard: circuit.backend=auto (the default) with only readout error must flip bits like fused does."""
    out = {}
    for backend in ("auto", "fused", "torch"):
        torch.manual_seed(0)
        out[backend] = QuantumCircuit(5, 2, backend=backend, dtype="float64", noise={"readout": 0.1})().detach()
    torch.manual_seed(0)
    clean = QuantumCircuit(5, 2, backend="auto", dtype="float64")().detach()
    assert torch.allclose(out["auto"], out["fused"], atol=1e-12) and torch.allclose(out["torch"], out["fused"], atol=1e-12)
    assert not torch.allclose(out["auto"], clean, atol=1e-3)
