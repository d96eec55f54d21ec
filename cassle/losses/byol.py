"""BYOL loss.

Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised
Learning", NeurIPS 2020 (https://arxiv.org/abs/2006.07733).

The online prediction ``p`` is pulled towards the target projection ``z``
(no gradient flows into ``z``)::

    >>> import torch
    >>> from cassle.losses import byol_loss_func
    >>> p, z = torch.randn(8, 16), torch.randn(8, 16)
    >>> loss = byol_loss_func(p, z)  # scalar in [0, 4]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cassle.losses.checks import check_pair


def byol_loss_func(p: torch.Tensor, z: torch.Tensor, simplified: bool = True) -> torch.Tensor:
    """BYOL's normalised regression loss.

    Args:
        p: ``B x D`` predictions of the online branch (gradients flow).
        z: ``B x D`` target projections (detached inside).
        simplified: if True compute ``2 - 2 * mean cos(p, z)``; otherwise the
            squared euclidean distance of the l2-normalised vectors, summed over
            the feature dimension and averaged over the batch. Both give the
            same value.

    Returns:
        Scalar loss in ``[0, 4]``.
    """
    check_pair("byol_loss_func", p, z)
    z = z.detach()
    if simplified:
        return 2 - 2 * F.cosine_similarity(p, z, dim=-1).mean()
    diff = F.normalize(p, dim=-1) - F.normalize(z, dim=-1)
    return diff.pow(2).sum(dim=-1).mean()
