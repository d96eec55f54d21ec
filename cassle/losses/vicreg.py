"""VICReg loss: variance, invariance, covariance.

Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance
Regularization for Self-Supervised Learning", ICLR 2022
(https://arxiv.org/abs/2105.04906).

::

    >>> import torch
    >>> from cassle.losses import vicreg_loss_func
    >>> z1, z2 = torch.randn(32, 16), torch.randn(32, 16)
    >>> loss = vicreg_loss_func(z1, z2)  # 25 * inv + 25 * var + 1 * cov

Following the paper's pseudo-code, the variance and covariance terms are the
sums of the terms of both branches; variances are unbiased (``N - 1``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cassle.losses.checks import check_pair

VAR_EPS = 1e-4


def invariance_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the two embeddings (mean over all entries)."""
    check_pair("invariance_loss", z1, z2)
    return F.mse_loss(z1, z2)


def _std_hinge(z: torch.Tensor) -> torch.Tensor:
    std = torch.sqrt(z.var(dim=0) + VAR_EPS)
    return F.relu(1 - std).mean()


def _off_diag_cov(z: torch.Tensor) -> torch.Tensor:
    n, d = z.shape
    zc = z - z.mean(dim=0)
    cov = zc.T @ zc / (n - 1)
    off = cov.masked_fill(torch.eye(d, dtype=torch.bool, device=z.device), 0)
    return off.pow(2).sum() / d


def _check_batch(name: str, z1: torch.Tensor, z2: torch.Tensor) -> None:
    check_pair(name, z1, z2)
    if z1.shape[0] < 2:
        raise ValueError(f"{name}: needs a batch of at least 2 samples, got {z1.shape[0]}")


def variance_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """``mean_j relu(1 - sqrt(var_j + 1e-4))`` of each branch, summed over both."""
    _check_batch("variance_loss", z1, z2)
    return _std_hinge(z1) + _std_hinge(z2)


def covariance_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal covariances / D of each branch, summed over both."""
    _check_batch("covariance_loss", z1, z2)
    return _off_diag_cov(z1) + _off_diag_cov(z2)


def vicreg_loss_func(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_loss_weight: float = 25.0,
    var_loss_weight: float = 25.0,
    cov_loss_weight: float = 1.0,
) -> torch.Tensor:
    """Weighted sum of the invariance, variance and covariance terms.

    Args:
        z1: ``N x D`` projections of view 1.
        z2: ``N x D`` projections of view 2.
        sim_loss_weight: weight of the invariance (MSE) term.
        var_loss_weight: weight of the variance hinge term.
        cov_loss_weight: weight of the covariance term.
    """
    _check_batch("vicreg_loss_func", z1, z2)
    return (
        sim_loss_weight * invariance_loss(z1, z2)
        + var_loss_weight * variance_loss(z1, z2)
        + cov_loss_weight * covariance_loss(z1, z2)
    )
