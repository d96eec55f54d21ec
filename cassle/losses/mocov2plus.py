"""MoCo v2+ loss (InfoNCE against a queue of negatives).

He et al., "Momentum Contrast for Unsupervised Visual Representation
Learning", CVPR 2020 (https://arxiv.org/abs/1911.05722); Chen et al.,
"Improved Baselines with Momentum Contrastive Learning", 2020
(https://arxiv.org/abs/2003.04297).

::

    >>> import torch
    >>> from cassle.losses import mocov2plus_loss_func
    >>> q, k, queue = torch.randn(8, 16), torch.randn(8, 16), torch.randn(64, 16)
    >>> loss = mocov2plus_loss_func(q, k, queue, temperature=0.2)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cassle.losses.checks import check_pair


def mocov2plus_loss_func(
    query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2
) -> torch.Tensor:
    """Cross-entropy of ``[q·k, q·queueᵀ] / T`` with the positive at index 0.

    Args:
        query: ``B x D`` online projections (gradients flow).
        key: ``B x D`` momentum projections of the other view (detached).
        queue: ``K x D`` negatives (detached). The method stores normalised
            keys; they are normalised again here, which is harmless.
        temperature: softmax temperature.

    Returns:
        Scalar InfoNCE loss.
    """
    check_pair("mocov2plus_loss_func", query, key)
    if queue.dim() != 2 or queue.shape[1] != query.shape[1]:
        raise ValueError(
            "mocov2plus_loss_func: queue must be K x D with the same D as query, got "
            f"{tuple(queue.shape)} for query {tuple(query.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"mocov2plus_loss_func: temperature must be > 0, got {temperature}")
    q = F.normalize(query, dim=-1)
    k = F.normalize(key.detach(), dim=-1)
    neg = F.normalize(queue.detach(), dim=-1)
    pos = (q * k).sum(dim=-1, keepdim=True)
    logits = torch.cat([pos, q @ neg.T], dim=1) / temperature
    targets = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, targets)
