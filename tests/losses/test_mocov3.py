"""MoCo v3 loss against an independent numpy formula (value and gradient), the rank offset, and input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cassle.losses.mocov3 import mocov3_loss_func


def _np_loss(q: np.ndarray, k: np.ndarray, t: float, rank: int) -> float:
    """Explicit loops: 2T * mean_i -log softmax_j(cos(q_i, k_j) / T)[rank * B + i]."""
    n = q.shape[0]
    total = 0.0
    for i in range(n):
        qi = q[i] / np.linalg.norm(q[i])
        logits = [float(qi @ (kj / np.linalg.norm(kj))) / t for kj in k]
        log_den = math.log(sum(math.exp(v) for v in logits))
        total += log_den - logits[rank * n + i]
    return 2 * t * total / n


def _np_grad(q: np.ndarray, k: np.ndarray, t: float, rank: int) -> np.ndarray:
    """dL/dq from the softmax-minus-one-hot rule and the Jacobian of the l2 normalisation."""
    n = q.shape[0]
    kn = k / np.linalg.norm(k, axis=1, keepdims=True)
    grad = np.zeros_like(q)
    for i in range(n):
        norm = np.linalg.norm(q[i])
        qi = q[i] / norm
        logits = kn @ qi / t
        soft = np.exp(logits - logits.max())
        soft /= soft.sum()
        soft[rank * n + i] -= 1.0
        g_unit = (2 * t / n) * (soft @ kn) / t  # dL/d(q_i / ||q_i||)
        grad[i] = (np.eye(q.shape[1]) - np.outer(qi, qi)) @ g_unit / norm
    return grad


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(4, 5)), rng.normal(size=(8, 5))  # 4 queries, keys of 2 "processes"


def test_value_matches_loops_single_process(data) -> None:
    q, k = data
    got = mocov3_loss_func(torch.from_numpy(q), torch.from_numpy(k[:4]), temperature=0.3)
    assert got.item() == pytest.approx(_np_loss(q, k[:4], 0.3, 0), rel=1e-10)


@pytest.mark.parametrize("rank", [0, 1])
def test_value_and_gradient_with_gathered_keys(data, rank: int) -> None:
    q, k = data
    tq = torch.from_numpy(q).requires_grad_(True)
    tk = torch.from_numpy(k).requires_grad_(True)
    loss = mocov3_loss_func(tq, tk, temperature=0.2, rank=rank)
    assert loss.item() == pytest.approx(_np_loss(q, k, 0.2, rank), rel=1e-10)
    loss.backward()
    np.testing.assert_allclose(tq.grad.numpy(), _np_grad(q, k, 0.2, rank), rtol=1e-8, atol=1e-12)
    assert tk.grad is None  # keys are constants (momentum encoder)


def test_rank_selects_the_positive(data) -> None:
    q, k = data
    tq, tk = torch.from_numpy(q), torch.from_numpy(k)
    # the rank-1 loss of keys [a, b] is the rank-0 loss of keys [b, a]
    swapped = torch.cat([tk[4:], tk[:4]])
    assert mocov3_loss_func(tq, tk, rank=1).item() == pytest.approx(mocov3_loss_func(tq, swapped, rank=0).item())


def test_hand_computed_orthonormal_case() -> None:
    # q_i = k_i = e_i: the positive logit is 1/T, the M - 1 others 0
    t, m = 0.5, 3
    e = torch.eye(m)
    expected = 2 * t * math.log(1 + (m - 1) * math.exp(-1 / t))
    assert mocov3_loss_func(e, e, temperature=t).item() == pytest.approx(expected, rel=1e-6)
    # scaling the inputs changes nothing (both are l2-normalised)
    assert mocov3_loss_func(3 * e, 0.1 * e, temperature=t).item() == pytest.approx(expected, rel=1e-6)


def test_input_errors() -> None:
    q = torch.randn(4, 5)
    with pytest.raises(ValueError, match="2-D"):
        mocov3_loss_func(q[0], q)
    with pytest.raises(ValueError, match="feature width"):
        mocov3_loss_func(q, torch.randn(4, 6))
    with pytest.raises(ValueError, match="world_size x B"):
        mocov3_loss_func(q, torch.randn(6, 5))
    with pytest.raises(ValueError, match="rank 2 outside"):
        mocov3_loss_func(q, torch.randn(8, 5), rank=2)
    with pytest.raises(ValueError, match="temperature"):
        mocov3_loss_func(q, q, temperature=0.0)
