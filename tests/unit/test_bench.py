"""The benchmark's own measuring pieces (the tables' figures come from running it: docs/performance.md)."""

import torch

from qt.core.mapping import MLPMapping
from qt.tools.bench import elementwise_fn, recipe_learner


def test_the_floor_runs_the_mappings_elementwise_passes_on_a_copy():
    learner = recipe_learner(["experiment=mnist_1500"])
    step = elementwise_fn(learner)
    assert step is not None
    step()  # forward and backward through rescaling, per-tensor scale and the split, the network the identity
    probs = step.probs
    assert probs.grad is not None and probs.grad.shape == (2**13,) and torch.isfinite(probs.grad).all()
    assert type(learner.mapping) is MLPMapping and "network" not in vars(learner.mapping)  # the learner's own untouched
    assert elementwise_fn(recipe_learner(["experiment=mnist_1500", "mode=classical"])) is None
    assert elementwise_fn(recipe_learner(["experiment=mnist_1500", "mapping.chunk=4", "max_trainable_params=null"])) is None
