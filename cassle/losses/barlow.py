"""Barlow Twins loss.

Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction", ICML 2021 (https://arxiv.org/abs/2103.03230).

Each embedding is standardised over the batch; the cross-correlation matrix
``c = z1_nᵀ z2_n / N`` is pushed towards the identity::

    >>> import torch
    >>> from cassle.losses import barlow_loss_func
    >>> z1, z2 = torch.randn(32, 16), torch.randn(32, 16)
    >>> loss = barlow_loss_func(z1, z2, lamb=5e-3, scale_loss=0.1)

The function works on the batch it receives; a multi-device method gathers
the global batch (with gradients) before calling it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cassle.losses.checks import check_pair

BN_EPS = 1e-5


def barlow_loss_func(z1: torch.Tensor, z2: torch.Tensor, lamb: float = 5e-3, scale_loss: float = 0.1) -> torch.Tensor:
    """Barlow Twins redundancy-reduction loss.

    Args:
        z1: ``N x D`` projections of view 1.
        z2: ``N x D`` projections of view 2.
        lamb: weight of the off-diagonal (redundancy) term.
        scale_loss: final multiplier of the loss.

    Returns:
        ``scale_loss * (sum_i (1 - c_ii)^2 + lamb * sum_{i != j} c_ij^2)``.
    """
    check_pair("barlow_loss_func", z1, z2)
    n, d = z1.shape
    if n < 2:
        raise ValueError(f"barlow_loss_func: needs a batch of at least 2 samples, got {n}")
    # batch-norm semantics: biased variance, eps 1e-5, no affine parameters
    z1n = F.batch_norm(z1, None, None, training=True, eps=BN_EPS)
    z2n = F.batch_norm(z2, None, None, training=True, eps=BN_EPS)
    c = z1n.T @ z2n / n
    eye = torch.eye(d, dtype=torch.bool, device=c.device)
    on_diag = (1 - c.diagonal()).pow(2).sum()
    off_diag = c.masked_fill(eye, 0).pow(2).sum()
    return scale_loss * (on_diag + lamb * off_diag)
