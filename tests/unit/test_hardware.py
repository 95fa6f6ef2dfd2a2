"""Hardware-faithful training: parameter-shift and SPSA gradients, gate noise and readout, the qpu cost (docs/hardware.md)."""

import math

import numpy as np
import pytest
import torch

from qt.core.quantum import QuantumCircuit, build_ansatz
from qt.core.quantum.gradients import executions_per_step, shift_terms
from qt.core.quantum.shots import sample_frequencies
from qt.core.quantum.backends.density import DensityMatrix
from qt.core.quantum.backends.trajectories import FusedTrajectories
from qt.core.quantum.noise import NoiseContext, NoiseModel, apply_readout
from qt.errors import ConfigError


qml = pytest.importorskip("pennylane")

PRESETS = [("RY", "CNOT", "chain"), ("U3", "CU3", "ring")]


def queue(ansatz, angles, noise: NoiseModel | None = None, decompose_cu3: bool = False):
    """The ansatz on PennyLane's tape, with PennyLane's own channels after every gate.

    ``decompose_cu3``: CU3(theta, phi, lambda) as ControlledPhaseShift(lambda), CRY(theta),
    ControlledPhaseShift(phi) (equal matrices: test below), so that PennyLane's parameter
    shift uses its own recipes for those gates (it has none for ``ctrl(U3)``).
    """
    for b in range(ansatz.n_blocks):
        it = iter(angles)
        for layer in ansatz.block:
            a = next(it)[b] if layer.n_params else None
            for j, wires in enumerate(layer.wires):
                w = list(wires)
                if layer.gate == "RY":
                    qml.RY(a[j, 0], wires=w[0])
                elif layer.gate == "U3":
                    qml.U3(a[j, 0], a[j, 1], a[j, 2], wires=w[0])
                elif layer.gate == "CNOT":
                    qml.CNOT(wires=w)
                elif decompose_cu3:
                    qml.ControlledPhaseShift(a[j, 2], wires=w)
                    qml.CRY(a[j, 0], wires=w)
                    qml.ControlledPhaseShift(a[j, 1], wires=w)
                else:
                    qml.ctrl(qml.U3(a[j, 0], a[j, 1], a[j, 2], wires=w[1]), control=w[0])
                if noise is None:
                    continue
                if len(w) == 1 and noise.depolarizing:
                    qml.DepolarizingChannel(noise.depolarizing, wires=w[0])
                if len(w) == 2 and noise.p2:
                    paulis = [np.eye(2), qml.matrix(qml.PauliX(0)), qml.matrix(qml.PauliY(0)), qml.matrix(qml.PauliZ(0))]
                    kraus = [math.sqrt(1 - noise.p2) * np.eye(4)]
                    kraus += [math.sqrt(noise.p2 / 15) * np.kron(paulis[x], paulis[y]) for x in range(4) for y in range(4) if x or y]
                    qml.QubitChannel(kraus, wires=w)
                if noise.amplitude_damping:
                    for q in w:
                        qml.AmplitudeDamping(noise.amplitude_damping, wires=q)


def pennylane_probs(ansatz, angles, noise=None, **qnode):
    """Readout error as a ``BitFlip`` on every wire before measurement: ``default.mixed``'s
    ``readout_prob`` is that channel, but raises a TypeError with ``qml.probs`` in PennyLane 0.45.1
    (pennylane/devices/qubit_mixed/measure.py iterates over the float)."""
    n = ansatz.n_qubits
    dev = qml.device("default.mixed", wires=n) if noise is not None else qml.device("default.qubit", wires=n)

    def circuit(angles):
        queue(ansatz, angles, noise, decompose_cu3=qnode.get("diff_method") == "parameter-shift")
        if noise is not None and noise.readout:
            for q in range(n):
                qml.BitFlip(noise.readout, wires=q)
        return qml.probs(wires=range(n))

    return qml.QNode(circuit, dev, interface="torch", **qnode)(angles)


def vjp(probs_fn, angles, dy):
    """d(sum dy * probs)/d angles, by whatever differentiates ``probs_fn``."""
    angles = [a.detach().clone().requires_grad_(True) for a in angles]
    value = (probs_fn(angles) * dy).sum()
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(value, angles)])


def circuit(preset, n=3, blocks=2, **kw):
    rot, ent, lay = preset
    torch.manual_seed(1)
    return QuantumCircuit(n, blocks, rotation=rot, entangler=ent, layout=lay, dtype="float64", **kw)


def test_the_cu3_decomposition_the_references_use_is_cu3():
    th, ph, la = 0.7, -1.3, 2.1
    ref = qml.matrix(qml.ctrl(qml.U3(th, ph, la, wires=1), control=0))
    dec = qml.matrix(lambda: (qml.ControlledPhaseShift(la, wires=[0, 1]), qml.CRY(th, wires=[0, 1]), qml.ControlledPhaseShift(ph, wires=[0, 1])), wire_order=[0, 1])()
    assert np.allclose(ref, dec)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("partitions", [1, 2])
def test_exact_parameter_shift_equals_pennylanes_and_the_adjoint(preset, partitions):
    c = circuit(preset, partitions=partitions, gradient="parameter_shift")
    dy = torch.randn(8, dtype=torch.float64)
    (c() * dy).sum().backward()
    ours = torch.cat([a.grad.reshape(-1) for a in c.angles])
    theirs = vjp(lambda a: pennylane_probs(c.ansatz, a, diff_method="parameter-shift"), list(c.angles), dy)
    adjoint = vjp(lambda a: c.simulator.probs(a), list(c.angles), dy)
    assert torch.allclose(ours, theirs, atol=1e-10)
    assert torch.allclose(ours, adjoint, atol=1e-10)


def test_the_shift_rules_and_the_executions_they_cost():
    """Two terms per RY/U3 angle and per CU3 phi/lambda, four per CU3 theta; +1 forward per (sub-)circuit."""
    u3 = build_ansatz("U3", "CU3", "ring", 13, 16)
    assert len(shift_terms(u3)[0]) == 2 * (13 * 3 * 16 + 13 * 2 * 16) + 4 * 13 * 16
    assert executions_per_step("adjoint", u3) == 1 + 2 * 1040 + 4 * 208 == 2913
    ry = build_ansatz("RY", "CNOT", "chain", 13, 16, partitions=2)
    assert executions_per_step("parameter_shift", ry) == 2 + 2 * 208
    assert executions_per_step("spsa", ry) == 2 * 3


def _repeat(fn, times):
    return torch.stack([fn() for _ in range(times)])


def _agree(a: torch.Tensor, b: torch.Tensor):
    """Two samples (R, k) of estimators: equal means within sampling error, variances within an F-test's range."""
    r = a.shape[0]
    se = torch.sqrt(a.var(0) / r + b.var(0) / r)
    assert ((a.mean(0) - b.mean(0)).abs() <= 4.5 * se + 1e-12).all(), (a.mean(0), b.mean(0), se)
    ratio = a.var(0) / b.var(0)
    assert ((ratio > 0.55) & (ratio < 1.8)).all(), ratio


@pytest.mark.parametrize("method", ["parameter_shift", "spsa"])
def test_shot_estimates_agree_with_pennylanes_in_mean_and_variance(method):
    """200 shots per circuit run, 300 repetitions each: the same mean and variance as PennyLane's estimator with shots."""
    c = circuit(("RY", "CNOT", "chain"), n=2, blocks=1, gradient=method, shots=200, spsa={"perturbation": 0.3, "decay": 0})
    dy = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    theta = torch.cat([a.detach().reshape(-1) for a in c.angles])
    torch.manual_seed(0)
    ours = _repeat(lambda: c.estimator.grad(theta, dy), 300)
    angles = [a.detach() for a in c.angles]
    kw = {"diff_method": "parameter-shift"} if method == "parameter_shift" else {"diff_method": "spsa", "gradient_kwargs": {"h": 0.3, "sampler_rng": np.random.default_rng(7)}}
    theirs = _repeat(lambda: vjp(lambda a: pennylane_probs(c.ansatz, a, shots=200, **kw), angles, dy), 300)
    _agree(ours, theirs)
    if method == "parameter_shift":  # unbiased
        exact = vjp(lambda a: c.simulator.probs(a), angles, dy)
        assert ((ours.mean(0) - exact).abs() <= 4.5 * ours.std(0) / math.sqrt(300)).all()


@pytest.mark.parametrize("preset", PRESETS)
def test_exact_spsa_is_pennylanes_spsa_in_the_same_direction(preset):
    c = circuit(preset, gradient="spsa", spsa={"perturbation": 0.05, "decay": 0.101})
    dy = torch.randn(8, dtype=torch.float64)
    theta = torch.cat([a.detach().reshape(-1) for a in c.angles])
    torch.manual_seed(3)
    ours = c.estimator.grad(theta, dy, k=4)
    torch.manual_seed(3)
    delta = (torch.randint(0, 2, (theta.numel(),)).double() * 2 - 1).numpy()
    h = 0.05 / 5**0.101
    # PennyLane's tape takes the angles gate by gate, block by block; qt's flat vector tensor by tensor
    flat = torch.arange(theta.numel())
    tensors = list(flat.split([a.numel() for a in c.angles]))
    shaped = [t.reshape(a.shape) for t, a in zip(tensors, c.angles)]
    tape_order = torch.cat([shaped[i][b].reshape(-1) for b in range(c.ansatz.n_blocks) for i in range(len(shaped))]).numpy()

    def sampler(indices, num_params, *args, rng):
        return delta[tape_order]

    kw = {"diff_method": "spsa", "gradient_kwargs": {"h": h, "sampler": sampler}}
    theirs = vjp(lambda a: pennylane_probs(c.ansatz, a, **kw), [a.detach() for a in c.angles], dy)
    assert torch.allclose(ours, theirs, atol=1e-8)


NOISES = [
    NoiseModel(depolarizing=0.05),
    NoiseModel(depolarizing=0.0, depolarizing_2q=0.08),
    NoiseModel(amplitude_damping=0.1),
    NoiseModel(readout=0.07),
    NoiseModel(depolarizing=0.03, depolarizing_2q=0.06, amplitude_damping=0.05, readout=0.02),
]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("noise", NOISES, ids=["dep1", "dep2", "damping", "readout", "all"])
def test_the_density_matrix_is_pennylanes_default_mixed(preset, noise):
    """Probabilities and their gradient, exactly (float64)."""
    c = circuit(preset)
    dm = DensityMatrix(c.ansatz, noise, torch.float64)
    dy = torch.randn(8, dtype=torch.float64)
    angles = list(c.angles)
    assert torch.allclose(dm.probs(angles), pennylane_probs(c.ansatz, angles, noise).double(), atol=1e-10)
    assert torch.allclose(vjp(dm.probs, angles, dy), vjp(lambda a: pennylane_probs(c.ansatz, a, noise), angles, dy), atol=1e-7)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("noise", NOISES[:3] + NOISES[4:], ids=["dep1", "dep2", "damping", "all"])
def test_fused_trajectories_are_unbiased_for_default_mixed(preset, noise):
    """Mean of 3,000 trajectories (value and gradient) within 5 standard errors of default.mixed's exact ones."""
    c = circuit(preset)
    context = NoiseContext()
    traj = FusedTrajectories(c.ansatz, NoiseModel(**{**noise.__dict__, "trajectories": 1}), context, torch.float64)
    dy = torch.randn(8, dtype=torch.float64)
    angles = list(c.angles)
    torch.manual_seed(0)
    values, grads = [], []
    for _ in range(3000):
        a = [x.detach().clone().requires_grad_(True) for x in angles]
        p = traj.probs(a)
        grads.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad((p * dy).sum(), a)]))
        values.append(p.detach())
    values, grads = torch.stack(values), torch.stack(grads)
    exact = pennylane_probs(c.ansatz, angles, noise).double().detach()
    exact_grad = vjp(lambda a: pennylane_probs(c.ansatz, a, noise), angles, dy)
    for sample, ref in ((values, exact), (grads, exact_grad)):
        se = sample.std(0) / math.sqrt(len(sample))
        assert ((sample.mean(0) - ref).abs() <= 5 * se + 1e-7).all(), (sample.mean(0) - ref, se)  # 1e-7: PennyLane's own ctrl(U3) error (~5e-8)


def test_trajectories_without_noise_are_the_noiseless_circuit_and_evaluation_is_deterministic():
    c = circuit(PRESETS[1], n=4)
    context = NoiseContext()
    zero = FusedTrajectories(c.ansatz, NoiseModel(depolarizing=0.0, depolarizing_2q=0.0, trajectories=2), context, torch.float64)
    assert torch.allclose(zero.probs(list(c.angles)), c.simulator.probs(list(c.angles)), atol=1e-12)
    noisy = FusedTrajectories(c.ansatz, NoiseModel(depolarizing=0.05, eval_trajectories=4), context, torch.float64)
    context.training = False
    assert torch.equal(noisy.probs(list(c.angles)), noisy.probs(list(c.angles)))
    state = torch.get_rng_state()
    noisy.probs(list(c.angles))
    assert torch.equal(state, torch.get_rng_state())  # evaluation leaves the training stream alone


def test_readout_is_the_confusion_matrix_on_every_bit():
    p = torch.tensor([0.5, 0.2, 0.3, 0.0], dtype=torch.float64)  # bits (b0 b1)
    e = 0.1
    r = torch.tensor([[1 - e, e], [e, 1 - e]], dtype=torch.float64)
    assert torch.allclose(apply_readout(p, e), torch.kron(r, r) @ p)


def test_shot_frequencies_sum_to_one_and_are_unbiased():
    p = torch.softmax(torch.randn(3, 16, dtype=torch.float64), -1)
    for shots in (50, 100_000):  # torch's sampler, numpy's
        f = sample_frequencies(p, shots)
        assert torch.allclose(f.sum(-1), torch.ones(3, dtype=torch.float64))
        assert (f * shots - (f * shots).round()).abs().max() < 1e-9
    mean = torch.stack([sample_frequencies(p, 200) for _ in range(400)]).mean(0)
    assert (mean - p).abs().max() < 5 * math.sqrt(0.25 / 200 / 400)


def test_bad_hardware_settings_are_refused_in_one_line():
    for kw, words in [
        ({"gradient": "finite_diff"}, "circuit.gradient"),
        ({"noise": {"depolarizing": 1.5}}, "circuit.noise.depolarizing"),
        ({"noise": {"amplitude_damping": 1.0}}, "circuit.noise.amplitude_damping"),
        ({"noise": {"depolarising": 0.1}}, "unknown circuit.noise key"),
        ({"noise": {"method": "exact"}}, "circuit.noise.method"),
        ({"spsa": {"perturbation": 0}}, "circuit.spsa.perturbation"),
        ({"noise": {"depolarizing": 0.1, "method": "trajectories"}, "backend": "torch"}, "circuit.backend=fused"),
    ]:
        with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
            QuantumCircuit(3, 1, **kw)


def test_a_frozen_circuit_costs_its_forward_only():
    frozen, trained = QuantumCircuit(5, 2, freeze=True, shots=100), QuantumCircuit(5, 2, partitions=2)
    assert frozen.qpu(10)["circuit_executions"] == 10 and frozen.qpu(10)["shots"] == 1000
    assert trained.qpu(10)["executions_per_step"] == 2 + 2 * 10
