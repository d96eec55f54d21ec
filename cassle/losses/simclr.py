"""SimCLR / SupCon contrastive loss.

Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020 (https://arxiv.org/abs/2002.05709), in the
multi-positive form of Khosla et al., "Supervised Contrastive Learning",
NeurIPS 2020 (https://arxiv.org/abs/2004.11362, the ``L_out`` variant).

``z`` stacks every view of the batch (``V*B x D``); rows sharing the same
value in ``indexes`` are positives of each other, all other rows are
negatives. With exactly one positive per anchor this is NT-Xent::

    >>> import torch
    >>> from cassle.losses import simclr_loss_func
    >>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    >>> idx = torch.arange(8)
    >>> loss = simclr_loss_func(torch.cat([z1, z2]), torch.cat([idx, idx]), temperature=0.2)

SupCon passes class targets as ``indexes``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def simclr_loss_func(z: torch.Tensor, indexes: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """Multi-positive InfoNCE over all stacked views.

    Args:
        z: ``M x D`` projections, all views stacked (``M = V * B``).
        indexes: ``M`` integer ids; rows with equal id are positives.
        temperature: softmax temperature.

    Returns:
        Mean over anchors of ``-mean_{positives} log softmax``, where the
        softmax runs over every row except the anchor itself. Anchors with no
        positive are left out of the mean; if no anchor has one the loss is 0
        (still attached to the graph).
    """
    if z.dim() != 2:
        raise ValueError(f"simclr_loss_func: z must be 2-D (N x D), got shape {tuple(z.shape)}")
    if indexes.dim() != 1 or indexes.shape[0] != z.shape[0]:
        raise ValueError(
            "simclr_loss_func: indexes must be 1-D with one entry per row of z, got "
            f"{tuple(indexes.shape)} for z of shape {tuple(z.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"simclr_loss_func: temperature must be > 0, got {temperature}")

    m = z.shape[0]
    z = F.normalize(z, dim=-1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(m, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = torch.log_softmax(logits, dim=1)

    pos_mask = (indexes.unsqueeze(0) == indexes.unsqueeze(1)) & ~self_mask
    num_pos = pos_mask.sum(dim=1)
    has_pos = num_pos > 0
    if not bool(has_pos.any()):
        return z.sum() * 0.0
    # torch.where avoids 0 * (-inf) on the excluded diagonal
    pos_log_prob = torch.where(pos_mask, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    mean_log_prob_pos = pos_log_prob[has_pos] / num_pos[has_pos]
    return -mean_log_prob_pos.mean()
