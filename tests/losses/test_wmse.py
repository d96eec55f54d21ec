"""W-MSE: Cholesky whitening and the whitened MSE against independent numpy formulas (value, gradient)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cassle.losses.wmse import normalized_mse, subbatch_partition, whiten, wmse_loss_func


def _numpy_whiten(x: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """Whitening by the inverse Cholesky factor, written out with numpy."""
    n, d = x.shape
    mean = x.sum(axis=0) / n
    c = x - mean
    cov = np.zeros((d, d))
    for i in range(n):
        cov += np.outer(c[i], c[i])
    cov = (1 - eps) * cov / (n - 1) + eps * np.eye(d)
    lower = np.linalg.cholesky(cov)
    return np.stack([np.linalg.solve(lower, row) for row in c])  # L w = x_c  <=>  w = L^-1 x_c


def _numpy_wmse(views: list[np.ndarray], parts: list[np.ndarray], eps: float = 0.0) -> float:
    white = []
    for v in views:
        w = np.zeros_like(v)
        for idx in parts:
            w[idx] = _numpy_whiten(v[idx], eps)
        white.append(w)
    losses = []
    for a in range(len(views)):
        for b in range(a + 1, len(views)):
            total = 0.0
            for i in range(views[0].shape[0]):
                u = white[a][i] / np.linalg.norm(white[a][i])
                t = white[b][i] / np.linalg.norm(white[b][i])
                total += ((u - t) ** 2).sum()
            losses.append(total / views[0].shape[0])
    return float(np.mean(losses))


def test_whiten_matches_numpy_and_gives_identity_covariance() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3)) @ np.array([[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.2]]) + 5.0
    got = whiten(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, _numpy_whiten(x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.cov(got.T), np.eye(3), atol=1e-10)
    np.testing.assert_allclose(got.mean(axis=0), np.zeros(3), atol=1e-12)
    # Cholesky (not ZCA) whitening: output column j only mixes input columns <= j
    x2 = x.copy()
    x2[:, 2] = rng.normal(size=12)
    np.testing.assert_allclose(whiten(torch.from_numpy(x2)).numpy()[:, :2], got[:, :2], atol=1e-10)


def test_whiten_shrinkage_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4))  # 3 rows, 4 dims: singular without shrinkage
    np.testing.assert_allclose(whiten(torch.from_numpy(x), eps=0.1).numpy(), _numpy_whiten(x, 0.1), rtol=1e-10)
    collapsed = torch.ones(6, 2)  # every row the same: zero covariance
    with pytest.raises(ValueError, match="not positive definite"):
        whiten(collapsed)
    assert torch.allclose(whiten(collapsed, eps=0.5), torch.zeros(6, 2))


def test_whiten_half_input_is_computed_in_float32_under_autocast() -> None:
    x = torch.randn(32, 4).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = whiten(x)
    assert out.dtype == torch.float32
    assert torch.allclose(torch.cov(out.T), torch.eye(4), atol=1e-4)


def test_normalized_mse_value_and_gradients_into_both_inputs() -> None:
    a = torch.tensor([[3.0, 0.0], [1.0, 1.0]], requires_grad=True)
    b = torch.tensor([[0.0, 2.0], [2.0, 2.0]], requires_grad=True)
    loss = normalized_mse(a, b)  # cosines 0 and 1
    assert loss.item() == pytest.approx(1.0, rel=1e-6)
    loss.backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_wmse_matches_numpy_with_the_same_partition() -> None:
    rng = np.random.default_rng(2)
    views = [rng.normal(size=(12, 3)) for _ in range(3)]
    tviews = [torch.from_numpy(v) for v in views]
    got = wmse_loss_func(tviews, whitening_size=6, generator=torch.Generator().manual_seed(7))
    parts = [p.numpy() for p in subbatch_partition(12, 6, torch.Generator().manual_seed(7))]
    assert got.item() == pytest.approx(_numpy_wmse(views, parts), rel=1e-10)
    # two iterations average two partitions drawn in turn from the generator
    g = torch.Generator().manual_seed(3)
    two = wmse_loss_func(tviews, whitening_size=4, whitening_iters=2, generator=g)
    g = torch.Generator().manual_seed(3)
    p1 = [p.numpy() for p in subbatch_partition(12, 4, g)]
    p2 = [p.numpy() for p in subbatch_partition(12, 4, g)]
    assert two.item() == pytest.approx((_numpy_wmse(views, p1) + _numpy_wmse(views, p2)) / 2, rel=1e-10)


def test_wmse_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(3)
    v1, v2 = rng.normal(size=(8, 2)), rng.normal(size=(8, 2))
    t1 = torch.from_numpy(v1).requires_grad_(True)
    t2 = torch.from_numpy(v2).requires_grad_(True)
    wmse_loss_func([t1, t2], whitening_size=4, generator=torch.Generator().manual_seed(0)).backward()
    parts = [p.numpy() for p in subbatch_partition(8, 4, torch.Generator().manual_seed(0))]
    h = 1e-6
    for tensor, base, which in ((t1, v1, 0), (t2, v2, 1)):
        numeric = np.zeros_like(base)
        for i in range(base.shape[0]):
            for d in range(base.shape[1]):
                plus, minus = base.copy(), base.copy()
                plus[i, d] += h
                minus[i, d] -= h
                vp = [plus, v2] if which == 0 else [v1, plus]
                vm = [minus, v2] if which == 0 else [v1, minus]
                numeric[i, d] = (_numpy_wmse(vp, parts) - _numpy_wmse(vm, parts)) / (2 * h)
        np.testing.assert_allclose(tensor.grad.numpy(), numeric, rtol=1e-5, atol=1e-7)


def test_identical_views_give_zero_and_the_loss_ignores_scale_and_shift() -> None:
    g = torch.Generator().manual_seed(0)
    v = torch.randn(16, 3, generator=g, dtype=torch.float64)
    assert wmse_loss_func([v, v.clone()], 8, generator=torch.Generator().manual_seed(1)).item() == pytest.approx(
        0.0, abs=1e-12
    )
    w = torch.randn(16, 3, generator=g, dtype=torch.float64)
    a = wmse_loss_func([v, w], 16, generator=torch.Generator().manual_seed(1))
    b = wmse_loss_func([3.0 * v + 1.0, w - 2.0], 16, generator=torch.Generator().manual_seed(1))
    assert a.item() == pytest.approx(b.item(), rel=1e-9)  # whitening removes mean and scale


def test_partition_covers_every_row_once() -> None:
    parts = subbatch_partition(10, 4, torch.Generator().manual_seed(0))
    assert [len(p) for p in parts] == [5, 5]  # 10 // 4 = 2 sub-batches, remainder spread
    assert sorted(torch.cat(parts).tolist()) == list(range(10))
    assert [len(p) for p in subbatch_partition(12, 4)] == [4, 4, 4]


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="at least 2 views"):
        wmse_loss_func([torch.randn(8, 2)], 4)
    with pytest.raises(ValueError, match="same shape"):
        wmse_loss_func([torch.randn(8, 2), torch.randn(8, 3)], 4)
    with pytest.raises(ValueError, match="whitening_size"):
        wmse_loss_func([torch.randn(8, 2), torch.randn(8, 2)], 9)
    with pytest.raises(ValueError, match="whitening_size"):
        wmse_loss_func([torch.randn(8, 2), torch.randn(8, 2)], 1)
    with pytest.raises(ValueError, match="whitening_iters"):
        wmse_loss_func([torch.randn(8, 2), torch.randn(8, 2)], 4, whitening_iters=0)
    with pytest.raises(ValueError, match="eps"):
        whiten(torch.randn(8, 2), eps=1.0)
    with pytest.raises(ValueError, match="n >= 2"):
        whiten(torch.randn(1, 2))
