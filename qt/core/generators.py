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

:class:`MPSBornMachine` (``generator=mps_born``, ``variant=mps_born``) is the structured
correlated control: a matrix product state over the n index bits, p_i = psi(i)^2 normalised,
with the largest bond dimension whose parameter count does not exceed the circuit's.
"""

from __future__ import annotations

import torch
from torch import nn

from qt.errors import ConfigError


class ClassicalGenerator(nn.Module):
    """Drop-in for :class:`~qt.core.quantum.QuantumCircuit`: ``forward()`` returns 2^n probabilities."""

    generator = "classical"

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


def mps_bonds(n_sites: int, bond: int) -> list[int]:
    """The bond dimensions of an open-boundary MPS over ``n_sites`` bits at most ``bond`` wide: ``[1, ..., 1]``
    (n + 1 of them), each capped where the state cannot use more (2^k from the left, 2^(n - k) from the right)."""
    return [min(int(bond), 2**k, 2 ** (n_sites - k)) for k in range(n_sites + 1)]


def mps_params(n_sites: int, bond: int) -> int:
    """The parameter count of a real MPS over ``n_sites`` bits of bond dimension ``bond``: sum of D_k * 2 * D_k+1."""
    d = mps_bonds(n_sites, bond)
    return sum(2 * d[k] * d[k + 1] for k in range(n_sites))


class MPSBornMachine(nn.Module):
    """A matrix product state Born machine over the n index bits: the classical correlated control a tensor-network reviewer names.

        psi(i) = A_1[i_1] A_2[i_2] ... A_n[i_n],   p_i = psi(i)^2 / sum_j psi(j)^2

    with real tensors ``A_k`` of shape ``(D_k-1, 2, D_k)`` (open boundary, bit 1 the most significant, as the
    circuit's index), exact and classical. ``bond`` is the largest bond dimension whose parameter count does not
    exceed ``max_params`` (the circuit's, so QT and this control train as many generator parameters or the MPS
    fewer; both counts are reported). Each tensor starts as the uniform state's (1 on bond index 0 for both bit values)
    plus N(0, 0.25 / n) noise from ``seed``: the log-amplitudes' spread then does not grow with n, and p * 2^n has a
    std of ~1 at 13 bits, as a random circuit's (Porter-Thomas; 1.4 for RY+CNOT x 16 at init) where plain Gaussian
    tensors put 100x the uniform probability on single states. ``forward()`` contracts left to right, keeping the
    (2^k, D_k) partial amplitudes.
    """

    generator = "mps_born"

    def __init__(self, n_qubits: int, max_params: int, seed: int, freeze: bool = False):
        super().__init__()
        n = int(n_qubits)
        if mps_params(n, 1) > int(max_params):
            raise ConfigError(f"an MPS over {n} bits needs at least {mps_params(n, 1)} parameters, over the circuit's {int(max_params)}: use more n_blocks")
        bond = 1
        while bond < 2 ** (n // 2) and mps_params(n, bond + 1) <= int(max_params):
            bond += 1
        self.n_qubits, self.bond = n, bond
        d = mps_bonds(n, bond)
        g = torch.Generator().manual_seed(int(seed))
        tensors = []
        for k in range(n):
            a = torch.randn(d[k], 2, d[k + 1], generator=g) * (0.25 / n) ** 0.5
            a[0, :, 0] += 1.0
            tensors.append(nn.Parameter(a, requires_grad=not freeze))
        self.tensors = nn.ParameterList(tensors)

    def amplitudes(self) -> torch.Tensor:
        """psi over the 2^n basis states (unnormalised)."""
        psi = self.tensors[0].reshape(2, -1)
        for a in self.tensors[1:]:
            psi = torch.einsum("id,dbe->ibe", psi, a).reshape(psi.shape[0] * 2, a.shape[2])
        return psi.reshape(-1)

    def forward(self) -> torch.Tensor:
        psi = self.amplitudes()
        p = psi * psi
        return p / p.sum()


def allocate_buckets(sizes: list[int], total: int) -> list[int]:
    """Split ``total`` shared values over tensors of ``sizes`` in proportion (largest remainders), each at least 1 and at most its size.

    HashedNets compresses every layer by the same factor (Chen et al., 2015; from the paper, not checked against code): a
    tensor of 1/5 of the weights gets 1/5 of the values.
    """
    if not len(sizes) <= total <= sum(sizes):
        raise ConfigError(
            f"hashing {sum(sizes):,} weights in {len(sizes)} tensors needs between {len(sizes)} and {sum(sizes):,} shared values "
            f"(got {total:,}): raise the QT config's budget (n_blocks, mapping widths) or use a smaller target"
        )
    exact = [total * s / sum(sizes) for s in sizes]
    counts = [min(max(1, int(e)), s) for e, s in zip(exact, sizes)]
    while sum(counts) < total:  # one more value to the tensor furthest below its share that has room
        i = min((i for i in range(len(sizes)) if counts[i] < sizes[i]), key=lambda i: counts[i] - exact[i])
        counts[i] += 1
    while sum(counts) > total:  # (the floor of 1 can overshoot) one less from the furthest above its share
        i = max((i for i in range(len(sizes)) if counts[i] > 1), key=lambda i: counts[i] - exact[i])
        counts[i] -= 1
    return counts


class HashedWeights(nn.Module):
    """HashedNets (Chen, Wilson, Tyree, Weinberger, Chen, ICML 2015): every weight of the target is a shared value times a sign.

    Weight j of tensor t is ``sign_t[j] * values_t[bucket_t[j]]``: ``bucket_t`` a fixed random
    hash of the position into the tensor's ``B_t`` values (:func:`allocate_buckets`, B in all),
    ``sign_t`` a fixed random ±1 (the sign hash ξ that makes the inner products unbiased).
    A seeded random assignment stands in for the paper's xxHash: the same distribution of
    hashes, and reproducible from the run's seed. The values start at the target's own
    default-init scale (its std, or its constant: a norm layer's scale of 1), so the generated
    network starts as the target's PyTorch init would. ``forward()`` returns all M weights, flat.
    """

    def __init__(self, sizes: list[int], n_values: int, seed: int, init_stats: list[tuple[float, float]]):
        super().__init__()
        g = torch.Generator().manual_seed(int(seed))
        counts = allocate_buckets([int(s) for s in sizes], int(n_values))
        index, sign, values, offset = [], [], [], 0
        for size, count, (std, constant) in zip(sizes, counts, init_stats):
            index.append(torch.randint(count, (size,), generator=g) + offset)
            sign.append(torch.randint(2, (size,), generator=g).float() * 2 - 1)
            values.append(torch.randn(count, generator=g) * std + constant)
            if std == 0:  # a constant init (a norm layer's scale): no sign flips
                sign[-1].fill_(1.0)
            offset += count
        self.register_buffer("index", torch.cat(index), persistent=True)
        self.register_buffer("sign", torch.cat(sign), persistent=True)
        self.values = nn.Parameter(torch.cat(values))
        self.counts = counts

    def forward(self) -> torch.Tensor:
        return self.values[self.index] * self.sign


@torch.no_grad()
def effective_dimension(generator: nn.Module, h: float = 1e-5, rtol: float = 1e-8) -> int:
    """The dimension of the family of distributions a generator moves in near its parameters: the numerical rank of
    the Jacobian dp/dtheta of its 2^n probabilities over its trainable parameters.

    Central differences with step ``h`` along each trainable parameter (2 x P forward calls); the rank counts the
    singular values above ``rtol`` times the largest. Meant for a float64 generator (h 1e-5, rtol 1e-8 leave ~6
    orders of magnitude between the finite-difference error and the threshold): there a product state over 13 bits
    gives 13 whatever its angle count, an MPS its parameter count less its gauge freedom. 0 without trainable
    parameters (a frozen circuit, the fixed vector).
    """
    columns = []
    for p in generator.parameters():
        if not p.requires_grad:
            continue
        flat = p.view(-1)
        for k in range(flat.numel()):
            old = float(flat[k])
            flat[k] = old + h
            up = generator()
            flat[k] = old - h
            down = generator()
            flat[k] = old
            columns.append((up - down).double() / (2 * h))
    if not columns:
        return 0
    s = torch.linalg.svdvals(torch.stack(columns, dim=1))
    return int((s > rtol * s[0]).sum()) if float(s[0]) > 0 else 0
