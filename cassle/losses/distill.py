"""CaSSLe distillation losses.

Fini et al., "Self-Supervised Models are Continual Learners", CVPR 2022
(https://arxiv.org/abs/2112.04215).

A small predictor maps the current projection to ``p``; it is compared with
the projection ``z_frozen`` of the frozen past network using the method's own
loss family. ``z_frozen`` is a constant: it is detached inside every function.

::

    >>> import torch
    >>> from cassle.losses import DISTILL_LOSSES
    >>> p, z_frozen = torch.randn(8, 16, requires_grad=True), torch.randn(8, 16)
    >>> loss = DISTILL_LOSSES["predictive"](p, z_frozen)
    >>> loss.backward()

The per-view averaging (CaSSLe averages view 1 and view 2) and the
``distill_lamb`` weight are applied by the caller.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cassle.losses.barlow import barlow_loss_func
from cassle.losses.byol import byol_loss_func
from cassle.losses.checks import check_pair


def predictive_distill(p: torch.Tensor, z_frozen: torch.Tensor) -> torch.Tensor:
    """Predictive family (BYOL, SimSiam): ``2 - 2 * mean cos(p, z_frozen)``."""
    return byol_loss_func(p, z_frozen.detach(), simplified=True)


def predictive_mse_distill(p: torch.Tensor, z_frozen: torch.Tensor) -> torch.Tensor:
    """Predictive MSE family (VICReg): mean squared error, the invariance term.

    The VICReg ``sim_loss_weight`` is applied by the caller.
    """
    check_pair("predictive_mse_distill", p, z_frozen)
    return F.mse_loss(p, z_frozen.detach())


def _cross_infonce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Anchors are rows of ``a``; candidates all rows of ``b``; positive is ``b_i``."""
    logits = a @ b.T / temperature
    targets = torch.arange(a.shape[0], device=a.device)
    return F.cross_entropy(logits, targets)


def contrastive_distill(p: torch.Tensor, z_frozen: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """Contrastive family (SimCLR, MoCo, SupCon, NNCLR): symmetric cross InfoNCE.

    Follows CaSSLe's ``simclr_distill_loss_func`` applied both ways: with
    ``p`` and ``z_frozen`` l2-normalised, each ``p_i`` is an anchor whose
    positive is ``z_frozen_i`` and whose negatives are all the *other rows of
    ``z_frozen``* (current-vs-current pairs are not used); then the roles swap
    (anchors ``z_frozen_i``, candidates all rows of ``p``) and the two
    cross-entropies are averaged. Gradients reach ``p`` through both terms.

    To reproduce CaSSLe exactly, pass all views stacked
    (``p = cat([p1, p2])``, ``z_frozen = cat([frozen_z1, frozen_z2])``), so the
    negatives include the other view's frozen projections.
    """
    check_pair("contrastive_distill", p, z_frozen)
    if temperature <= 0:
        raise ValueError(f"contrastive_distill: temperature must be > 0, got {temperature}")
    pn = F.normalize(p, dim=-1)
    zn = F.normalize(z_frozen.detach(), dim=-1)
    return (_cross_infonce(pn, zn, temperature) + _cross_infonce(zn, pn, temperature)) / 2


def decorrelative_distill(
    p: torch.Tensor, z_frozen: torch.Tensor, lamb: float = 5e-3, scale_loss: float = 0.1
) -> torch.Tensor:
    """Decorrelative family (Barlow Twins): ``barlow_loss_func(p, z_frozen)``."""
    return barlow_loss_func(p, z_frozen.detach(), lamb=lamb, scale_loss=scale_loss)


def knowledge_distill(p_logits: torch.Tensor, frozen_logits: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Knowledge family (SwAV, DINO, DeepCluster): soft-target cross-entropy.

    ``-mean_b sum_k softmax(frozen_logits / T)_k * log_softmax(p_logits / T)_k``.
    CaSSLe applies it to prototype scores of the normalised predicted and
    frozen projections.
    """
    check_pair("knowledge_distill", p_logits, frozen_logits)
    if temperature <= 0:
        raise ValueError(f"knowledge_distill: temperature must be > 0, got {temperature}")
    target = torch.softmax(frozen_logits.detach() / temperature, dim=-1)
    log_pred = torch.log_softmax(p_logits / temperature, dim=-1)
    return -(target * log_pred).sum(dim=-1).mean()


DISTILL_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "predictive": predictive_distill,
    "predictive_mse": predictive_mse_distill,
    "contrastive": contrastive_distill,
    "decorrelative": decorrelative_distill,
    "knowledge": knowledge_distill,
}
