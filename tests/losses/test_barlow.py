import numpy as np
import pytest
import torch

from cassle.losses import barlow_loss_func


def _numpy_barlow(z1, z2, lamb, scale):
    def std(z):
        mu = z.mean(axis=0)
        var = ((z - mu) ** 2).mean(axis=0)  # biased, like batch norm
        return (z - mu) / np.sqrt(var + 1e-5)

    a, b = std(z1), std(z2)
    n, d = a.shape
    total = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[k, i] * b[k, j] for k in range(n)) / n
            total += (1 - c) ** 2 if i == j else lamb * c**2
    return scale * total


def test_perfectly_correlated_standardised_input_is_near_zero():
    # two orthogonal, zero-mean, unit-(biased)-variance columns: c = identity (up to bn eps)
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    loss = barlow_loss_func(z, z.clone(), lamb=5e-3, scale_loss=0.1)
    # c_ii = 1 / (1 + 1e-5) so each diagonal term is ~(1e-5)^2
    assert loss.item() == pytest.approx(0.1 * 2 * (1 - 1 / (1 + 1e-5)) ** 2, abs=1e-10)


def test_anticorrelated_hand_computed():
    z1 = torch.tensor([[1.0], [-1.0]])
    z2 = -z1
    # c = -1/(1+eps) -> (1 - c)^2 ~ 4
    assert barlow_loss_func(z1, z2, scale_loss=1.0).item() == pytest.approx(4.0, rel=1e-4)


def test_matches_numpy_loop():
    rng = np.random.default_rng(0)
    z1 = rng.normal(size=(6, 4))
    z2 = rng.normal(size=(6, 4)) + z1
    got = barlow_loss_func(torch.from_numpy(z1), torch.from_numpy(z2), lamb=0.3, scale_loss=0.7)
    assert got.item() == pytest.approx(_numpy_barlow(z1, z2, 0.3, 0.7), rel=1e-9)


def test_differentiable_and_errors():
    z1 = torch.randn(8, 3, requires_grad=True)
    z2 = torch.randn(8, 3, requires_grad=True)
    barlow_loss_func(z1, z2).backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        barlow_loss_func(torch.randn(8, 3), torch.randn(8, 4))
    with pytest.raises(ValueError, match="at least 2"):
        barlow_loss_func(torch.randn(1, 3), torch.randn(1, 3))
