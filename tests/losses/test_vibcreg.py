"""VIbCReg loss against independent numpy formulas (value, and gradient by finite differences)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cassle.losses.vibcreg import normalized_covariance_loss, vibcreg_loss_func


def _np_corr_term(z: np.ndarray) -> float:
    """Off-diagonal squared Pearson correlations over all D x D entries (the centred, column-normalised Gram)."""
    d = z.shape[1]
    r = np.corrcoef(z, rowvar=False)
    return float((np.sum(r**2) - d) / d**2)


def _np_loss(z1: np.ndarray, z2: np.ndarray, ws: float, wv: float, wc: float) -> float:
    inv = np.mean((z1 - z2) ** 2)

    def var_term(z: np.ndarray) -> float:
        return float(np.mean(np.maximum(0.0, 1.0 - np.sqrt(np.var(z, axis=0, ddof=1) + 1e-4))))

    return float(ws * inv + wv * (var_term(z1) + var_term(z2)) + wc * (_np_corr_term(z1) + _np_corr_term(z2)))


@pytest.fixture
def pair():
    rng = np.random.default_rng(1)
    z1 = rng.normal(scale=0.5, size=(7, 4))
    z2 = z1 @ rng.normal(size=(4, 4)) * 0.4 + 0.1
    return z1, z2


def test_covariance_term_matches_pearson_correlations(pair) -> None:
    z1, z2 = pair
    got = normalized_covariance_loss(torch.from_numpy(z1), torch.from_numpy(z2))
    assert got.item() == pytest.approx(_np_corr_term(z1) + _np_corr_term(z2), rel=1e-10)


def test_covariance_term_hand_computed() -> None:
    # column 2 = -column 1: correlation -1 in the two off-diagonal entries of a 2 x 2 matrix -> 2 / 4 per branch
    z = torch.tensor([[1.0, -1.0], [2.0, -2.0], [4.0, -4.0]])
    assert normalized_covariance_loss(z, z).item() == pytest.approx(2 * 0.5, rel=1e-6)
    # uncorrelated columns: 0
    z = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    assert normalized_covariance_loss(z, z).item() == pytest.approx(0.0, abs=1e-12)


def test_covariance_term_is_scale_and_shift_free(pair) -> None:
    z1, z2 = (torch.from_numpy(z) for z in pair)
    ref = normalized_covariance_loss(z1, z2)
    assert normalized_covariance_loss(5 * z1 - 3, 0.01 * z2 + 7).item() == pytest.approx(ref.item(), rel=1e-8)


def test_total_value_matches_numpy(pair) -> None:
    z1, z2 = pair
    got = vibcreg_loss_func(torch.from_numpy(z1), torch.from_numpy(z2), 2.0, 3.0, 50.0)
    assert got.item() == pytest.approx(_np_loss(z1, z2, 2.0, 3.0, 50.0), rel=1e-10)
    default = vibcreg_loss_func(torch.from_numpy(z1), torch.from_numpy(z2))
    assert default.item() == pytest.approx(_np_loss(z1, z2, 25.0, 25.0, 200.0), rel=1e-10)


def test_gradient_matches_finite_differences_of_the_numpy_formula(pair) -> None:
    z1, z2 = pair
    t1 = torch.from_numpy(z1).requires_grad_(True)
    t2 = torch.from_numpy(z2).requires_grad_(True)
    vibcreg_loss_func(t1, t2, 2.0, 3.0, 50.0).backward()
    h = 1e-6
    for z, grad, which in ((z1, t1.grad.numpy(), 0), (z2, t2.grad.numpy(), 1)):
        fd = np.zeros_like(z)
        for idx in np.ndindex(*z.shape):
            zp, zm = z.copy(), z.copy()
            zp[idx] += h
            zm[idx] -= h
            args_p = (zp, z2) if which == 0 else (z1, zp)
            args_m = (zm, z2) if which == 0 else (z1, zm)
            fd[idx] = (_np_loss(*args_p, 2.0, 3.0, 50.0) - _np_loss(*args_m, 2.0, 3.0, 50.0)) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


def test_input_errors() -> None:
    with pytest.raises(ValueError, match="same shape"):
        vibcreg_loss_func(torch.randn(6, 4), torch.randn(6, 3))
    with pytest.raises(ValueError, match="2-D"):
        normalized_covariance_loss(torch.randn(6), torch.randn(6))
    with pytest.raises(ValueError, match="at least 2"):
        vibcreg_loss_func(torch.randn(1, 4), torch.randn(1, 4))
