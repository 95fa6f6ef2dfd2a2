"""The fused backend (compiled forward + adjoint backward) against the torch backend and PennyLane."""

import pytest
import torch

from qt.core.quantum import QuantumCircuit, build_ansatz
from qt.core.quantum.backends import ByDevice, Options, simulator
from qt.core.quantum.shots import sample_probs
from qt.core.quantum.ansatz import cnot_permutation
from qt.core.quantum.backends.fused import FusedStatevector, compile_program
from qt.core.quantum.backends.pennylane_devices import PennyLaneBackend
from qt.core.quantum.backends.torch_statevector import TorchStatevector


ANSATZE = [("RY", "CNOT", "chain"), ("U3", "CU3", "ring"), ("RY", "CNOT", "ring"), ("U3", "CU3", "chain"), ("RY", "CU3", "ring"), ("U3", "CNOT", "chain")]


def probs_and_grads(sim, angles, w):
    angles = [a.detach().clone().requires_grad_(True) for a in angles]
    probs = sim.probs(angles)
    (probs * w).sum().backward()
    return probs.detach(), [a.grad for a in angles]


def random_case(rotation, entangler, layout, n_qubits, n_blocks, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = build_ansatz(rotation, entangler, layout, n_qubits, n_blocks)
    angles = [torch.rand(s, generator=g, dtype=dtype) * 6.3 for s in a.angle_shapes()]
    return a, angles, torch.randn(2**n_qubits, generator=g, dtype=dtype)


def assert_same(x, y, atol):
    (p, g), (p_ref, g_ref) = x, y
    assert torch.allclose(p, p_ref, atol=atol, rtol=0), float((p - p_ref).abs().max())
    for a, b in zip(g, g_ref):
        assert torch.allclose(a, b, atol=atol, rtol=0), float((a - b).abs().max())


@pytest.mark.parametrize("rotation,entangler,layout", ANSATZE)
@pytest.mark.parametrize("n_qubits,n_blocks", [(1, 2), (2, 3), (4, 3), (7, 5), (13, 4), (9, 64)])
def test_fused_matches_torch_backend_float64(rotation, entangler, layout, n_qubits, n_blocks):
    a, angles, w = random_case(rotation, entangler, layout, n_qubits, n_blocks, seed=n_qubits)
    fused = probs_and_grads(FusedStatevector(a, torch.float64), angles, w)
    ref = probs_and_grads(TorchStatevector(a, torch.float64), angles, w)
    assert_same(fused, ref, 1e-10)
    assert abs(float(fused[0].sum()) - 1) < 1e-12


@pytest.mark.parametrize("rotation,entangler,layout", ANSATZE[:2])
def test_fused_matches_pennylane_at_13_qubits(rotation, entangler, layout):
    a, angles, w = random_case(rotation, entangler, layout, 13, 2, seed=13)
    fused = probs_and_grads(FusedStatevector(a, torch.float64), angles, w)
    assert_same(fused, probs_and_grads(PennyLaneBackend(a, "default.qubit"), angles, w), 1e-10)
    # lightning's adjoint of a SparseHamiltonian expectation is itself ~4e-9 from default.qubit here
    assert_same(fused, probs_and_grads(PennyLaneBackend(a, "lightning.qubit"), angles, w), 1e-8)


@pytest.mark.parametrize("rotation,entangler,layout", ANSATZE[:2])
def test_fused_float32_close_to_its_float64(rotation, entangler, layout):
    a, angles, w = random_case(rotation, entangler, layout, 13, 16, seed=5)
    p64, g64 = probs_and_grads(FusedStatevector(a, torch.float64), angles, w)
    p32, g32 = probs_and_grads(FusedStatevector(a, torch.float32), [x.float() for x in angles], w.float())
    assert p32.dtype == torch.float32 and g32[0].dtype == torch.float32
    assert torch.allclose(p32.double(), p64, atol=1e-7, rtol=0)
    scale = max(float(g.abs().max()) for g in g64)
    for a32, a64 in zip(g32, g64):
        assert float((a32.double() - a64).abs().max()) < 1e-4 * scale


def test_fused_is_deterministic():
    a, angles, w = random_case("U3", "CU3", "ring", 10, 8, dtype=torch.float32)
    sim = FusedStatevector(a, torch.float32)
    first, second = probs_and_grads(sim, angles, w), probs_and_grads(sim, angles, w)
    assert torch.equal(first[0], second[0]) and all(torch.equal(x, y) for x, y in zip(first[1], second[1]))


def test_program_lists_every_gate_once():
    a = build_ansatz("U3", "CU3", "ring", 13, 16)
    ops, perms = compile_program(a)
    assert len(ops) == 16 * 26  # 13 U3 + 13 CU3 per block
    assert sorted(ops[:, 3].tolist()) == list(range(0, a.n_params, 3))  # each gate owns its 3 angles
    ry_ops, ry_perms = compile_program(build_ansatz("RY", "CNOT", "chain", 13, 16))
    assert len(ry_ops) == 16 * 14 and len(ry_perms) == 1  # the CNOT chain is one permutation, shared by all blocks


@pytest.mark.parametrize("n_qubits,n_blocks", [(2, 3), (7, 5), (8, 3), (13, 4)])
@pytest.mark.parametrize("layout", ["chain", "ring"])
def test_rotation_layers_equal_gate_by_gate(n_qubits, n_blocks, layout):
    """RY layers as LAYER ops (two rotations per pass, gradients from after the layer) = one op per gate, float64."""
    a, angles, w = random_case("RY", "CNOT", layout, n_qubits, n_blocks, seed=n_qubits)
    layered, plain = FusedStatevector(a, torch.float64), FusedStatevector(a, torch.float64, layers=False)
    per_block = 2 if n_qubits >= 10 else 1  # from 10 qubits a layer is split around a relabelling (plan_program)
    assert (layered.program.ops[:, 0] == 5).sum() == per_block * n_blocks and not (plain.program.ops[:, 0] == 5).any()
    assert layered.program.saved and not plain.program.saved  # states kept per layer: the backward walks the adjoint only
    assert_same(probs_and_grads(layered, angles, w), probs_and_grads(plain, angles, w), atol=1e-12)
    x = angles[0].detach().clone().requires_grad_(True)
    loss = (layered.probs([x]) * w).sum()
    first = torch.autograd.grad(loss, x, retain_graph=True)[0]
    assert torch.equal(first, torch.autograd.grad(loss, x)[0])  # a second backward of one forward: the same


def test_rotation_layers_without_entanglement_keep_every_layer():
    """variant=no_entanglement: layer after layer with no permutation between them; each kept state is its own."""
    g = torch.Generator().manual_seed(5)
    a = build_ansatz("RY", "CNOT", "chain", 6, 4, entangle=False)
    angles = [torch.rand(s, generator=g, dtype=torch.float64) * 6.3 for s in a.angle_shapes()]
    w = torch.randn(2**6, generator=g, dtype=torch.float64)
    layered = FusedStatevector(a, torch.float64)
    assert layered.program.saved and (layered.program.ops[:, 0] == 5).all()
    assert_same(probs_and_grads(layered, angles, w), probs_and_grads(TorchStatevector(a, dtype=torch.float64), angles, w), atol=1e-12)


@pytest.mark.parametrize("rotation,entangler,layout", ANSATZE)
def test_planned_layouts_keep_gates_off_the_slow_bits(rotation, entangler, layout):
    """From 10 qubits the program moves wires between two layouts: RY+CNOT runs no gate on index bits 0-4,
    U3+CU3 ring at most one a block; probabilities and gradients stay the unplanned program's (1e-12)."""
    from qt.core.quantum.backends import fused_kernels
    from qt.core.quantum.backends.fused import SLOW_BITS, plan_program

    assert 1 << SLOW_BITS == fused_kernels.PAIR_RUN  # the bits the plan avoids are those a paired pass cannot take

    a, angles, w = random_case(rotation, entangler, layout, 11, 3, seed=11)
    ops, _ = plan_program(a)
    strides = ops[ops[:, 0] != 3][:, 1:3]
    slow = int(((strides > 0) & (strides < 32)).any(axis=1).sum())
    assert slow <= (0 if (rotation, entangler) == ("RY", "CNOT") else 3)
    planned, plain = FusedStatevector(a, torch.float64), FusedStatevector(a, torch.float64, layers=False)
    assert_same(probs_and_grads(planned, angles, w), probs_and_grads(plain, angles, w), atol=1e-12)


def test_kept_states_are_reused_only_once_their_graph_is_freed():
    """The kept-states buffer is pooled: a forward while an earlier graph is alive gets its own, so that graph's
    second backward is unchanged; after the graph is freed, its buffer is reused (no new allocation every step)."""
    a, angles, w = random_case("RY", "CNOT", "chain", 10, 3, seed=2)
    sim = FusedStatevector(a, torch.float64)
    x = angles[0].detach().clone().requires_grad_(True)
    first = (sim.probs([x]) * w).sum()
    g1 = torch.autograd.grad(first, x, retain_graph=True)[0]
    other = (sim.probs([x * 0.5]) * w).sum()  # another forward while first's graph holds its states
    assert torch.equal(g1, torch.autograd.grad(first, x)[0]) and len(sim.program._pool) == 2
    del first, other
    for _ in range(3):
        (sim.probs([x]) * w).sum().backward()
    assert len(sim.program._pool) == 2


def test_saved_states_stay_within_their_budget(monkeypatch):
    """Above SAVED_STATES_BYTES the states are not kept: the backward un-applies the state instead (same results)."""
    from qt.core.quantum.backends import fused as fused_backend

    a, angles, w = random_case("RY", "CNOT", "chain", 8, 6, seed=3)
    monkeypatch.setattr(fused_backend, "SAVED_STATES_BYTES", 6 * 2**8 * 8 - 1)
    unsaved = FusedStatevector(a, torch.float64)
    monkeypatch.undo()
    saved = FusedStatevector(a, torch.float64)
    assert saved.program.saved and not unsaved.program.saved
    assert_same(probs_and_grads(saved, angles, w), probs_and_grads(unsaved, angles, w), atol=1e-12)


def test_cnot_permutation_on_basis_states():
    # CNOT(0 -> 1) then CNOT(1 -> 2) on 3 qubits: |100> -> |110> -> |111>
    perm = cnot_permutation(3, ((0, 1), (1, 2)))
    state = torch.zeros(8)
    state[0b100] = 1
    assert int(state[torch.from_numpy(perm.astype("int64"))].argmax()) == 0b111


def test_auto_backend_is_fused_on_cpu_and_frozen_and_shots_work():
    circuit = QuantumCircuit(6, 3, "U3", "CU3", "ring", backend="auto", dtype="float64")
    assert isinstance(circuit.simulator, ByDevice)
    probs = circuit()
    assert list(circuit.simulator.simulators) == ["fused"]
    reference = QuantumCircuit(6, 3, "U3", "CU3", "ring", backend="torch", dtype="float64")
    reference.load_state_dict(circuit.state_dict())
    assert torch.allclose(probs, reference(), atol=1e-12, rtol=0)
    frozen = QuantumCircuit(6, 3, backend="fused", freeze=True)
    out = frozen()
    assert not out.requires_grad  # no angle to train: no autograd node
    torch.manual_seed(0)
    shots = QuantumCircuit(6, 3, backend="fused", shots=100)
    estimate = shots()
    counts = estimate.detach() * 100  # frequencies of 100 shots: integers, up to float32 rounding of p + (freq - p)
    assert torch.allclose(counts, counts.round(), atol=1e-4) and abs(float(counts.sum()) - 100) < 1e-3
    estimate.sum().backward()  # straight-through: the exact probabilities' gradient reaches the angles
    assert shots.angles[0].grad is not None


def test_shots_gradient_is_the_exact_gradient():
    a, angles, w = random_case("RY", "CNOT", "chain", 5, 2)
    sim = simulator(a, "fused", Options(dtype=torch.float64))
    x = [t.clone().requires_grad_(True) for t in angles]
    (sample_probs(sim.probs(x), 50) * w).sum().backward()
    _, exact = probs_and_grads(sim, angles, w)
    assert torch.allclose(x[0].grad, exact[0])


def test_fused_refuses_cuda_tensors_clearly():
    a, angles, _ = random_case("RY", "CNOT", "chain", 3, 1)
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: nothing to refuse")
    with pytest.raises(ValueError, match="CPU tensors only"):
        FusedStatevector(a).probs([t.cuda() for t in angles])
