"""SimSiam loss.

Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021
(https://arxiv.org/abs/2011.10566).

Negative cosine similarity between the prediction ``p`` and the
stop-gradient projection ``z``::

    >>> import torch
    >>> from cassle.losses import simsiam_loss_func
    >>> p, z = torch.randn(8, 16), torch.randn(8, 16)
    >>> loss = simsiam_loss_func(p, z)  # scalar in [-1, 1]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cassle.losses.checks import check_pair


def simsiam_loss_func(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``-mean cos(p, z)`` with ``z`` detached.

    Args:
        p: ``B x D`` predictions (gradients flow).
        z: ``B x D`` projections of the other view (detached inside).

    Returns:
        Scalar loss in ``[-1, 1]``.
    """
    check_pair("simsiam_loss_func", p, z)
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()
