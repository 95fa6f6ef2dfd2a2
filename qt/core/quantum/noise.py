"""Gate noise and readout error (``circuit.noise``): the model; its simulators are backends (:mod:`qt.core.quantum.backends`).

The noise model, after **every gate** (rotations, CNOTs, CU3s):

* ``depolarizing`` p1, after each one-qubit gate: rho -> (1 - p1) rho + p1/3 (X rho X + Y rho Y + Z rho Z)
  (PennyLane's ``DepolarizingChannel``);
* ``depolarizing_2q`` p2 (null: the same as p1), after each two-qubit gate on its two wires:
  rho -> (1 - p2) rho + p2/15 sum over the 15 two-qubit Paulis P != I(x)I of P rho P;
* ``amplitude_damping`` g, on every wire a gate touches: Kraus K0 = [[1, 0], [0, sqrt(1-g)]],
  K1 = [[0, sqrt g], [0, 0]] (PennyLane's ``AmplitudeDamping``);
* ``readout`` e: each measured bit flipped with probability e, independently (PennyLane's
  ``default.mixed`` ``readout_prob``), applied to the probabilities as the confusion matrix
  [[1-e, e], [e, 1-e]] on every bit.

Two simulations of the same model (``method``; ``auto``: density up to
:data:`DENSITY_MAX_QUBITS` qubits, trajectories above):

* ``density``: the exact noisy probabilities from a 2^n x 2^n density matrix in torch
  (:class:`~qt.core.quantum.backends.density.DensityMatrix`; any device; memory 4^n, so small circuits only);
* ``trajectories``: Monte-Carlo state vectors on the fused kernels
  (:class:`~qt.core.quantum.backends.trajectories.FusedTrajectories`).
  Each trajectory is the circuit with operators inserted after its gates, drawn independently
  of the angles: a Pauli with the channel's probabilities for depolarizing noise, and for
  amplitude damping one of A+- = K0 +- K1 = [[1, +-sqrt g], [0, sqrt(1-g)]] with probability 1/2
  each. E[A rho A^dagger] over the two is K0 rho K0^dagger + K1 rho K1^dagger (the unravelling by
  the Kraus operators (K0 +- K1)/sqrt 2, weighted by 1/q = 2), so the mean of a trajectory's
  |psi|^2 is exactly the channel's probabilities, and because the draws do not depend on the
  angles, the mean of its gradient is exactly the gradient of the noisy probabilities: the
  estimate is **unbiased** in value and gradient. A+- are invertible, which is what the adjoint
  method needs. A training step averages ``trajectories`` of them (an unnormalised estimate:
  amplitude damping's trajectories do not each sum to 1); evaluation uses
  ``eval_trajectories`` drawn from a fixed seed, so it is deterministic and leaves the training
  random stream alone.

Noise is simulated wherever the circuit's probabilities are (training, evaluation, export,
the shifted circuits of ``circuit.gradient=parameter_shift`` and ``spsa``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from qt.core.checks import number, settings, whole
from qt.errors import ConfigError

METHODS = ("auto", "trajectories", "density")
#: ``method=auto`` simulates circuits up to this many qubits as a density matrix
DENSITY_MAX_QUBITS = 8


def _rate(value, key: str, below_one: bool = False) -> float:
    x = number(value, key, hint="a probability in [0, 1]")
    if not 0 <= x <= 1 or (below_one and x >= 1):
        raise ConfigError(f"{key}={value} is not a probability: use a value in [0, {'1)' if below_one else '1]'}")
    return x


@dataclass(frozen=True)
class NoiseModel:
    """``circuit.noise``: rates after each gate, readout error, and how to simulate them."""

    depolarizing: float = 0.0
    depolarizing_2q: float | None = None
    amplitude_damping: float = 0.0
    readout: float = 0.0
    trajectories: int = 8
    eval_trajectories: int = 64
    method: str = "auto"

    @classmethod
    def from_config(cls, cfg) -> "NoiseModel":
        """Checks every value (one-line errors naming the key); ``None``: no noise."""
        cfg = settings(cfg, "circuit.noise", cls)
        method = cfg["method"]
        if method not in METHODS:
            raise ConfigError(f"unknown circuit.noise.method '{method}': use {', '.join(METHODS)}")
        p2 = cfg["depolarizing_2q"]
        return cls(
            depolarizing=_rate(cfg["depolarizing"], "circuit.noise.depolarizing"),
            depolarizing_2q=None if p2 is None else _rate(p2, "circuit.noise.depolarizing_2q"),
            amplitude_damping=_rate(cfg["amplitude_damping"], "circuit.noise.amplitude_damping", below_one=True),
            readout=_rate(cfg["readout"], "circuit.noise.readout"),
            trajectories=whole(cfg["trajectories"], "circuit.noise.trajectories", hint="state vectors averaged per training step"),
            eval_trajectories=whole(cfg["eval_trajectories"], "circuit.noise.eval_trajectories", hint="state vectors averaged for evaluation"),
            method=method,
        )

    @property
    def p2(self) -> float:
        return self.depolarizing if self.depolarizing_2q is None else self.depolarizing_2q

    @property
    def gate_noise(self) -> bool:
        return self.depolarizing > 0 or self.p2 > 0 or self.amplitude_damping > 0

    @property
    def any(self) -> bool:
        return self.gate_noise or self.readout > 0

    def resolve(self, n_qubits: int) -> str:
        """``density`` or ``trajectories`` for a circuit of ``n_qubits``."""
        if self.method != "auto":
            return self.method
        return "density" if n_qubits <= DENSITY_MAX_QUBITS else "trajectories"


class NoiseContext:
    """Shared by a circuit's noisy simulators: whether it trains (random stream) or evaluates (fixed seed)."""

    def __init__(self):
        self.training = True

    def generator(self) -> torch.Generator | None:
        """``None`` (torch's seeded global stream, which checkpoints save) in training; a fixed seed in evaluation."""
        return None if self.training else torch.Generator().manual_seed(0)


def apply_readout(probs: torch.Tensor, e: float) -> torch.Tensor:
    """Each bit of the basis-state index flipped with probability ``e``: the confusion matrix on every bit."""
    if e == 0:
        return probs
    n = int(round(math.log2(probs.shape[-1])))
    p = probs.reshape((2,) * n)
    for axis in range(n):
        p = (1 - e) * p + e * p.flip(axis)
    return p.reshape(probs.shape)
