"""qt's backends (fused, torch) simulate exactly what PennyLane simulates: probabilities and gradients."""

import math

import pytest
import torch

from qt.quantum import QuantumCircuit, build_ansatz
from qt.quantum.circuit import estimate_memory_bytes
from qt.quantum.pennylane_backend import PennyLaneBackend
from qt.quantum.torch_backend import Cross, Local, Perm, TorchStatevector, compile_block, partitions

ANSATZE = [("RY", "CNOT", "chain"), ("U3", "CU3", "ring"), ("RY", "CNOT", "ring"), ("U3", "CU3", "chain")]


def torch_and_grads(circuit, w):
    probs = circuit()
    (probs * w).sum().backward()
    return probs.detach(), [a.grad.clone() for a in circuit.angles]


def reference(circuit, w, device):
    backend = PennyLaneBackend(circuit.ansatz, device)
    angles = [a.detach().clone().requires_grad_(True) for a in circuit.angles]
    probs = backend.probs(angles)
    (probs * w).sum().backward()
    return probs.detach(), [a.grad for a in angles]


@pytest.mark.parametrize("backend", ["torch", "fused"])
@pytest.mark.parametrize("rotation,entangler,layout", ANSATZE)
@pytest.mark.parametrize("n_qubits", [1, 2, 3, 5, 8])
def test_backend_matches_default_qubit(backend, rotation, entangler, layout, n_qubits):
    torch.manual_seed(n_qubits)
    circuit = QuantumCircuit(n_qubits, 3, rotation, entangler, layout, backend=backend, dtype="float64")
    w = torch.randn(2**n_qubits, dtype=torch.float64)
    p, g = torch_and_grads(circuit, w)
    p_ref, g_ref = reference(circuit, w, "default.qubit")
    assert torch.allclose(p, p_ref, atol=1e-6, rtol=0)
    assert abs(float(p.sum()) - 1) < 1e-12
    for a, b in zip(g, g_ref):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", ["torch", "fused"])
@pytest.mark.parametrize("rotation,entangler,layout", ANSATZE[:2])
@pytest.mark.parametrize("n_qubits", [3, 6])
def test_backend_matches_lightning(backend, rotation, entangler, layout, n_qubits):
    torch.manual_seed(10 + n_qubits)
    circuit = QuantumCircuit(n_qubits, 2, rotation, entangler, layout, backend=backend, dtype="float64")
    w = torch.randn(2**n_qubits, dtype=torch.float64)
    p, g = torch_and_grads(circuit, w)
    p_ref, g_ref = reference(circuit, w, "lightning.qubit")
    assert torch.allclose(p, p_ref, atol=1e-6, rtol=0)
    for a, b in zip(g, g_ref):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", ["torch", "fused"])
@pytest.mark.parametrize("rotation,entangler,layout", ANSATZE[:2])
def test_float32_close_to_float64(backend, rotation, entangler, layout):
    torch.manual_seed(3)
    c64 = QuantumCircuit(13, 4, rotation, entangler, layout, backend=backend, dtype="float64")
    c32 = QuantumCircuit(13, 4, rotation, entangler, layout, backend=backend, dtype="float32")
    c32.load_state_dict({k: v.float() for k, v in c64.state_dict().items()})
    assert torch.allclose(c32().double(), c64(), atol=1e-7, rtol=0)


@pytest.mark.parametrize("rotation,entangler,layout", ANSATZE)
@pytest.mark.parametrize("group_size", [1, 2, 3, 7])
def test_partitioning_does_not_change_result(rotation, entangler, layout, group_size):
    torch.manual_seed(0)
    a = build_ansatz(rotation, entangler, layout, 7, 3)
    angles = [torch.rand(s, dtype=torch.float64) * 6 for s in a.angle_shapes()]
    base = PennyLaneBackend(a, "default.qubit").probs(angles)
    other = TorchStatevector(a, torch.float64, group_size=group_size).probs(angles)
    assert torch.allclose(base, other, atol=1e-12)


def test_cnot_chain_on_basis_state():
    # RY(pi) on qubit 0 only, then the CNOT chain: |000> -> |100> -> |110> -> |111>
    a = build_ansatz("RY", "CNOT", "chain", 3, 1)
    angles = torch.zeros(a.angle_shapes()[0], dtype=torch.float64)
    angles[0, 0, 0] = math.pi
    probs = TorchStatevector(a, torch.float64).probs([angles])
    assert torch.allclose(probs, torch.eye(8, dtype=torch.float64)[0b111], atol=1e-12)


def test_compiled_block_has_few_state_ops():
    parts = partitions(13, 7)
    assert parts == [(0, 7), (7, 6)]
    ry = compile_block(build_ansatz("RY", "CNOT", "chain", 13, 16), parts)
    assert [type(s).__name__ for s in ry] == ["Local", "Local", "Perm"]  # the CNOT chain is one gather
    u3 = compile_block(build_ansatz("U3", "CU3", "ring", 13, 16), parts)
    assert sum(isinstance(s, Cross) for s in u3) == 2 and sum(isinstance(s, Local) for s in u3) == 3
    # every gate of the block appears exactly once
    for steps, n_gates in ((ry, 13 + 12), (u3, 13 + 13)):
        listed = [g for s in steps for g in (s.gates if isinstance(s, (Local, Perm)) else [s.gate])]
        assert len(listed) == n_gates


def test_parameter_counts_match_the_references():
    # authors' toolkit: U3 + CU3 ring on 13 qubits, 16 blocks -> 1,248 angles (of 1,497 with mapping)
    assert build_ansatz("U3", "CU3", "ring", 13, 16).n_params == 1248
    assert build_ansatz("RY", "CNOT", "chain", 13, 16).n_params == 208
    assert build_ansatz("RY", "CNOT", "chain", 13, 8).n_params == 104


def test_frozen_circuit_has_no_trainable_angles():
    c = QuantumCircuit(4, 2, freeze=True)
    assert all(not p.requires_grad for p in c.parameters())


def test_memory_estimate_grows_with_qubits():
    small = estimate_memory_bytes(13, 16, "U3", "CU3", "ring")
    large = estimate_memory_bytes(20, 16, "U3", "CU3", "ring")
    assert large > 100 * small
    for backend in ("fused", "torch"):
        ratio = estimate_memory_bytes(13, 16, backend=backend, dtype="float64") / estimate_memory_bytes(13, 16, backend=backend)
        assert math.isclose(ratio, 2.0)
