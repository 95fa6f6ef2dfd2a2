"""Targets, mapping and the QT learner: sizes, functional forward, gradient flow."""

from functools import partial

import pytest
import torch

from qt.errors import ConfigError
from qt.core.learners import ClassicalLearner, QTLearner
from qt.core.mapping import qubits_for
from qt.core.mapping import MLPMapping, basis_bits, rescale_probs
from qt.core.targets import SimpleCNN, count_weights
from qt.core.quantum import QuantumCircuit


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        (dict(channels=[4, 8], kernel_size=3, hidden=[30]), 6676),
        (dict(channels=[8, 12], kernel_size=5, hidden=[20]), 6690),
        (dict(in_channels=3, image_size=32, channels=[16, 32], kernel_size=5, padding=2, hidden=[128, 64]), 285226),
    ],
)
def test_target_sizes(kwargs, expected):
    assert count_weights(SimpleCNN(**kwargs)) == expected


def qt_learner(circuit_kw=None, mapping_kw=None, chunk=1):
    circuit = partial(QuantumCircuit, **{"n_blocks": 16, **(circuit_kw or {})})
    mapping = partial(MLPMapping, **{"hidden": [20, 20], "scale": "none", **(mapping_kw or {})})  # the references: no gains
    return QTLearner(SimpleCNN(), circuit, mapping, chunk=chunk)


def test_param_tables_match_the_references():
    torch.manual_seed(0)
    ry = qt_learner().param_table()
    assert (ry["target_weights"], ry["n_qubits"], ry["qnn_params"], ry["mapping_params"]) == (6690, 13, 208, 741)
    assert ry["trainable_params"] == 949
    paper = qt_learner(
        dict(rotation="U3", entangler="CU3", layout="ring"), dict(hidden=[4, 20, 4], activation="none")
    ).param_table()
    assert paper["trainable_params"] == 1497  # the authors' 1,497
    assert paper["compression_ratio"] == pytest.approx(6690 / 1497)


def test_weights_feed_the_target_and_gradients_reach_circuit_and_mapping():
    torch.manual_seed(0)
    learner = qt_learner(dict(n_blocks=2))
    weights = learner.weights()
    assert {k: tuple(v.shape) for k, v in weights.items()} == {k: tuple(p.shape) for k, p in learner.target.named_parameters()}
    x = torch.randn(5, 1, 28, 28)
    loss = torch.nn.functional.cross_entropy(learner(x, weights), torch.arange(5))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.circuit.parameters())
    assert all(p.grad is not None for p in learner.mapping.parameters())
    assert all(p.grad is None for p in learner.target.parameters())
    trainable = {id(p) for p in learner.trainable_parameters()}
    assert not trainable & {id(p) for p in learner.target.parameters()}


def test_frozen_circuit_trains_only_the_mapping():
    learner = qt_learner(dict(n_blocks=2, freeze=True))
    table = learner.param_table()
    assert table["trainable_params"] == table["mapping_params"] == 741


def test_classical_learner_is_the_plain_network():
    target = SimpleCNN()
    learner = ClassicalLearner(target)
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(learner(x, learner.weights()), target(x))
    assert learner.param_table()["trainable_params"] == 6690


def test_export_state_dict_reproduces_generated_network():
    torch.manual_seed(1)
    learner = qt_learner(dict(n_blocks=2))
    plain = SimpleCNN()
    plain.load_state_dict(learner.export_state_dict())
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(plain(x), learner(x, learner.weights()), atol=1e-6)


def test_chunking_reduces_qubits():
    assert qubits_for(6690) == 13
    assert qubits_for(285226) == 19
    assert qubits_for(285226, chunk=16) == 15
    learner = qt_learner(dict(n_blocks=1), chunk=8)
    assert learner.n_qubits == 10
    assert sum(v.numel() for v in learner.weights().values()) == 6690


def test_each_basis_state_emits_chunk_consecutive_weights():
    """Weight j of the flat vector is output j mod c of basis state j div c: [bits(j div c), x_(j div c)] through the MLP."""
    torch.manual_seed(0)
    gen = MLPMapping(n_qubits=4, n_weights=45, hidden=[5], chunk=4, scale="none", center=False)  # 12 states, the last emits 1 used weight
    probs = torch.softmax(torch.randn(16), 0)
    w = gen(probs)
    x = rescale_probs(probs[:12], 4, gen.gamma, gen.beta, gen.alpha)
    for j in (0, 3, 4, 17, 44):
        state = j // 4
        assert torch.allclose(w[j], gen.mlp(torch.cat([basis_bits(4, 12, False)[state], x[state : state + 1]]))[j % 4])
    assert w.shape == (45,) and gen.n_states == 12


def test_rescaling_and_bits():
    p = torch.full((8,), 1 / 8)
    x = rescale_probs(p, 3, gamma=0.1, beta=0.8, alpha=0.3)
    assert torch.allclose(x, torch.zeros(8), atol=1e-7)  # uniform probabilities -> all equal -> minus mean = 0
    p = torch.tensor([0.5, 0.25, 0.25, 0.0])
    raw = (0.8 * torch.tanh(0.1 * 2 * p)).clamp_min(1e-12) ** 0.3
    assert torch.allclose(rescale_probs(p, 2, 0.1, 0.8, 0.3), raw - raw.mean())
    assert basis_bits(3, 8, signed=False)[5].tolist() == [1, 0, 1]
    assert basis_bits(3, 8, signed=True)[5].tolist() == [1, -1, 1]


def test_centering_and_no_rescale_options():
    torch.manual_seed(0)
    gen = MLPMapping(4, 10, hidden=[5], center=True, scale="none")
    assert abs(float(gen(torch.rand(16)).detach().mean())) < 1e-6
    gen = MLPMapping(4, 10, hidden=[5], rescale=False, center=False, scale="none")
    assert gen(torch.rand(16)).shape == (10,)


def test_tensor_scale_gives_each_tensor_he_scale_and_learns_its_gains():
    torch.manual_seed(0)
    target = SimpleCNN(channels=[8, 12], kernel_size=5, hidden=[20])
    learner = QTLearner(target, partial(QuantumCircuit, n_blocks=2), partial(MLPMapping, hidden=[6], scale="tensor"))
    plain = QTLearner(target, partial(QuantumCircuit, n_blocks=2), partial(MLPMapping, hidden=[6], scale="none"))
    n_tensors = len(list(target.parameters()))
    assert learner.param_table()["mapping_params"] == plain.param_table()["mapping_params"] + n_tensors
    weights = learner.weights()
    for name, w in weights.items():
        if w.dim() > 1:  # weight tensors start at std sqrt(2 / fan_in), mean 0
            fan = w[0].numel()
            assert abs(float(w.detach().std(unbiased=False)) - (2 / fan) ** 0.5) < 1e-3 * (2 / fan) ** 0.5
            assert abs(float(w.detach().mean())) < 1e-5
        else:  # biases start at 0
            assert float(w.detach().abs().max()) == 0.0
    x = torch.randn(4, 1, 28, 28)
    torch.nn.functional.cross_entropy(learner(x, weights), torch.arange(4)).backward()
    assert torch.all(learner.mapping.scale.gain.grad != 0)
    with pytest.raises(ConfigError, match="scale"):
        MLPMapping(4, 10, scale="layer")


class TinyMLPWithNorm(torch.nn.Module):
    """A target that is not a qt model and has buffers (BatchNorm running stats)."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 10))

    def forward(self, x):
        return self.net(x)


def test_any_torch_module_is_a_target():
    torch.manual_seed(0)
    target = TinyMLPWithNorm()
    learner = QTLearner(target, partial(QuantumCircuit, n_blocks=2), partial(MLPMapping, hidden=[8]))
    assert learner.n_weights == 784 * 8 + 8 + 16 + 8 * 10 + 10 and learner.n_qubits == 13
    x = torch.randn(6, 1, 28, 28)
    loss = torch.nn.functional.cross_entropy(learner(x, learner.weights()), torch.arange(6))
    loss.backward()
    assert all(p.grad is not None for p in learner.circuit.parameters())
    assert target.net[2].num_batches_tracked == 1  # buffers still live in the module
    plain = TinyMLPWithNorm()
    plain.load_state_dict(learner.export_state_dict())


def test_classical_generator_control_has_the_circuits_budget():
    from qt.core.generators import ClassicalGenerator
    from qt.experiment.controls import equal_budget_generator

    for kw, budget in ((dict(n_blocks=16), 208), (dict(n_blocks=16, rotation="U3", entangler="CU3", layout="ring"), 1248)):
        gen = equal_budget_generator(partial(QuantumCircuit, **kw), 13, seed=0)
        assert isinstance(gen, ClassicalGenerator) and sum(p.numel() for p in gen.parameters()) == budget
        p = gen()
        assert p.shape == (2**13,) and torch.allclose(p.sum(), torch.tensor(1.0), atol=1e-5)
    frozen = equal_budget_generator(partial(QuantumCircuit, n_blocks=2, freeze=True), 5, seed=0)
    assert not any(p.requires_grad for p in frozen.parameters())  # the fixed-random-vector control
    learner = QTLearner(SimpleCNN(), partial(equal_budget_generator, partial(QuantumCircuit, n_blocks=16), seed=0), partial(MLPMapping, hidden=[20, 20], scale="none"))
    table = learner.param_table()
    assert table["generator"] == "classical" and table["trainable_params"] == 949  # same budget as the QT default
    x = torch.randn(2, 1, 28, 28)
    torch.nn.functional.cross_entropy(learner(x, learner.weights()), torch.arange(2)).backward()
    assert learner.circuit.theta.grad is not None


def test_hashed_weights_are_shared_values_times_fixed_signs():
    """HashedNets: weight j of tensor t = sign_t[j] * values_t[bucket_t[j]], each tensor its proportional share of B."""
    from qt.core.generators import allocate_buckets
    from qt.core.learners import HashedLearner

    assert allocate_buckets([200, 8, 2400, 12, 3840, 20, 200, 10], 1369) == [41, 2, 491, 2, 786, 4, 41, 2]
    assert sum(allocate_buckets([200, 8, 2400, 12, 3840, 20, 200, 10], 697)) == 697
    with pytest.raises(ConfigError, match="between 8 and"):
        allocate_buckets([200, 8, 2400, 12, 3840, 20, 200, 10], 5)
    torch.manual_seed(0)  # the measured default-init stds depend on torch's stream, as in a seeded run
    learner = HashedLearner(SimpleCNN(), n_values=1369, seed=3)
    assert learner.param_table()["trainable_params"] == 1369 and learner.param_table()["generator"] == "hashed"
    h = learner.hashed
    w = learner.weights()
    flat = torch.cat([t.reshape(-1) for t in w.values()])
    assert torch.equal(flat, h.values[h.index] * h.sign)
    offsets = [0, *torch.cumsum(torch.tensor(h.counts), 0).tolist()]
    for (name, t), lo, hi in zip(w.items(), offsets[:-1], offsets[1:]):  # a tensor draws only from its own values
        start = sum(s.numel() for n, s in learner.shapes[: [n for n, _ in learner.shapes].index(name)])
        idx = h.index[start : start + t.numel()]
        assert lo <= int(idx.min()) and int(idx.max()) < hi
    # the same seed gives the same hash; the values start at the target's default-init scale
    torch.manual_seed(0)
    again = HashedLearner(SimpleCNN(), n_values=1369, seed=3).hashed
    assert torch.equal(again.index, h.index) and torch.equal(again.sign, h.sign) and torch.equal(again.values, h.values)
    assert not torch.equal(HashedLearner(SimpleCNN(), n_values=1369, seed=4).hashed.index, h.index)
    big = w["classifier.1.weight"]
    assert 0.7 < float(big.detach().std()) / learner.default_init["classifier.1.weight"].std < 1.3
    x = torch.randn(4, 1, 28, 28)
    torch.nn.functional.cross_entropy(learner(x, w), torch.arange(4)).backward()
    assert h.values.grad is not None and int((h.values.grad != 0).sum()) > 1000


def test_budget_cnn_is_the_widest_of_its_shape_within_the_budget():
    from qt.core.targets import BudgetCNN

    for budget in (697, 1369):
        for kw in (dict(), dict(kernel_size=3, width_ratio=2.0, hidden=8), dict(batch_norm=True, global_pool=True), dict(padding="same", global_pool=True)):
            net = BudgetCNN(max_params=budget, **kw)
            n = count_weights(net)
            assert n <= budget
            wider = [*net.channels[:-1], net.channels[-1] + 1]
            shape = {k: v for k, v in kw.items() if k not in ("width_ratio", "padding")}
            pad = (kw.get("kernel_size", 5) // 2) if kw.get("padding") == "same" else 0
            hidden = [shape.pop("hidden")] if shape.get("hidden") else []
            assert count_weights(SimpleCNN(channels=wider, padding=pad, hidden=hidden, **shape)) > budget  # no room left
            assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert BudgetCNN(max_params=1369).channels == [4, 4]  # the probe network: 1,158 weights
    with pytest.raises(ConfigError, match="over max_params=100"):
        BudgetCNN(max_params=100, hidden=32)
    with pytest.raises(ConfigError, match="needs its budget"):
        BudgetCNN()
