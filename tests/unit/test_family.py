"""The Quantum-Train family's later architectures: the distributed circuit (circuit.partitions) and the MPS mapping."""

import pytest
import torch

from qt.core.mapping import MPS, MPSMapping, TensorScale, basis_bits, mapping_size, rescale_probs
from qt.core.quantum import QuantumCircuit, build_ansatz
from qt.core.quantum.ansatz import entangler_pairs, group_sizes
from qt.core.quantum.backends import Partitioned
from qt.core.quantum.backends.pennylane_devices import PennyLaneBackend
from qt.errors import ConfigError


ANSATZE = [("RY", "CNOT", "chain"), ("U3", "CU3", "ring")]


def probs_and_grads(probs_fn, angles, w):
    p = probs_fn(angles)
    return p.detach(), torch.autograd.grad((p * w).sum(), angles)


@pytest.mark.parametrize("rotation,entangler,layout", ANSATZE)
@pytest.mark.parametrize("k", [2, 3, 7])
@pytest.mark.parametrize("backend", ["fused", "torch", "lightning.qubit"])
def test_partitions_equal_one_pennylane_circuit_of_the_sub_circuits_side_by_side(rotation, entangler, layout, k, backend):
    """K sub-circuits simulated apart and combined = PennyLane simulating all their gates as one 7-qubit circuit."""
    torch.manual_seed(k)
    c = QuantumCircuit(7, 2, rotation, entangler, layout, partitions=k, backend=backend, dtype="float64")
    assert isinstance(c.simulator, Partitioned) and [sim.ansatz.n_qubits for sim, _ in c.simulator.parts] == group_sizes(7, k)
    w = torch.randn(128, dtype=torch.float64)
    angles = [a.detach().clone().requires_grad_(True) for a in c.angles]
    p, g = probs_and_grads(c.simulator.probs, angles, w)
    p_ref, g_ref = probs_and_grads(PennyLaneBackend(c.ansatz, "default.qubit").probs, angles, w)
    assert torch.allclose(p, p_ref, atol=1e-9, rtol=0) and abs(float(p.sum()) - 1) < 1e-12
    for a, b in zip(g, g_ref):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)  # lightning's adjoint gradient: as in test_circuits


def test_a_partitioned_chain_is_the_chain_without_the_gates_across_group_boundaries():
    full = build_ansatz("RY", "CNOT", "chain", 13, 3)
    split = build_ansatz("RY", "CNOT", "chain", 13, 3, partitions=4)
    assert group_sizes(13, 4) == [4, 3, 3, 3] and split.groups == ((0, 4), (4, 3), (7, 3), (10, 3))
    crossing = {(3, 4), (6, 7), (9, 10)}
    assert split.block[0] == full.block[0]
    assert split.block[1].wires == tuple(p for p in full.block[1].wires if p not in crossing)
    assert split.n_params == full.n_params
    # a ring closes within each group: 3 CU3 per 3-qubit group (its own ring), 4 for the 4-qubit one
    ring = build_ansatz("U3", "CU3", "ring", 13, 1, partitions=4)
    assert ring.block[1].wires[:4] == entangler_pairs(4, "ring") and len(ring.block[1].wires) == 4 + 3 * 3


def test_one_partition_is_todays_circuit_bit_for_bit():
    for rotation, entangler, layout in ANSATZE:
        assert build_ansatz(rotation, entangler, layout, 13, 4, partitions=1) == build_ansatz(rotation, entangler, layout, 13, 4)
        torch.manual_seed(0)
        a = QuantumCircuit(13, 4, rotation, entangler, layout)
        torch.manual_seed(0)
        b = QuantumCircuit(13, 4, rotation, entangler, layout, partitions=1)
        assert all(torch.equal(x, y) for x, y in zip(a.angles, b.angles)) and torch.equal(a(), b())


def test_n_partitions_is_a_product_state_and_too_many_are_refused():
    torch.manual_seed(0)
    c = QuantumCircuit(4, 3, partitions=4, dtype="float64")
    # one qubit each: RY angles of a qubit add up, p(bit = 1) = sin^2(sum / 2) per qubit, independent
    theta = c.angles[0].detach()[:, :, 0].sum(0)
    one = torch.sin(theta / 2) ** 2
    expected = torch.ones(1, dtype=torch.float64)
    for q in range(4):
        expected = (expected[:, None] * torch.stack([1 - one[q], one[q]])[None, :]).reshape(-1)
    assert torch.allclose(c(), expected, atol=1e-12)
    with pytest.raises(ConfigError, match="circuit.partitions=5 but the circuit has 4 qubits"):
        QuantumCircuit(4, 1, partitions=5)
    assert QuantumCircuit.memory_bytes(20, n_blocks=16, partitions=2) < QuantumCircuit.memory_bytes(20, n_blocks=16) / 2  # two 10-qubit states, then 2^20 products


def test_mps_is_the_contraction_of_its_tensors():
    """f_c(x) = sum over all indices of the dense tensor the cores make, against the features (1, x_i)."""
    torch.manual_seed(0)
    m = MPS(4, n_outputs=2, bond_dim=3, init_std=0.5).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    e0 = torch.zeros(3, dtype=torch.float64)
    e0[0] = 1
    c0, c1, c2, c3 = m.cores  # (2, chi, chi) each; output core between sites 1 and 2
    tensor = torch.einsum("a,iab,jbc,ocd,kde,lef,f->oijkl", e0, c0, c1, m.output, c2, c3, e0)  # (outputs, 2, 2, 2, 2)
    features = torch.stack([torch.ones_like(x), x], dim=-1)  # phi(x) = (1, x)
    expected = torch.einsum("oijkl,ri,rj,rk,rl->ro", tensor, features[:, 0], features[:, 1], features[:, 2], features[:, 3])
    assert torch.allclose(m(x), expected, atol=1e-12)
    assert sum(p.numel() for p in m.parameters()) == 4 * 2 * 9 + 2 * 9


@pytest.mark.parametrize("n,signed,count,chunk", [(5, True, 29, 1), (6, False, 64, 3), (1, True, 2, 1), (9, False, 300, 2)])
def test_mps_over_every_basis_state_at_once_equals_row_by_row(n, signed, count, chunk):
    torch.manual_seed(n)
    m = MPS(n + 1, chunk, bond_dim=4, init_std=0.3).double()
    x = torch.randn(count, dtype=torch.float64)
    rows = torch.cat([basis_bits(n, count, signed).double(), x[:, None]], dim=1)
    assert torch.allclose(m.on_basis(n, (-1.0, 1.0) if signed else (0.0, 1.0), x), m(rows), atol=1e-11)


def test_mps_mapping_with_chunks_and_per_tensor_scale():
    torch.manual_seed(0)
    shapes = [(8, 1, 3, 3), (8,), (10, 72), (10,)]
    n_weights = sum(torch.Size(s).numel() for s in shapes)
    gen = MPSMapping(n_qubits=7, n_weights=n_weights, bond_dim=3, chunk=8, shapes=shapes, init_stats=[(0.1, 0.0)] * 4)
    probs = torch.softmax(torch.randn(128), 0)
    w = gen(probs)
    assert w.shape == (n_weights,) and abs(float(w[:72].detach().std()) / 0.1 - 1) < 0.05  # each tensor at its default-init scale
    params, _ = mapping_size({"_target_": "qt.core.mapping.MPSMapping", "bond_dim": 3}, 7, 8)
    assert params == sum(p.numel() for p in gen.mps.parameters()) == 8 * 2 * 9 + 8 * 9
    x = rescale_probs(probs[: gen.n_states], 7, gen.gamma, gen.beta, gen.alpha)
    out = gen.mps(torch.cat([basis_bits(7, gen.n_states, True), x[:, None]], dim=1))  # the generic contraction, row by row
    raw = (out - out.mean(0)).reshape(-1)[:n_weights]
    assert torch.allclose(w, gen.scale(raw), atol=1e-5)


def test_tensor_scale_by_tensor_equals_its_segment_sums():
    """A large target's per-tensor path (views, contiguous reductions) gives what the segment sums give."""
    torch.manual_seed(0)
    shapes = [(8, 1, 3, 3), (8,), (12, 8, 3, 3), (12,), (10, 300), (10,), (1, 5), (1,)]
    scale = TensorScale(shapes, "init", [(0.1, 0.0)] * 7 + [(0.0, 1.0)]).double()
    with torch.no_grad():
        scale.gain.add_(torch.randn(8) * 0.1)
    w = torch.randn(sum(torch.Size(s).numel() for s in shapes), dtype=torch.float64)
    assert torch.allclose(scale.forward_by_tensor(w), scale.forward_segments(w), atol=1e-12)
    assert not scale.by_tensor and TensorScale([(400, 300)], "init", [(0.1, 0.0)]).by_tensor


@pytest.mark.parametrize("mode", ["init", "tensor"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_tensor_scale_equals_its_segment_sums(mode, dtype):
    """On CPU the scale runs as two compiled calls (qt.core.mapping_kernels): autograd's values and gradients, to rounding."""
    torch.manual_seed(0)
    shapes = [(8, 1, 3, 3), (8,), (12, 8, 3, 3), (12,), (10, 300), (10,), (1, 5), (1,)]
    scale = TensorScale(shapes, mode, [(0.1, 0.0)] * 7 + [(0.0, 1.0)]).to(dtype)
    with torch.no_grad():
        scale.gain.add_(torch.randn(8, dtype=dtype) * 0.1)
    w, g = torch.randn(2, sum(torch.Size(s).numel() for s in shapes), dtype=dtype)
    results = []
    for forward in (scale.forward_segments, scale.forward_compiled):
        x = w.clone().requires_grad_(True)
        scale.gain.grad = None
        out = forward(x)
        (out * g).sum().backward()
        results.append((out.detach(), x.grad, scale.gain.grad.clone()))
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for a, b in zip(*results):
        assert a.dtype == dtype and torch.allclose(a, b, atol=tol * max(1.0, float(a.abs().max())), rtol=0)
    assert scale(w).grad_fn.name() == "_CompiledScaleBackward"  # what a CPU step runs


def test_the_library_takes_the_new_options_by_name():
    """``QuantumTrain(mapping="mps", circuit={"partitions": 2})`` builds what the CLI builds from those options."""
    from qt import QuantumTrain
    from qt.core.mapping import MLPMapping

    target = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))  # 7,850 weights: 13 qubits
    model = QuantumTrain(target, n_blocks=2, circuit={"partitions": 2}, mapping="mps")
    assert isinstance(model.mapping, MPSMapping) and model.mapping.mps.bond_dim == 4
    assert [sim.ansatz.n_qubits for sim, _ in model.circuit.simulator.parts] == [7, 6]
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    medium_16 = QuantumTrain(target, n_blocks=2, mapping="medium_16").mapping  # an option that extends another
    assert isinstance(medium_16, MLPMapping) and medium_16.mlp.net[0].out_features == 16


def test_large_rescaling_has_autograds_values_and_gradient():
    """From LARGE states on, rescale_probs' hand-written gradient: the same forward bit for bit, the same gradient."""
    from qt.core.mapping import LARGE

    torch.manual_seed(0)
    p = torch.softmax(torch.randn(2 * LARGE, dtype=torch.float64), 0)
    p[5] = 0  # clamped below 1e-12: no gradient either way
    fast, plain = p.clone().requires_grad_(True), p.clone().requires_grad_(True)
    w = torch.randn(2 * LARGE, dtype=torch.float64)
    x_fast = rescale_probs(fast, 18, 0.1, 0.8, 0.3)
    x = (0.8 * torch.tanh(0.1 * 2**17 * plain)).clamp_min(1e-12) ** 0.3
    x_plain = x - x.mean()  # autograd's own
    assert x_fast.grad_fn.name() != x_plain.grad_fn.name() and torch.equal(x_fast.detach(), x_plain.detach())
    (x_fast * w).sum().backward()
    (x_plain * w).sum().backward()
    assert torch.allclose(fast.grad, plain.grad, rtol=1e-12, atol=0) and fast.grad[5] == 0


def test_mps_over_many_basis_states_has_the_row_by_row_gradient():
    """From LARGE states on, on_basis's last step has a hand-written gradient: equal to autograd's through the rows."""
    from qt.core.mapping import LARGE

    torch.manual_seed(0)
    n, count = 17, LARGE + 7
    fast, rows_mps = MPS(n + 1, 2, bond_dim=3, init_std=0.3).double(), MPS(n + 1, 2, bond_dim=3).double()
    rows_mps.load_state_dict(fast.state_dict())
    x = torch.randn(count, dtype=torch.float64)
    x_fast, x_rows = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    w = torch.randn(count, 2, dtype=torch.float64)
    (fast.on_basis(n, (-1.0, 1.0), x_fast) * w).sum().backward()
    (rows_mps(torch.cat([basis_bits(n, count, True).double(), x_rows[:, None]], dim=1)) * w).sum().backward()
    assert torch.allclose(x_fast.grad, x_rows.grad, rtol=1e-9, atol=1e-12)
    for a, b in zip(fast.parameters(), rows_mps.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-9, atol=1e-9)
