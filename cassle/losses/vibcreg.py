"""VIbCReg loss: VICReg's invariance and variance terms with a *normalised* covariance term.

Lee & Aune, "VIbCReg: Variance-Invariance-better-Covariance Regularization for
Self-Supervised Learning on Time Series", 2021, later titled "Computer Vision
Self-supervised Learning Methods on Time Series" (https://arxiv.org/abs/2109.00783);
the term is the one of solo-learn's ``solo/losses/vibcreg.py``.

The invariance (MSE) and variance (hinge on the std, ``eps = 1e-4``) terms are
VICReg's, reused from :mod:`cassle.losses.vicreg`. The "better covariance" term
replaces VICReg's covariance by the squared off-diagonal entries of the
*correlation-like* matrix of each branch: the centred embeddings are
l2-normalised per feature over the batch, ``Ẑ_:,j = (Z_:,j - mean) / ||Z_:,j - mean||``,
so ``C = ẐᵀẐ`` has a unit diagonal and entries in ``[-1, 1]``, and::

    c(Z) = 1/D² * sum_{i != j} C_ij²          (a mean over all D x D entries, diagonal zeroed)
    loss = λ_sim * mse(Z1, Z2) + λ_var * (v(Z1) + v(Z2)) + λ_cov * (c(Z1) + c(Z2))

with VIbCReg's weights ``λ = 25, 25, 200``. Unlike VICReg's ``sum / D`` of the raw
covariances, this term is scale-free, so its weight does not depend on the
embeddings' magnitude or width::

    >>> import torch
    >>> from cassle.losses.vibcreg import normalized_covariance_loss, vibcreg_loss_func
    >>> z1, z2 = torch.randn(32, 16), torch.randn(32, 16)
    >>> loss = vibcreg_loss_func(z1, z2)  # 25 * inv + 25 * var + 200 * cov
    >>> bool(0 <= normalized_covariance_loss(z1, z2) <= 2)
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cassle.losses.checks import check_pair
from cassle.losses.vicreg import invariance_loss, variance_loss

__all__ = ["normalized_covariance_loss", "vibcreg_loss_func"]


def _check_batch(name: str, z1: torch.Tensor, z2: torch.Tensor) -> None:
    check_pair(name, z1, z2)
    if z1.shape[0] < 2:
        raise ValueError(f"{name}: needs a batch of at least 2 samples, got {z1.shape[0]}")


def _normalized_off_diag(z: torch.Tensor) -> torch.Tensor:
    zc = F.normalize(z - z.mean(dim=0), p=2, dim=0)  # each feature: unit norm over the batch
    corr = zc.T @ zc
    d = corr.shape[0]
    off = corr.masked_fill(torch.eye(d, dtype=torch.bool, device=z.device), 0.0)
    return off.pow(2).mean()


def normalized_covariance_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """VIbCReg's covariance term: mean of the squared off-diagonal normalised covariances of each branch
    (over all ``D x D`` entries, the zeroed diagonal included), summed over both branches."""
    _check_batch("normalized_covariance_loss", z1, z2)
    return _normalized_off_diag(z1) + _normalized_off_diag(z2)


def vibcreg_loss_func(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_loss_weight: float = 25.0,
    var_loss_weight: float = 25.0,
    cov_loss_weight: float = 200.0,
) -> torch.Tensor:
    """Weighted sum of the invariance, variance and normalised covariance terms.

    Args:
        z1: ``N x D`` projections of view 1 (the whole global batch under DDP: gathered by the caller).
        z2: ``N x D`` projections of view 2.
        sim_loss_weight: weight of the invariance (MSE) term.
        var_loss_weight: weight of the variance hinge term.
        cov_loss_weight: weight of the normalised covariance term.
    """
    _check_batch("vibcreg_loss_func", z1, z2)
    return (
        sim_loss_weight * invariance_loss(z1, z2)
        + var_loss_weight * variance_loss(z1, z2)
        + cov_loss_weight * normalized_covariance_loss(z1, z2)
    )
