"""What a control is: the one home of the controls a QT run is compared with.

A control is a QT config with one thing changed, made by the keys in :data:`CONTROL_KEYS`;
``variant=NAME`` (conf/variant/NAME.yaml) sets them. This module names the controls
(:data:`CONTROLS`, in report order), reads which one a config is (:func:`control_of`, for any
run, however it was launched) and builds the weight source a config's ``generator`` asks for
(:func:`qt_learner`). ``qt.analysis.stats`` pairs each control with the QT group it equals
but for these keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from qt.core.generators import ClassicalGenerator, MPSBornMachine
from qt.core.learners import HashedLearner, Learner, QTLearner

#: where a QT run's weights come from: the circuit, the equal-budget classical generator, the MPS Born machine, or HashedNets
GENERATORS = ("quantum", "classical", "mps_born", "hashed")
#: the keys that make a run a control of the QT config it otherwise equals
CONTROL_KEYS = ("mode", "generator", "circuit.freeze", "circuit.entangle")
#: the controls a QT group is compared with, in report order (conf/variant has one file each, and qt.yaml)
CONTROLS = ("frozen", "classical_generator", "mps_born", "fixed_vector", "no_entanglement", "hashed", "classical")


def control_of(cfg: Any) -> str:
    """The control a config is (or ``qt``), read from :data:`CONTROL_KEYS`.

    ``variant=NAME`` sets those keys; a run launched with them directly (``mode=classical``)
    is the same control and is labelled the same.
    """
    if cfg.get("mode") == "classical":
        return "classical"
    circuit = cfg.get("circuit") or {}
    frozen = bool(circuit.get("freeze"))
    generator = cfg.get("generator", "quantum")
    if generator in ("hashed", "mps_born"):
        return generator
    if generator == "classical":
        return "fixed_vector" if frozen else "classical_generator"
    if frozen:
        return "frozen"
    return "qt" if circuit.get("entangle", True) else "no_entanglement"


def equal_budget_generator(circuit_factory: Callable[..., nn.Module], n_qubits: int, seed: int) -> nn.Module:
    """The classical-generator control with exactly the parameter count of the circuit it replaces.

    Its random features and initial theta are drawn from the run's seed: each seed of a control
    is its own random generator, and the same seed gives the same one.
    """
    circuit = circuit_factory(n_qubits=n_qubits)
    frozen = not any(p.requires_grad for p in circuit.parameters())
    return ClassicalGenerator(n_qubits, n_params=circuit.ansatz.n_params, feature_seed=seed, freeze=frozen)


def equal_budget_mps(circuit_factory: Callable[..., nn.Module], n_qubits: int, seed: int) -> nn.Module:
    """The MPS-Born-machine control: the widest MPS over the n index bits within the circuit's parameter count, drawn from the run's seed."""
    circuit = circuit_factory(n_qubits=n_qubits)
    frozen = not any(p.requires_grad for p in circuit.parameters())
    return MPSBornMachine(n_qubits, max_params=circuit.ansatz.n_params, seed=seed, freeze=frozen)


def qt_learner(target: torch.nn.Module, generator: str, circuit: Callable, mapping: Callable, chunk: int, seed: int,
               cut_gradient: Sequence[str] = ()) -> Learner:  # fmt: skip
    """The learner of a QT config: circuit + mapping, or the control its ``generator`` names, at the same budget
    (``cut_gradient``: :class:`~qt.core.learners.QTLearner`'s)."""
    if generator == "classical":
        circuit = partial(equal_budget_generator, circuit, seed=seed)
    elif generator == "mps_born":
        circuit = partial(equal_budget_mps, circuit, seed=seed)
    learner = QTLearner(target, circuit=circuit, mapping=mapping, chunk=chunk, cut_gradient=tuple(cut_gradient))
    if generator == "hashed":  # the QT config's trainable count, shared by hashing instead
        return HashedLearner(target, n_values=learner.param_table()["trainable_params"], seed=seed)
    return learner
