"""Initialisation: a generated network starts with its target's default-init statistics, and learns from step 1."""

import math
import statistics
from functools import partial

import pytest
import torch

from qt.experiment.config import compose_config, instantiate
from qt.core.learners import QTLearner
from qt.core.mapping import MLPMapping
from qt.core.targets import SimpleCNN, default_init_stats
from qt.core.quantum import QuantumCircuit
from qt.experiment.build import build_learner
from tests.helpers import LN10


def compose_cfg(*overrides):
    return compose_config(overrides)


def learner_for(*overrides, seed=0):
    torch.manual_seed(seed)
    return build_learner(compose_cfg(*overrides))


@pytest.fixture(scope="module")
def batch():
    data = instantiate(compose_cfg().dataset).load()
    return data.train.x[:256], data.train.y[:256]


def test_default_init_stats_measure_what_the_target_draws_without_touching_the_rng():
    target = torch.nn.Sequential(torch.nn.Linear(192, 20), torch.nn.BatchNorm1d(20), torch.nn.LayerNorm(20))
    torch.manual_seed(1)
    expected_next = torch.rand(3)
    torch.manual_seed(1)
    stats = default_init_stats(target)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's random stream is untouched
    bound = 1 / math.sqrt(192)  # nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
    assert stats["0.weight"].std == pytest.approx(bound / math.sqrt(3), rel=0.03)
    assert stats["0.bias"].std == pytest.approx(bound / math.sqrt(3), rel=0.05)  # a 20-element bias, pooled over draws
    assert (stats["1.weight"].std, stats["1.weight"].offset) == (0.0, 1.0)  # constant inits: norm scale 1, shift 0
    assert (stats["2.bias"].std, stats["2.bias"].offset) == (0.0, 0.0)


PRESETS = [
    [],
    ["circuit=u3"],
    ["n_blocks=2"],
    ["n_blocks=64", "mapping.hidden=[16,16]"],
    ["mapping=shallow"],
    ["mapping=deep"],
    ["mapping.activation=tanh"],
    ["model=cnn_small"],
    ["mapping.chunk=4"],
    ["model=cnn_cifar", "mapping.chunk=16", "n_blocks=2"],  # 222,986 weights, 14 qubits
    ["model=cnn_cifar", "n_blocks=2"],  # the same at chunk 1: 18 qubits
]


@pytest.mark.parametrize("overrides", PRESETS, ids=lambda o: " ".join(o) or "default")
def test_every_generated_tensor_starts_at_its_default_init_scale(overrides):
    learner = learner_for(*overrides)
    for name, r in learner.weight_report().items():
        assert r["std_ratio"] == pytest.approx(1.0, abs=0.02), name  # not exactly 1: the standardisation's eps (1e-6)
        if r["unit_mean_share"] is not None:  # no unit sums its inputs coherently
            assert r["unit_mean_share"] < 1e-6, name
        if r["unit_similarity"] is not None:  # and the units are not copies of each other (> 0.95 with the earlier
            assert r["unit_similarity"] < 0.8, name  # scale; PyTorch's init 0.02-0.22; a tanh mapping's fc1 0.73)


def test_the_earlier_he_scale_starts_coherent_and_far_too_large(batch):
    """What the fix removed, measured the same way: the test above fails for scale=tensor."""
    learner = learner_for("mapping.scale=tensor")
    report = learner.weight_report()
    assert report["classifier.1.weight"]["std_ratio"] > 2  # He's sqrt(2/fan_in) vs torch's 1/sqrt(3 fan_in)
    assert report["classifier.1.weight"]["unit_mean_share"] > 0.05  # vs 1/192 for independent weights
    large = learner_for("mapping.scale=tensor", "model=cnn_cifar", "mapping.chunk=16", "n_blocks=2").weight_report()
    assert large["classifier.3.weight"]["unit_similarity"] > 0.9  # hidden units start as copies: the target stayed at chance
    x, y = batch
    with torch.no_grad():
        assert float(torch.nn.functional.cross_entropy(learner(x, learner.weights()), y)) > 10 * LN10


@pytest.mark.parametrize("overrides", [[], ["circuit=u3"], ["model=cnn_cifar", "mapping.chunk=16", "n_blocks=2"]], ids=["ry_cnot", "u3", "chunked large"])
def test_first_step_loss_is_near_chance(batch, overrides):
    x, y = batch
    losses = []
    for seed in range(5):
        learner = learner_for(*overrides, seed=seed)
        with torch.no_grad():
            losses.append(float(torch.nn.functional.cross_entropy(learner(x, learner.weights()), y)))
    assert abs(statistics.median(losses) - LN10) < 0.3, losses
    assert max(abs(v - LN10) for v in losses) < 0.7, losses  # PyTorch's own init of cnn_qtt spreads 2.20-2.44 here


def test_units_of_one_weight_and_constant_inits_are_kept():
    """A fan-in of 1 has nothing to centre (not zeroed); a norm layer starts at its constant, with a gain that learns."""
    target = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4), torch.nn.LayerNorm(4))
    torch.manual_seed(0)
    learner = QTLearner(target, partial(QuantumCircuit, n_blocks=2), partial(MLPMapping, hidden=[6], scale="init"))
    w = learner.weights()
    assert float(w["0.weight"].detach().std()) > 0.5 * learner.default_init["0.weight"].std
    assert torch.allclose(w["3.weight"], torch.ones(4)) and torch.allclose(w["3.bias"], torch.zeros(4))
    x = torch.randn(16, 1)
    torch.nn.functional.cross_entropy(learner(x, w), torch.arange(16) % 4).backward()
    assert torch.all(learner.mapping.scale.gain.grad != 0)


def test_chunks_are_centred_so_no_offset_repeats_through_the_weights():
    torch.manual_seed(0)
    target = SimpleCNN(channels=[8, 12], kernel_size=5, hidden=[20])
    learner = QTLearner(target, partial(QuantumCircuit, n_blocks=2), partial(MLPMapping, hidden=[6], scale="init"), chunk=8)
    gen = learner.mapping
    seen = {}
    gen.scale.register_forward_hook(lambda m, inputs, out: seen.update(w=inputs[0].detach()))
    gen(learner.circuit())
    flat = torch.nn.functional.pad(seen["w"], (0, gen.n_states * 8 - gen.n_weights)).view(-1, 8)
    # each of the 8 outputs per basis state averages to 0 over the states (the padded tail is the only residue)
    assert flat[:-1].mean(0).abs().max() < 0.05 * flat.std()


def test_a_rebuilt_learner_generates_the_same_weights_from_the_saved_state():
    """std0 comes from random draws: the saved state carries it, so export and notebooks see the trained network exactly."""
    trained = learner_for("n_blocks=2", seed=0)
    torch.manual_seed(123)  # another RNG state: its own draws would give a slightly different std0
    rebuilt = build_learner(compose_cfg("n_blocks=2"))
    assert not torch.equal(rebuilt.mapping.scale.gain_unit, trained.mapping.scale.gain_unit)
    rebuilt.load_state_dict(trained.state_dict())
    for name, w in trained.weights().items():
        assert torch.equal(w, rebuilt.weights()[name]), name
