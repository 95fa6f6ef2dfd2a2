"""The circuit's gradient as a quantum processor could give it (``circuit.gradient``).

* ``adjoint`` (default): the exact gradient of the simulated probabilities (the adjoint
  method on the fused backend, autograd on the others); with ``circuit.shots`` the forward
  sees N-shot frequencies and the backward the exact gradient (straight-through).
* ``parameter_shift``: every angle's derivative from the circuit run at shifted angles, each
  run estimated with ``circuit.shots`` samples when set (exact when null). Shift rules
  (:func:`shift_terms`): an RY angle and each of a U3's three angles enter through a gate whose
  generator has eigenvalues +-1/2 (U3 = e^{i(phi+lambda)/2} RZ(phi) RY(theta) RZ(lambda)), the
  two-term rule d f = [f(x + pi/2) - f(x - pi/2)] / 2. In a CU3, phi and lambda enter as
  diag(1, e^{i phi}) on the target when the control is 1 (generator eigenvalues 0, 1; frequency 1):
  the same two-term rule; theta enters as a controlled RY (eigenvalues 0, +-1/2; frequencies
  1/2 and 1, PennyLane's ``CRY.parameter_frequencies = [(0.5, 1.0)]``,
  pennylane/ops/op_math/controlled_ops.py): the four-term rule
  d f = c+ [f(x + pi/2) - f(x - pi/2)] - c- [f(x + 3pi/2) - f(x - 3pi/2)], c+- = (sqrt 2 +- 1) / (4 sqrt 2),
  PennyLane's ``CRY`` recipe. tests/unit/test_hardware.py checks all of them against PennyLane's
  ``param_shift``.
* ``spsa`` (Spall 1992): one random direction D in {-1, +1}^P per step (``resamplings`` of them,
  averaged), g = [f(x + c_k D) - f(x - c_k D)] / (2 c_k) * D, c_k = ``perturbation`` / (k + 1)^``decay``
  (k: the training step, checkpointed with the circuit). The same estimator as PennyLane's
  ``spsa_grad`` with Rademacher directions (tests).

Only the circuit's gradient changes: the mapping and the target keep backpropagation, and the
estimate enters qt's optimizer like any gradient (``circuit.spsa`` sets only the estimator;
the step size is ``optimizer.lr``). Evaluation and export use the probabilities as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from qt.core.checks import number, settings, whole
from qt.core.quantum.ansatz import Ansatz
from qt.core.quantum.shots import sample_frequencies
from qt.errors import ConfigError

GRADIENTS = ("adjoint", "parameter_shift", "spsa")
TWO_TERM = ((math.pi / 2, 0.5), (-math.pi / 2, -0.5))
_CP, _CM = (math.sqrt(2) + 1) / (4 * math.sqrt(2)), (math.sqrt(2) - 1) / (4 * math.sqrt(2))
FOUR_TERM = ((math.pi / 2, _CP), (-math.pi / 2, -_CP), (3 * math.pi / 2, -_CM), (-3 * math.pi / 2, _CM))


@dataclass(frozen=True)
class SPSASettings:
    """``circuit.spsa``: the perturbation c, its decay exponent gamma (c_k = c / (k+1)^gamma), directions per step."""

    perturbation: float = 0.1
    decay: float = 0.101
    resamplings: int = 1

    @classmethod
    def from_config(cls, cfg) -> "SPSASettings":
        cfg = settings(cfg, "circuit.spsa", cls)
        c = number(cfg["perturbation"], "circuit.spsa.perturbation", hint="the perturbation size c > 0")
        if c <= 0:
            raise ConfigError(f"circuit.spsa.perturbation={c} must be > 0 (Spall's c; the toolkit's is 0.01)")
        decay = number(cfg["decay"], "circuit.spsa.decay", hint="c_k = c / (k+1)^decay; 0 keeps c fixed")
        if decay < 0:
            raise ConfigError(f"circuit.spsa.decay={decay} must be >= 0 (Spall's gamma is 0.101)")
        return cls(c, decay, whole(cfg["resamplings"], "circuit.spsa.resamplings", hint="directions averaged per step"))


def check_gradient(name: str) -> str:
    if name not in GRADIENTS:
        raise ConfigError(f"unknown circuit.gradient '{name}': use {', '.join(GRADIENTS)}")
    return name


def shift_terms(ansatz: Ansatz) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(angle index, shift, coefficient) of every term of every angle's shift rule (flat angle order, module docstring)."""
    index, shift, coeff = [], [], []
    for op in sorted((op for op in ansatz.ops() if op.kind.params), key=lambda op: op.offset):
        for k in range(op.kind.params):
            for s, c in FOUR_TERM if op.gate == "CU3" and k == 0 else TWO_TERM:  # a CU3's theta: a controlled RY
                index.append(op.offset + k)
                shift.append(s)
                coeff.append(c)
    return np.array(index, dtype=np.int64), np.array(shift), np.array(coeff)


def executions_per_step(gradient: str, ansatz: Ansatz, spsa: SPSASettings | None = None) -> int:
    """Circuit executions a processor needs per training step (each sub-circuit of a distributed ansatz counted).

    ``adjoint`` counts as ``parameter_shift`` (what a processor would need for the same gradient).
    """
    parts = max(len(ansatz.groups), 1)
    if gradient == "spsa":
        return parts * (1 + 2 * (spsa or SPSASettings()).resamplings)
    return parts + len(shift_terms(ansatz)[0])


class Estimator:
    """Probabilities and a parameter-shift or SPSA gradient for one circuit (``QuantumCircuit`` builds it)."""

    def __init__(self, gradient: str, simulator, ansatz: Ansatz, shapes, shots: int | None, spsa: SPSASettings):
        self.gradient, self.simulator, self.shots, self.spsa = gradient, simulator, shots, spsa
        self.shapes = [tuple(s) for s in shapes]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        if gradient == "parameter_shift":
            idx, shift, coeff = shift_terms(ansatz)
            self.terms = (torch.from_numpy(idx), torch.from_numpy(shift), torch.from_numpy(coeff))

    def evaluate(self, thetas: torch.Tensor) -> torch.Tensor:
        """Probabilities (B, 2^n) at each row of ``thetas`` (B, P), sampled with ``shots`` when set."""
        with torch.no_grad():
            probs = torch.stack([self.simulator.probs([x.reshape(s) for x, s in zip(t.split(self.sizes), self.shapes)]) for t in thetas])
        return probs if self.shots is None else sample_frequencies(probs, self.shots)

    def value(self, theta: torch.Tensor) -> torch.Tensor:
        return self.evaluate(theta.unsqueeze(0))[0]

    def grad(self, theta: torch.Tensor, dy: torch.Tensor, k: int = 0) -> torch.Tensor:
        """The estimate of d(sum dy * p)/d theta (``k``: the training step, for SPSA's schedule)."""
        dy = dy.detach().double()
        if self.gradient == "parameter_shift":
            idx, shift, coeff = self.terms
            thetas = theta.double().unsqueeze(0).repeat(len(idx), 1)
            thetas[torch.arange(len(idx)), idx] += shift
            values = self.evaluate(thetas.to(theta.dtype)).double() @ dy
            return torch.zeros(theta.numel(), dtype=torch.float64).index_add_(0, idx, coeff * values).to(theta.dtype)
        c = self.spsa.perturbation / (k + 1) ** self.spsa.decay
        total = torch.zeros(theta.numel(), dtype=torch.float64)
        for _ in range(self.spsa.resamplings):
            delta = torch.randint(0, 2, (theta.numel(),)).double() * 2 - 1
            thetas = torch.stack([theta.double() + c * delta, theta.double() - c * delta]).to(theta.dtype)
            plus, minus = (self.evaluate(thetas).double() @ dy).unbind()
            total += (plus - minus) / (2 * c) * delta
        return (total / self.spsa.resamplings).to(theta.dtype)


class _Estimated(torch.autograd.Function):
    @staticmethod
    def forward(ctx, estimator: Estimator, k: int, theta: torch.Tensor) -> torch.Tensor:
        ctx.estimator, ctx.k, ctx.theta = estimator, k, theta.detach().clone()
        return estimator.value(ctx.theta)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        return None, None, ctx.estimator.grad(ctx.theta, dy, ctx.k)


def estimated_probs(estimator: Estimator, angles: list[torch.Tensor], step: int = 0) -> torch.Tensor:
    """The circuit's (sampled) probabilities at training step ``step``, whose gradient is the estimator's, not autograd's."""
    return _Estimated.apply(estimator, step, torch.cat([a.reshape(-1) for a in angles]))
