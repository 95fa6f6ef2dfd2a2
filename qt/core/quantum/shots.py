"""Finite shots: the one home of how qt turns exact probabilities into what a quantum device returns.

A device run of ``shots`` repetitions returns counts of basis states; their frequencies are an
unbiased estimate of the probabilities. :func:`sample_frequencies` draws them for one row or a batch
of rows (the gradient estimators' shifted circuits); :func:`sample_probs` is the training forward with
``circuit.shots`` and the adjoint gradient: the frequencies forward, the exact probabilities' gradient
backward (straight-through). Draws come from torch's seeded stream (``generator`` or the global one),
which checkpoints save and resume restores.

Up to :data:`NUMPY_SHOTS` shots, ``torch.multinomial`` (O(shots)); above, numpy's multinomial (O(2^n) a
row), seeded from torch's stream. Before 2026-12-07 the straight-through path had its own sampler that
used ``torch.multinomial`` at any count; it draws the same samples up to 4,096 shots (every shots run in
docs/results uses 100) and, above, now draws as the estimators do.
"""

from __future__ import annotations

import numpy as np
import torch

#: above this many shots, counts are drawn by numpy's binomial-conditional multinomial (O(2^n) a row), below by torch.multinomial (O(shots))
NUMPY_SHOTS = 4096


def sample_frequencies(probs: torch.Tensor, shots: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``probs`` (2^n,) or (B, 2^n) replaced by the frequencies of ``shots`` samples a row (rows normalised first); no gradient."""
    p = probs.detach().double().clamp_min(0)
    rows = p.reshape(-1, p.shape[-1])
    rows = rows / rows.sum(-1, keepdim=True)
    b, k = rows.shape
    if shots <= NUMPY_SHOTS:
        idx = torch.multinomial(rows, shots, replacement=True, generator=generator)
        idx = idx + torch.arange(b).unsqueeze(1) * k
        counts = torch.bincount(idx.reshape(-1), minlength=b * k).reshape(b, k)
    else:  # seeded from torch's stream, so checkpoints restore it
        seed = int(torch.randint(0, 2**62, (), generator=generator))
        counts = torch.from_numpy(np.random.default_rng(seed).multinomial(shots, rows.numpy()))
    return (counts.to(probs.dtype) / shots).reshape(probs.shape)


def sample_probs(probs: torch.Tensor, shots: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Finite-shot estimate of ``probs`` with a straight-through gradient.

    Forward: the frequencies of ``shots`` samples (:func:`sample_frequencies`; fresh samples at each
    call). Backward: the gradient of the exact probabilities (d estimate / d theta := d p / d theta),
    which is the expectation of the estimator's gradient since the frequencies are unbiased for p.
    """
    return probs + (sample_frequencies(probs, shots, generator) - probs).detach()
