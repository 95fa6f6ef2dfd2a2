"""Runs written by any earlier qt stay readable: what changed in a run's config since qt began, in one table, and
the one function that gives an old config today's names and meaning.

Two kinds of change, each with the commit that made it:

* **moved classes** (:data:`MOVED_TARGETS`): the package restructure (df577a6) moved every module under a
  layer (``qt.models.SimpleCNN`` is ``qt.core.targets.SimpleCNN``), so an old run's ``_target_``s named
  modules that no longer exist; **renamed classes** (:data:`RENAMED_TARGETS`): the mappings were called
  generators until the names said one thing each (#40);
* **added keys** (:data:`ADDED`, and groups: :data:`ADDED_CHOICES`): a run written before a key existed lacks it and did what the value
  here says, which is not always today's default (before ``mapping.scale`` the mapping's outputs were
  the weights as they came, ``scale=none``; today's default is ``init``).

:func:`upgrade` applies both to a config (``.hydra/config.yaml``, ``summary.json``'s ``config``, a
checkpoint's fingerprint, an export's ``model``). Everything that reads a run goes through it:
``qt.experiment.build.run_config`` (export, teachers), ``build_network`` (export files),
``qt.analysis.runs`` (``load_runs`` and the report) and the CLI's resume check, so an old run exports,
reports, pairs with today's runs of the same meaning and resumes where its config still means the same.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

#: modules that moved in the package restructure (df577a6): a ``_target_``'s old prefix -> its prefix now
MOVED_TARGETS = {
    "qt.models.": "qt.core.targets.",
    "qt.mapping.": "qt.core.mapping.",
    "qt.quantum.": "qt.core.quantum.",
    "qt.data.": "qt.training.data.",
    "qt.loggers.": "qt.training.loggers.",
    "qt.losses.": "qt.training.losses.",
    "qt.schedules.": "qt.training.schedules.",
    "qt.sweep.": "qt.sweeps.study.",
}

#: classes renamed since (applied after the module moves above): an old ``_target_`` -> today's.
#: 2026-12-07 (#40, names that say one thing): the mappings were "generators", a word qt also uses for the
#: source of the probabilities (the ``generator`` key: the circuit or a control's stand-in)
RENAMED_TARGETS = {
    "qt.core.mapping.WeightGenerator": "qt.core.mapping.MLPMapping",
    "qt.core.mapping.MPSWeightGenerator": "qt.core.mapping.MPSMapping",
}


@dataclass(frozen=True)
class Added:
    """A config key that runs written before commit ``since`` lack; ``value``: what those runs did.
    ``only_for``: the key applies only to a group built from a class of that name (``model.activation``:
    qt's SimpleCNN had ReLU before the setting existed; another network's activation is unknown)."""

    key: str
    value: Any
    since: str
    only_for: str | None = None


#: the commit that added the task group (#39)
TASKS = "1bc2754"

NOISELESS = {"depolarizing": 0.0, "depolarizing_2q": None, "amplitude_damping": 0.0, "readout": 0.0,
             "trajectories": 8, "eval_trajectories": 64, "method": "auto"}  # fmt: skip

#: keys added after qt began (b8d8b52), in the order they came
ADDED = (
    Added("objective", "best_val_acc", "aa2854c"),
    Added("loss", {"_target_": "qt.training.losses.CrossEntropy"}, "8f4713e"),  # before the loss group: cross-entropy
    Added("circuit.shots", None, "8f4713e"),
    Added("generator", "quantum", "f99fe0d"),
    Added("mapping.scale", "none", "3a47677"),  # the mapping's outputs as they came (then the default became tensor, later init)
    Added("max_trainable_params", None, "6dc2de4"),
    Added("model.activation", "relu", "48edb0c", only_for="SimpleCNN"),
    Added("trainer.test_subset", None, "48edb0c"),
    Added("circuit.entangle", True, "0fe1f8d"),
    Added("circuit.partitions", 1, "029e6cb"),
    Added("circuit.gradient", "adjoint", "14ce33c"),
    Added("circuit.noise", NOISELESS, "14ce33c"),
    Added("circuit.spsa", {"perturbation": 0.1, "decay": 0.101, "resamplings": 1}, "14ce33c"),  # unused by adjoint
    Added("loss.label_smoothing", 0.0, "f0bff64", only_for="CrossEntropy"),
    Added("model.dropout", 0.0, "f0bff64", only_for="SimpleCNN"),
    Added("model.dropout", 0.0, "f0bff64", only_for="BudgetCNN"),
    Added("task", {"_target_": "qt.training.tasks.Classification"}, TASKS),  # before the task group: classification
    Added("cut_gradient", None, TASKS),
)


#: config groups added after qt began: the option a run written before each one had in effect (Hydra's choices)
ADDED_CHOICES = {"loss": ("ce", "8f4713e"), "task": ("classification", TASKS)}


def current_target(target: Any) -> Any:
    """A ``_target_`` under today's module names (others as they are)."""
    if isinstance(target, str):
        for old, new in MOVED_TARGETS.items():
            if target.startswith(old):
                target = new + target[len(old) :]
                break
        target = RENAMED_TARGETS.get(target, target)
    return target


def current_targets(node: Any) -> Any:
    """``node`` (any nesting of dicts and lists: a config, a fit() fingerprint) with every ``_target_`` under today's name."""
    if isinstance(node, dict):
        return {k: current_target(v) if k == "_target_" else current_targets(v) for k, v in node.items()}
    if isinstance(node, list):
        return [current_targets(v) for v in node]
    return node


def upgrade(config: dict) -> dict:
    """``config`` (a plain dict, resolved or not) with today's ``_target_``s and every :data:`ADDED` key it lacks,
    at the value that says what it did. A new dict; a config of today comes back equal. Keys of groups the
    config does not have are not added (a classical run's ``mapping``), except the top-level ones."""
    out = current_targets(copy.deepcopy(config))
    # a run written since the task group came has every key of its time: a missing one was left out on purpose
    # (task=rl has no loss group), so only keys added after the task group apply to it
    since_tasks = next(i for i, a in enumerate(ADDED) if a.key == "task") + 1 if isinstance(config, dict) and "task" in config else 0
    for added in ADDED[since_tasks:]:
        *parents, leaf = added.key.split(".")
        node = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf in node:
            continue
        if added.only_for is not None and not str(node.get("_target_", "")).endswith(f".{added.only_for}"):
            continue
        if parents and not node:
            continue  # an empty group (scheduler: {}) has nothing to complete
        node[leaf] = copy.deepcopy(added.value)
    return out


def upgrade_group(group: str, node: dict) -> dict:
    """One group's node (an export's ``model``) under today's names, with the keys :data:`ADDED` gives that group."""
    return upgrade({group: node})[group]


def upgrade_choices(choices: dict) -> dict:
    """A run's group choices (``.hydra/hydra.yaml``) with those of groups added since (:data:`ADDED_CHOICES`)."""
    return {**{group: option for group, (option, _) in ADDED_CHOICES.items()}, **choices} if choices else choices
