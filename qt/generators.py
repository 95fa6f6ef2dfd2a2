"""Classical stand-ins for the circuit: the controls a Quantum-Train report needs.

A published reproduction of a Quantum-Train variant found that a fixed random vector in
place of the quantum part reached the same accuracy. :class:`ClassicalGenerator` makes
that question routine: it produces a probability vector over the same 2^n basis states,
fed to the same mapping model, from a trainable classical parameter vector of a chosen
size: ``generator=classical`` (``variant=classical_generator``) gives it exactly the
parameter count of the circuit it replaces, so a QT run and its control have the same budget.

    p = softmax(F @ theta),   F: fixed random features of the basis index (2^n x K), theta: K trainable

``freeze=true`` keeps theta at its random initialisation: the fixed-random-vector control
(``variant=fixed_vector``). qt draws F and the initial theta from the run's seed.
"""

from __future__ import annotations

import torch
from torch import nn

from qt.errors import ConfigError


class ClassicalGenerator(nn.Module):
    """Drop-in for :class:`~qt.quantum.QuantumCircuit`: ``forward()`` returns 2^n probabilities."""

    def __init__(self, n_qubits: int, n_params: int, feature_seed: int, freeze: bool = False):
        super().__init__()
        k = int(n_params)
        if k < 1:
            raise ConfigError(f"the classical generator needs at least one parameter (got {k})")
        self.n_qubits = int(n_qubits)
        g = torch.Generator().manual_seed(int(feature_seed))
        self.register_buffer("features", torch.randn(2**self.n_qubits, k, generator=g) / k**0.5, persistent=True)
        # logits ~ N(0, 1): a spread of probabilities like a random circuit's (Porter-Thomas)
        self.theta = nn.Parameter(torch.randn(k, generator=g), requires_grad=not freeze)

    def forward(self) -> torch.Tensor:
        return torch.softmax(self.features @ self.theta, dim=0)
