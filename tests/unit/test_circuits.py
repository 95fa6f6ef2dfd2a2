"""qt's backends (fused, torch) simulate exactly what PennyLane simulates: probabilities and gradients."""

import math

import pytest
import torch

from qt.core.quantum import QuantumCircuit, build_ansatz
from qt.core.quantum.backends.pennylane_devices import PennyLaneBackend
from qt.core.quantum.backends.torch_statevector import Cross, Local, Perm, TorchStatevector, compile_block, partitions


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


def assert_matches_pennylane(circuit, device="default.qubit"):
    """Probabilities and the gradient of a random weighting of them equal PennyLane's on ``device``."""
    w = torch.randn(2**circuit.n_qubits, dtype=torch.float64)
    p, g = torch_and_grads(circuit, w)
    p_ref, g_ref = reference(circuit, w, device)
    assert torch.allclose(p, p_ref, atol=1e-6, rtol=0)
    assert abs(float(p.sum()) - 1) < 1e-12
    for a, b in zip(g, g_ref):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", ["torch", "fused"])
@pytest.mark.parametrize("rotation,entangler,layout", ANSATZE)
@pytest.mark.parametrize("n_qubits", [1, 2, 3, 5, 8])
def test_backend_matches_default_qubit(backend, rotation, entangler, layout, n_qubits):
    torch.manual_seed(n_qubits)
    assert_matches_pennylane(QuantumCircuit(n_qubits, 3, rotation, entangler, layout, backend=backend, dtype="float64"))


@pytest.mark.parametrize("backend", ["torch", "fused"])
@pytest.mark.parametrize("rotation,entangler,layout", ANSATZE[:2])
@pytest.mark.parametrize("n_qubits", [3, 6])
def test_backend_matches_lightning(backend, rotation, entangler, layout, n_qubits):
    torch.manual_seed(10 + n_qubits)
    assert_matches_pennylane(QuantumCircuit(n_qubits, 2, rotation, entangler, layout, backend=backend, dtype="float64"), "lightning.qubit")


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
    small = QuantumCircuit.memory_bytes(13, n_blocks=16, rotation="U3", entangler="CU3", layout="ring")
    large = QuantumCircuit.memory_bytes(20, n_blocks=16, rotation="U3", entangler="CU3", layout="ring")
    assert large > 100 * small
    for backend in ("fused", "torch"):
        ratio = QuantumCircuit.memory_bytes(13, n_blocks=16, backend=backend, dtype="float64") / QuantumCircuit.memory_bytes(13, n_blocks=16, backend=backend)
        assert math.isclose(ratio, 2.0)


def _u3_ring_moments(low: float, high: float, seed: int, samples: int = 4000) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-basis-state E[p] and E[p^2] of a 3-qubit, 2-block U3 + CU3 ring with angles ~ U(low, high), and their standard errors."""
    torch.manual_seed(seed)
    circuit = QuantumCircuit(n_qubits=3, n_blocks=2, rotation="U3", entangler="CU3", layout="ring", backend="torch", dtype="float64")
    probs = []
    with torch.no_grad():
        for _ in range(samples):
            for p in circuit.parameters():
                p.copy_(low + torch.rand_like(p) * (high - low))
            probs.append(circuit())
    x = torch.cat([torch.stack(probs), torch.stack(probs) ** 2], dim=1)
    return x.mean(0), x.std(0) / samples**0.5


def test_the_identities_that_make_both_angle_ranges_one_distribution():
    """Why U(0, 2pi) and TorchQuantum's U(-pi, pi) give the same circuits in distribution, gate by gate:
    CU3(theta - 2pi) = Z_control CU3(theta); a Z before a U3 is lambda + pi; a Z passed through a CU3's
    target shifts its phi and lambda by pi. Uniform phases stay uniform, and a Z at the end changes no probability."""
    from qt.core.quantum.gates import u3

    c128 = torch.complex128
    t, f, l = (torch.tensor(v, dtype=torch.float64) for v in (4.1, 0.7, 5.3))
    pi = torch.tensor(math.pi, dtype=torch.float64)
    eye, z = torch.eye(2, dtype=c128), torch.diag(torch.tensor([1, -1], dtype=c128))

    def cu3(theta, phi, lam):  # control on the first qubit
        return torch.block_diag(eye, u3(theta, phi, lam, c128))

    assert torch.allclose(cu3(t - 2 * pi, f, l), torch.kron(z, eye) @ cu3(t, f, l))
    assert torch.allclose(u3(t, f, l, c128) @ z, u3(t, f, l + pi, c128))
    assert torch.allclose(torch.kron(eye, z) @ cu3(t, f, l) @ torch.kron(eye, z), cu3(t, f + pi, l + pi))
    assert not torch.allclose(cu3(t - 2 * pi, f, l), cu3(t, f, l))  # pointwise the two ranges differ
    assert torch.allclose(u3(t - 2 * pi, f, l, c128), -u3(t, f, l, c128))  # a U3 alone: a global phase


def test_u3_angles_from_0_or_minus_pi_give_the_same_circuits_in_distribution():
    """qt draws U(0, 2pi), TorchQuantum U(-pi, pi): theta - 2pi changes a CU3 by Z on its control, which the
    uniform phases after it absorb, so the probability vectors have the same distribution (docs/results.md)."""
    def z(a, b):  # largest z-score of the 16 moment differences, independent samples
        return float(((a[0] - b[0]) / (a[1] ** 2 + b[1] ** 2).sqrt()).abs().max())

    ours = _u3_ring_moments(0.0, 2 * math.pi, seed=1)
    assert z(ours, _u3_ring_moments(-math.pi, math.pi, seed=2)) < 4.0
    assert z(ours, _u3_ring_moments(0.0, math.pi / 2, seed=3)) > 8.0  # the check tells a different distribution apart


@pytest.mark.parametrize("backend", ["torch", "fused", "lightning.qubit"])
@pytest.mark.parametrize("rotation,entangler,layout", ANSATZE)
@pytest.mark.parametrize("n_qubits", [1, 3, 6])
def test_no_entanglement_matches_default_qubit(backend, rotation, entangler, layout, n_qubits):
    torch.manual_seed(20 + n_qubits)
    circuit = QuantumCircuit(n_qubits, 3, rotation, entangler, layout, entangle=False, backend=backend, dtype="float64")
    assert all(layer.gate in ("RY", "U3") for layer in circuit.ansatz.block)
    assert_matches_pennylane(circuit)


@pytest.mark.parametrize("rotation,entangler,layout", ANSATZE)
def test_no_entanglement_keeps_the_parameter_count(rotation, entangler, layout):
    full = build_ansatz(rotation, entangler, layout, 13, 16)
    separable = build_ansatz(rotation, entangler, layout, 13, 16, entangle=False)
    assert separable.n_params == full.n_params
    assert sum(math.prod(s) for s in separable.angle_shapes()) == full.n_params


@pytest.mark.parametrize("backend", ["torch", "fused"])
def test_no_entanglement_ry_is_the_product_of_one_qubit_distributions(backend):
    """Written without PennyLane: RY angles on one wire add up, so p(bit q = 1) = sin^2(sum_b theta_bq / 2)."""
    torch.manual_seed(5)
    n = 5
    circuit = QuantumCircuit(n, 4, "RY", "CNOT", "chain", entangle=False, backend=backend, dtype="float64")
    total = circuit.angles[0].detach()[:, :, 0].sum(0)  # (n,)
    one = torch.sin(total / 2) ** 2
    expected = torch.ones(1, dtype=torch.float64)
    for q in range(n):  # wire 0 is the most significant bit
        expected = torch.kron(expected, torch.stack([1 - one[q], one[q]]))
    assert torch.allclose(circuit().detach(), expected, atol=1e-12)


def test_with_entanglement_the_distribution_is_not_a_product():
    """The control differs from QT where it should: the entangled circuit's distribution is not the product of its marginals."""
    torch.manual_seed(1)
    n = 4
    for entangle, is_product in ((True, False), (False, True)):
        p = QuantumCircuit(n, 3, "RY", "CNOT", "chain", entangle=entangle, backend="fused", dtype="float64")().detach()
        bits = p.view([2] * n)
        marginals = [bits.sum(dim=[d for d in range(n) if d != q]) for q in range(n)]
        product = marginals[0]
        for m in marginals[1:]:
            product = torch.kron(product, m)
        assert torch.allclose(p, product, atol=1e-10) is is_product
