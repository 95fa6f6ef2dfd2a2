"""The fused MLP mapping (qt.core.mapping_kernels.mlp_apply / mlp_gradients) against torch's layers, the rule that
picks it, its thread-count independence and its memory estimate."""

import numpy as np
import pytest
import torch

from qt.core import mapping_kernels as k
from qt.core.mapping import FUSED_MAX_CHUNK, FUSED_ROWS, MappingModel, MLPMapping, basis_bits, mapping_size, runs_fused


def both_paths(n, hidden, activation, chunk, rows, dtype, signed, seed=0):
    """(fused, torch) outputs and gradients (x first, then every parameter) of one MappingModel on the same rows."""
    torch.manual_seed(seed)
    model = MappingModel(n, hidden, activation, chunk).to(dtype)
    with torch.no_grad():  # away from the default init so that every unit is active somewhere and none everywhere
        for p in model.parameters():
            p.mul_(1.5).add_(0.05)
    x = torch.randn(rows, dtype=dtype)
    g = torch.randn(rows, chunk, dtype=dtype)
    values = (-1.0, 1.0) if signed else (0.0, 1.0)
    results = []
    for fused in (True, False):
        xi = x.clone().requires_grad_(True)
        model.zero_grad()
        rows_in = torch.cat([basis_bits(n, rows, signed).to(dtype), xi[:, None]], dim=1)
        out = model.fused(n, values, xi) if fused else model(rows_in)
        (out * g).sum().backward()
        results.append((out.detach(), [xi.grad, *[p.grad.clone() for p in model.parameters()]]))
    return results


CASES = [  # (qubits, hidden, activation, chunk, rows): qt's presets and their shapes, odd row counts, small n
    (12, (20, 20), "relu", 1, 4000),
    (11, (16, 16), "relu", 1, 2047),
    (9, (7, 7), "relu", 1, 300),
    (10, (4, 20, 4), "none", 1, 1024),
    (9, (20, 40, 20), "relu", 3, 511),
    (8, (20,), "tanh", 16, 250),
    (7, (8, 8), "gelu", 2, 128),
    (7, (8, 8), "silu", 1, 100),
    (5, (20, 20), "relu", 1, 32),
    (3, (5,), "relu", 4, 7),
    (10, (), "relu", 2, 1000),
]


@pytest.mark.parametrize("n,hidden,activation,chunk,rows", CASES)
@pytest.mark.parametrize("signed", [False, True])
def test_fused_mlp_equals_torch_float64(n, hidden, activation, chunk, rows, signed):
    (out, grads), (ref, ref_grads) = both_paths(n, hidden, activation, chunk, rows, torch.float64, signed)
    assert out.shape == ref.shape == (rows, chunk)
    assert torch.allclose(out, ref, rtol=1e-12, atol=1e-12), float((out - ref).abs().max())
    for a, b in zip(grads, ref_grads):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10 * float(b.abs().max())), float((a - b).abs().max())


@pytest.mark.parametrize("n,hidden,activation,chunk,rows", [CASES[0], CASES[3], CASES[5], CASES[8]])
def test_fused_mlp_equals_torch_float32_to_rounding(n, hidden, activation, chunk, rows):
    (out, grads), (ref, ref_grads) = both_paths(n, hidden, activation, chunk, rows, torch.float32, False)
    assert out.dtype == torch.float32
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5), float((out - ref).abs().max())
    for a, b in zip(grads, ref_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max())), float((a - b).abs().max())


def test_fused_mlp_is_the_same_on_any_thread_count(monkeypatch):
    """Groups of blocks are a fixed partition, reduced in a fixed order: 1, 2 and 3 threads give the same bits."""
    monkeypatch.setattr(k, "THREAD_ROWS", 1000)
    rng = np.random.default_rng(0)
    n, widths = 14, np.array([15, 20, 20, 1])
    params = rng.standard_normal(sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))).astype(np.float32)
    x, g = rng.random(10_000).astype(np.float32), rng.standard_normal((10_000, 1)).astype(np.float32)
    spec = (n, widths, params, k.ACTIVATION_CODES["relu"], np.float32(0), np.float32(1))
    before = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            runs.append((k.mlp_apply(x, *spec), *k.mlp_gradients(x, g, *spec)))
    finally:
        torch.set_num_threads(before)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert np.array_equal(a, b)


def test_the_mapping_runs_fused_where_the_rule_says_and_gives_the_same_weights(monkeypatch):
    assert runs_fused(FUSED_ROWS, 1, "cpu") and not runs_fused(FUSED_ROWS - 1, 1, "cpu")
    assert not runs_fused(FUSED_ROWS, FUSED_MAX_CHUNK + 1, "cpu") and not runs_fused(10**6, 1, "cuda")
    calls = []
    monkeypatch.setattr(k, "mlp_apply", lambda *a, _f=k.mlp_apply: calls.append(1) or _f(*a))
    torch.manual_seed(0)
    mapping = MLPMapping(13, 6690, hidden=[16, 16], scale="none")
    calls.clear()  # the kernels' warm-up at construction
    probs = torch.softmax(torch.randn(2**13, dtype=torch.float64), 0).float().requires_grad_(True)
    fused = mapping(probs)
    assert calls == [1]
    fused.square().sum().backward()
    fused_grads = [probs.grad.clone(), *[p.grad.clone() for p in mapping.parameters()]]
    probs.grad = None
    mapping.zero_grad()
    monkeypatch.setattr("qt.core.mapping.FUSED_ROWS", 10**9)
    ref = mapping(probs)
    assert calls == [1]
    ref.square().sum().backward()
    assert torch.allclose(fused, ref, rtol=1e-5, atol=1e-6)
    ref_grads = [probs.grad, *[p.grad for p in mapping.parameters()]]
    scale = max(float(b.abs().max()) for b in ref_grads)  # the last bias's is ~0: centring cancels it
    for a, b in zip(fused_grads, ref_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * scale), float((a - b).abs().max())


def test_memory_estimate_counts_no_activations_for_the_fused_mapping():
    mlp = {"_target_": "qt.core.mapping.MLPMapping", "hidden": [20, 20]}
    params, fused = mapping_size(mlp, 20, 1, "cpu")
    same, layers = mapping_size(mlp, 20, 1, "cuda")
    assert params == same == 22 * 20 + 21 * 20 + 21
    assert fused == 2**20 * 4 * 4  # x, its gradient, the output and its gradient
    assert layers == 2**20 * (21 + 40 + 1) * 4 * 3
    assert mapping_size(mlp, 10, 64, "cpu")[1] == mapping_size(mlp, 10, 64, "cuda")[1]  # wide chunks: torch's layers


def test_a_forked_process_gets_its_own_threads(monkeypatch):
    """A pool made before a fork has no threads in the child: the child makes its own (else its work would wait forever)."""
    import multiprocessing

    monkeypatch.setattr(k, "THREAD_ROWS", 1000)
    rng = np.random.default_rng(1)
    n, widths = 14, np.array([15, 8, 1])
    params = rng.standard_normal(8 * 16 + 9).astype(np.float32)
    x = rng.random(10_000).astype(np.float32)
    spec = (n, widths, params, 0, np.float32(0), np.float32(1))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        expected = k.mlp_apply(x, *spec)  # the pool now exists in this process
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(1) as pool:
            got = pool.apply_async(_apply_in_child, (x, spec)).get(timeout=60)
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(got, expected)


def _apply_in_child(x, spec):
    torch.set_num_threads(2)
    return k.mlp_apply(x, *spec)
