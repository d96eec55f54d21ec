"""ReSSL loss against an independent numpy formula (value and gradient), and its input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cassle.losses.ressl import ressl_loss_func


def _numpy_ressl(q: np.ndarray, k: np.ndarray, queue: np.ndarray, tq: float, tk: float) -> float:
    """The paper's relational cross-entropy, one sample and one queue row at a time."""
    total = 0.0
    for i in range(q.shape[0]):
        qi = q[i] / np.sqrt((q[i] ** 2).sum())
        ki = k[i] / np.sqrt((k[i] ** 2).sum())
        sq = [qi @ (r / np.sqrt((r**2).sum())) / tq for r in queue]
        sk = [ki @ (r / np.sqrt((r**2).sum())) / tk for r in queue]
        zq = math.log(sum(math.exp(s) for s in sq))
        zk = sum(math.exp(s) for s in sk)
        for j in range(len(queue)):
            p = math.exp(sk[j]) / zk
            total -= p * (sq[j] - zq)
    return total / q.shape[0]


def test_hand_computed_two_row_queue() -> None:
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[0.0, 2.0]])  # unit-normalised to (0, 1)
    queue = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tq, tk = 0.5, 0.25
    # teacher: logits (0, 4) -> p = (1, e^4) / (1 + e^4); student: logits (2, 0)
    p1 = 1 / (1 + math.exp(4.0))
    log_s1 = 2.0 - math.log(math.exp(2.0) + 1.0)
    log_s2 = 0.0 - math.log(math.exp(2.0) + 1.0)
    expected = -(p1 * log_s1 + (1 - p1) * log_s2)
    assert ressl_loss_func(q, k, queue, tq, tk).item() == pytest.approx(expected, rel=1e-6)


def test_matches_numpy_loops() -> None:
    rng = np.random.default_rng(0)
    q, k, queue = rng.normal(size=(5, 4)), rng.normal(size=(5, 4)), rng.normal(size=(7, 4))
    got = ressl_loss_func(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(queue), 0.1, 0.04)
    assert got.item() == pytest.approx(_numpy_ressl(q, k, queue, 0.1, 0.04), rel=1e-10)


def test_gradient_matches_finite_differences_and_flows_only_into_q() -> None:
    rng = np.random.default_rng(1)
    q = torch.from_numpy(rng.normal(size=(3, 4))).requires_grad_(True)
    k = torch.from_numpy(rng.normal(size=(3, 4))).requires_grad_(True)
    queue = torch.from_numpy(rng.normal(size=(6, 4))).requires_grad_(True)
    ressl_loss_func(q, k, queue, 0.2, 0.05).backward()
    assert k.grad is None and queue.grad is None
    # central differences of the independent numpy formula
    h = 1e-6
    numeric = np.zeros((3, 4))
    qn, kn, bank = q.detach().numpy(), k.detach().numpy(), queue.detach().numpy()
    for i in range(3):
        for d in range(4):
            plus, minus = qn.copy(), qn.copy()
            plus[i, d] += h
            minus[i, d] -= h
            numeric[i, d] = (_numpy_ressl(plus, kn, bank, 0.2, 0.05) - _numpy_ressl(minus, kn, bank, 0.2, 0.05)) / (
                2 * h
            )
    np.testing.assert_allclose(q.grad.numpy(), numeric, rtol=1e-5, atol=1e-8)


def test_minimum_when_student_relation_equals_teacher_relation() -> None:
    # with equal temperatures and q = k the loss is the entropy of the teacher's relation: its minimum over q
    g = torch.Generator().manual_seed(0)
    k = torch.randn(4, 8, generator=g, dtype=torch.float64)
    queue = torch.randn(10, 8, generator=g, dtype=torch.float64)
    at_k = ressl_loss_func(k.clone(), k, queue, 0.1, 0.1)
    p = torch.softmax(torch.nn.functional.normalize(k, dim=1) @ torch.nn.functional.normalize(queue, dim=1).T / 0.1, 1)
    entropy = -(p * p.log()).sum(1).mean()
    assert at_k.item() == pytest.approx(entropy.item(), rel=1e-10)
    other = ressl_loss_func(k + 0.5 * torch.randn(4, 8, generator=g, dtype=torch.float64), k, queue, 0.1, 0.1)
    assert other > at_k


def test_half_precision_inputs_give_a_float32_loss() -> None:
    q, k, queue = torch.randn(4, 8).half(), torch.randn(4, 8).half(), torch.randn(16, 8)
    loss = ressl_loss_func(q, k, queue)
    ref = ressl_loss_func(q.float(), k.float(), queue)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(ref.item(), rel=1e-2)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="same shape"):
        ressl_loss_func(torch.randn(4, 8), torch.randn(4, 7), torch.randn(10, 8))
    with pytest.raises(ValueError, match="queue"):
        ressl_loss_func(torch.randn(4, 8), torch.randn(4, 8), torch.randn(10, 7))
    with pytest.raises(ValueError, match="queue"):
        ressl_loss_func(torch.randn(4, 8), torch.randn(4, 8), torch.randn(0, 8))
    with pytest.raises(ValueError, match="temperature"):
        ressl_loss_func(torch.randn(4, 8), torch.randn(4, 8), torch.randn(10, 8), temperature_k=0.0)
    with pytest.raises(ValueError, match="2-D"):
        ressl_loss_func(torch.randn(8), torch.randn(8), torch.randn(10, 8))
