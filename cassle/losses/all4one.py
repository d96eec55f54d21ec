"""All4One: neighbour contrast, centroid contrast and feature contrast.

Estepa et al., "All4One: Symbiotic Neighbour Contrastive Learning via Self-Attention and Redundancy
Reduction", ICCV 2023 (https://arxiv.org/abs/2303.09417). The objective sums three terms, each
symmetrised over the two views ``a``/``b`` (``x̂`` = ``x / ||x||``)::

    contrast(u, v; T)   = -1/B Σ_i log softmax_j(û_i · v̂_j / T)[i]            (positive: column i)
    L_neighbour         = ½ contrast(nn_a, p_b; T)  + ½ contrast(nn_b, p_a; T)
    L_centroid          = ½ contrast(c_a, s_b; T_c) + ½ contrast(c_b, s_a; T_c)
    C(t, z)             = t̃ᵀ z̃   with t̃, z̃ the columns of t, z scaled to unit norm (over the batch)
    L_feature           = ½ sqrt(mean_pairs mean_i (C_ii - 1)²) + ½ sqrt(mean_pairs mean_{i≠j} C_ij²)
                          over the pairs (t_a, z_b), (t_b, z_a)
    L_All4One           = w_n L_neighbour + w_c L_centroid + w_f L_feature

``nn`` is the nearest neighbour of the momentum projection in the support set, ``p`` the online
prediction, ``c`` the transformer "centroid" of the neighbour sequence, ``s`` the centroid of the
shifted sequence (own prediction first), ``t`` the momentum and ``z`` the online projections.
The weights ``w = (0.5, 0.5, 5.0)`` are solo-learn's ``solo/methods/all4one.py``
(``0.5·att + 0.5·nnclr + 0.5·(10·(½ on + ½ off))``); the centroid temperature 0.1 is the default of
the NNCLR loss that reference calls without a temperature.

Unlike Barlow Twins (:mod:`cassle.losses.barlow`) the feature term does not standardise the
columns (no centring, unit L2 norm instead of unit variance) and takes root-mean-squares, so it
is written here rather than reused.

Multi-device form (the reference's): the *candidates* (second argument of :func:`neighbour_contrast_loss`,
``p`` and ``s``) are the global batch gathered with gradients, the anchors stay local, and the
positive of local row ``i`` is global column ``offset + i`` (``offset = rank · B``). The feature term
is a statistic of the batch it is given: :class:`cassle.methods.all4one.All4One` gives it the gathered
global batch (the reference gives it each device's own batch, which makes several devices train unlike one
device on the whole batch)::

    >>> import torch
    >>> from cassle.losses.all4one import all4one_loss_func
    >>> v = lambda: (torch.randn(8, 16), torch.randn(8, 16))
    >>> terms = all4one_loss_func(v(), v(), v(), v(), v(), v())
    >>> terms.loss.shape
    torch.Size([])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from cassle.losses.checks import check_pair

__all__ = ["All4OneTerms", "all4one_loss_func", "feature_contrast_loss", "neighbour_contrast_loss"]


def neighbour_contrast_loss(
    anchors: torch.Tensor, candidates: torch.Tensor, temperature: float = 0.1, offset: int = 0
) -> torch.Tensor:
    """InfoNCE of ``anchors`` against ``candidates`` (cosine similarities over ``temperature``).

    Args:
        anchors: ``B x D`` local anchors (nearest neighbours or centroids).
        candidates: ``M x D`` candidates (``M >= offset + B``; the gathered global batch on several devices).
        temperature: softmax temperature (> 0).
        offset: column of the positive of anchor row 0 (row ``i``'s is ``offset + i``).

    Returns:
        Scalar mean cross-entropy over the anchors.
    """
    if anchors.dim() != 2 or candidates.dim() != 2:
        raise ValueError(
            "neighbour_contrast_loss: expected 2-D anchors and candidates, got shapes "
            f"{tuple(anchors.shape)} and {tuple(candidates.shape)}"
        )
    if anchors.shape[1] != candidates.shape[1]:
        raise ValueError(
            f"neighbour_contrast_loss: anchors and candidates must have the same dim, got "
            f"{anchors.shape[1]} and {candidates.shape[1]}"
        )
    n, m = anchors.shape[0], candidates.shape[0]
    if n == 0:
        raise ValueError("neighbour_contrast_loss: empty batch of anchors")
    if offset < 0 or offset + n > m:
        raise ValueError(
            f"neighbour_contrast_loss: positives at columns {offset}..{offset + n - 1} need offset >= 0 and "
            f"at least offset + B = {offset + n} candidates, got {m}"
        )
    if temperature <= 0:
        raise ValueError(f"neighbour_contrast_loss: temperature must be > 0, got {temperature}")
    logits = F.normalize(anchors, dim=-1) @ F.normalize(candidates, dim=-1).T / temperature
    positives = torch.arange(offset, offset + n, device=anchors.device)
    return F.cross_entropy(logits, positives)


def feature_contrast_loss(targets: Sequence[torch.Tensor], online: Sequence[torch.Tensor]) -> torch.Tensor:
    """All4One's feature (redundancy-reduction) term over the pairs ``(targets[k], online[k])``.

    Each pair's columns are scaled to unit L2 norm over the batch and correlated,
    ``C_k = t̃_kᵀ z̃_k`` (``D x D``); the result is
    ``½ sqrt(mean_k mean_i (C_k,ii - 1)²) + ½ sqrt(mean_k mean_{i≠j} C_k,ij²)``.

    Args:
        targets: ``N x D`` momentum projections (one per pair).
        online: ``N x D`` online projections, paired with ``targets`` (usually the other view's).

    Returns:
        Scalar loss (0 when every ``C_k`` is the identity).
    """
    if len(targets) != len(online) or len(targets) == 0:
        raise ValueError(
            f"feature_contrast_loss: needs as many targets as online projections (>= 1), got "
            f"{len(targets)} and {len(online)}"
        )
    on_diag, off_diag = [], []
    for t, z in zip(targets, online):
        check_pair("feature_contrast_loss", t, z)
        d = t.shape[1]
        if d < 2:
            raise ValueError(f"feature_contrast_loss: needs at least 2 features for off-diagonal terms, got {d}")
        c = F.normalize(t, dim=0).T @ F.normalize(z, dim=0)
        off = ~torch.eye(d, dtype=torch.bool, device=c.device)
        on_diag.append((c.diagonal() - 1).pow(2).mean())
        off_diag.append(c[off].pow(2).mean())
    on = torch.stack(on_diag).mean().sqrt()
    off = torch.stack(off_diag).mean().sqrt()
    return 0.5 * on + 0.5 * off


class All4OneTerms(NamedTuple):
    """The weighted total and its three (unweighted) terms."""

    loss: torch.Tensor
    neighbour: torch.Tensor
    centroid: torch.Tensor
    feature: torch.Tensor


Pair = Sequence[torch.Tensor]


def all4one_loss_func(
    neighbours: Pair,
    predictions: Pair,
    centroids: Pair,
    shifted_centroids: Pair,
    targets: Pair,
    projections: Pair,
    temperature: float = 0.2,
    centroid_temperature: float = 0.1,
    neighbour_weight: float = 0.5,
    centroid_weight: float = 0.5,
    feature_weight: float = 5.0,
    offset: int = 0,
) -> All4OneTerms:
    """The All4One objective of two views (see the module docstring for the formula).

    Args:
        neighbours: per view, ``B x D`` nearest neighbour of the momentum projection.
        predictions: per view, ``M x D`` online predictions (gathered across devices).
        centroids: per view, ``B x D`` transformer output of the neighbour sequence.
        shifted_centroids: per view, ``M x D`` transformer output of the shifted sequence (gathered).
        targets: per view, ``N x D`` momentum projections (the method passes the gathered global batch).
        projections: per view, ``N x D`` online projections (gathered with gradients, likewise).
        temperature: temperature of the neighbour contrast.
        centroid_temperature: temperature of the centroid contrast.
        neighbour_weight / centroid_weight / feature_weight: the terms' weights.
        offset: global column of the positive of local row 0 (``rank · B``).

    Returns:
        :class:`All4OneTerms` ``(loss, neighbour, centroid, feature)``.
    """
    for name, pair in (
        ("neighbours", neighbours),
        ("predictions", predictions),
        ("centroids", centroids),
        ("shifted_centroids", shifted_centroids),
        ("targets", targets),
        ("projections", projections),
    ):
        if len(pair) != 2:
            raise ValueError(f"all4one_loss_func: {name} must hold the two views, got {len(pair)}")
    na, nb = neighbours
    pa, pb = predictions
    ca, cb = centroids
    sa, sb = shifted_centroids
    neighbour = 0.5 * (
        neighbour_contrast_loss(na, pb, temperature, offset) + neighbour_contrast_loss(nb, pa, temperature, offset)
    )
    centroid = 0.5 * (
        neighbour_contrast_loss(ca, sb, centroid_temperature, offset)
        + neighbour_contrast_loss(cb, sa, centroid_temperature, offset)
    )
    ta, tb = targets
    za, zb = projections
    feature = feature_contrast_loss([ta, tb], [zb, za])
    loss = neighbour_weight * neighbour + centroid_weight * centroid + feature_weight * feature
    return All4OneTerms(loss, neighbour, centroid, feature)
