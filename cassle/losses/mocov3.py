"""MoCo v3 loss: InfoNCE of the predictions against the momentum keys of the whole (global) batch.

Chen, Xie & He, "An Empirical Study of Training Self-Supervised Vision
Transformers", ICCV 2021 (https://arxiv.org/abs/2104.02057), Algorithm 1.

With ``q`` the l2-normalised predictions of one view on this process (``B`` rows),
``k`` the l2-normalised momentum keys of the other view gathered from every
process (``M = world_size * B`` rows, this process's at rows ``rank * B ...``)
and temperature ``T``::

    loss = 2T * mean_i [ -log( exp(q_i . k_{rank*B+i} / T) / sum_j exp(q_i . k_j / T) ) ]

The keys of the other samples (of every process) are the negatives; there is
no queue. The ``2T`` factor is the paper's (Algorithm 1: ``CrossEntropyLoss(...)
* 2 * tau``), which makes the gradient scale independent of ``T``. MoCo v3
symmetrises by *summing* the loss of both view orders (the caller does that)::

    >>> import torch
    >>> from cassle.losses.mocov3 import mocov3_loss_func
    >>> q, k = torch.randn(8, 16), torch.randn(8, 16)
    >>> loss = mocov3_loss_func(q, k, temperature=0.2)  # one process: k is the local batch
    >>> bool(loss > 0)
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["mocov3_loss_func"]


def mocov3_loss_func(query: torch.Tensor, key: torch.Tensor, temperature: float = 0.2, rank: int = 0) -> torch.Tensor:
    """MoCo v3's contrastive loss of one view order.

    Args:
        query: ``B x D`` predictions of view 1 on this process (gradients flow).
        key: ``M x D`` momentum projections of view 2 of *every* process, concatenated in
            rank order (``M = world_size * B``; ``M = B`` on one process). Detached inside.
        temperature: softmax temperature ``T`` (> 0).
        rank: this process's rank: the positive of ``query[i]`` is ``key[rank * B + i]``.

    Returns:
        Scalar ``2 T * cross_entropy(q kᵀ / T, rank * B + arange(B))``.

    Raises:
        ValueError: for non-2-D inputs, different feature widths, a key count that is not a
            multiple of the batch, a rank outside the gathered batch or a temperature <= 0.
    """
    if query.dim() != 2 or key.dim() != 2:
        raise ValueError(
            f"mocov3_loss_func: expected 2-D query (B x D) and key (M x D), got shapes "
            f"{tuple(query.shape)} and {tuple(key.shape)}"
        )
    n, m = query.shape[0], key.shape[0]
    if query.shape[1] != key.shape[1]:
        raise ValueError(
            f"mocov3_loss_func: query and key must have the same feature width, got {query.shape[1]} and {key.shape[1]}"
        )
    if n == 0 or m % n != 0:
        raise ValueError(
            f"mocov3_loss_func: key must hold world_size x B rows (the gathered keys), got {m} keys for {n} queries"
        )
    if not 0 <= rank < m // n:
        raise ValueError(f"mocov3_loss_func: rank {rank} outside the {m // n} gathered batches of keys")
    if temperature <= 0:
        raise ValueError(f"mocov3_loss_func: temperature must be > 0, got {temperature}")
    q = F.normalize(query, dim=1)
    k = F.normalize(key.detach(), dim=1)
    logits = q @ k.T / temperature
    labels = torch.arange(n, device=query.device) + rank * n
    return F.cross_entropy(logits, labels) * (2 * temperature)
