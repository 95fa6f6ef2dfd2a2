"""Knowledge distillation and finite-shot training."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from qt.core.learners import QTLearner
from qt.training.losses import CrossEntropy, Distillation
from qt.core.mapping import MLPMapping
from qt.core.targets import SimpleCNN
from qt.core.quantum import QuantumCircuit
from qt.core.quantum.shots import sample_probs


def teacher_and_batch():
    torch.manual_seed(0)
    teacher = SimpleCNN(channels=[4, 8], kernel_size=3, hidden=[30])
    return teacher, torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))


def test_kd_with_alpha_zero_is_cross_entropy():
    teacher, x, y = teacher_and_batch()
    logits = torch.randn(8, 10)
    assert torch.equal(Distillation(teacher, alpha=0.0)(logits, y, x), CrossEntropy()(logits, y))


def test_kd_formula():
    teacher, x, y = teacher_and_batch()
    logits = torch.randn(8, 10)
    t, a = 3.0, 0.9
    with torch.no_grad():
        p_t = F.softmax(teacher(x) / t, dim=1)
    p_s = F.softmax(logits / t, dim=1)
    kl = (p_t * (p_t.log() - p_s.log())).sum(1).mean()
    expected = (1 - a) * F.cross_entropy(logits, y) + a * t * t * kl
    assert torch.allclose(Distillation(teacher, temperature=t, alpha=a)(logits, y, x), expected, atol=1e-6)


def test_kd_gradient_reaches_the_student_not_the_teacher():
    teacher, x, y = teacher_and_batch()
    loss_fn = Distillation(teacher)
    loss_fn.train()
    assert not loss_fn.teacher.training  # the teacher stays in eval mode
    student = QTLearner(SimpleCNN(), partial(QuantumCircuit, n_blocks=1), partial(MLPMapping, hidden=[8]))
    loss_fn(student(x, student.weights()), y, x).backward()
    assert all(p.grad is not None for p in student.trainable_parameters())
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())


def test_kd_needs_a_teacher():
    from qt.errors import ConfigError

    with pytest.raises(ConfigError, match="loss.teacher"):
        Distillation(None)


def test_sampled_probabilities_are_unbiased():
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(16, dtype=torch.float64), 0)
    draws = torch.stack([sample_probs(p, 200) for _ in range(4000)])
    assert torch.allclose(draws.sum(1), torch.ones(4000, dtype=torch.float64))
    # mean of 4000 draws of 200 shots: standard error sqrt(p(1-p)/800000) < 6e-4
    assert (draws.mean(0) - p).abs().max() < 3e-3
    one = draws[0]
    assert torch.all((one * 200 - (one * 200).round()).abs() < 1e-9)  # frequencies of 200 shots


def test_shots_use_a_straight_through_gradient_and_exact_eval():
    torch.manual_seed(0)
    c = QuantumCircuit(4, 2, shots=50)
    w = torch.randn(16)
    exact = c.simulator.probs(list(c.angles))
    (exact * w).sum().backward()
    g_exact = [a.grad.clone() for a in c.angles]
    c.zero_grad()
    sampled = c()
    assert not torch.allclose(sampled, exact)  # a 50-shot estimate
    (sampled * w).sum().backward()
    assert all(torch.allclose(a.grad, g) for a, g in zip(c.angles, g_exact))
    c.eval()
    assert torch.allclose(c(), exact)  # evaluation / export: the exact distribution
