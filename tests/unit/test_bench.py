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


def test_the_tasks_section_times_what_an_update_and_an_environment_step_run():
    from qt.tools.bench import task_fns

    rl = task_fns(["experiment=qtrl_cartpole"], steps=50)
    assert set(rl) == {"update", "env step"} and set(task_fns(["experiment=sunspots_lstm", "n_blocks=2"])) == {"update"}
    for _ in range(3):
        rl["env step"]()
    before = [p.detach().clone() for p in rl["update"].learner.trainable_parameters()]
    rl["update"]()  # the REINFORCE loss through freshly generated weights, one optimizer step
    after = list(rl["update"].learner.trainable_parameters())
    assert len(before) == 10 and all(not torch.equal(a, b) for a, b in zip(before, after))  # angles and mapping all moved
