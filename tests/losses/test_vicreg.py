import numpy as np
import pytest
import torch

from cassle.losses import covariance_loss, invariance_loss, variance_loss, vicreg_loss_func


def _np_parts(z1, z2):
    inv = np.mean((z1 - z2) ** 2)

    def var_term(z):
        std = np.sqrt(np.var(z, axis=0, ddof=1) + 1e-4)
        return np.mean(np.maximum(0.0, 1.0 - std))

    def cov_term(z):
        c = np.cov(z, rowvar=False)  # unbiased, D x D
        d = c.shape[0]
        return (np.sum(c**2) - np.sum(np.diag(c) ** 2)) / d

    return inv, var_term(z1) + var_term(z2), cov_term(z1) + cov_term(z2)


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    z1 = rng.normal(scale=0.5, size=(10, 5))
    z2 = z1 @ rng.normal(size=(5, 5)) * 0.3
    return z1, z2


def test_parts_match_numpy(pair):
    z1, z2 = pair
    inv, var, cov = _np_parts(z1, z2)
    t1, t2 = torch.from_numpy(z1), torch.from_numpy(z2)
    assert var > 0 and cov > 0  # the fixture exercises every term
    assert invariance_loss(t1, t2).item() == pytest.approx(inv, rel=1e-10)
    assert variance_loss(t1, t2).item() == pytest.approx(var, rel=1e-10)
    assert covariance_loss(t1, t2).item() == pytest.approx(cov, rel=1e-10)
    got = vicreg_loss_func(t1, t2, sim_loss_weight=2.0, var_loss_weight=3.0, cov_loss_weight=4.0)
    assert got.item() == pytest.approx(2 * inv + 3 * var + 4 * cov, rel=1e-10)


def test_hand_computed_small_case():
    # columns: [1, -1] has unbiased var 2 (std > 1: no hinge); [0, 0] has var 0
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    expected_var = 2 * (0 + (1 - 1e-2)) / 2  # per branch mean over 2 dims, two branches
    assert variance_loss(z, z).item() == pytest.approx(expected_var, rel=1e-6)
    assert covariance_loss(z, z).item() == pytest.approx(0.0, abs=1e-12)
    assert invariance_loss(z, z + 1).item() == pytest.approx(1.0)


def test_differentiable_and_errors():
    z1 = torch.randn(6, 4, requires_grad=True)
    z2 = torch.randn(6, 4, requires_grad=True)
    vicreg_loss_func(z1, z2).backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        vicreg_loss_func(torch.randn(6, 4), torch.randn(6, 3))
    with pytest.raises(ValueError, match="at least 2"):
        vicreg_loss_func(torch.randn(1, 4), torch.randn(1, 4))
