"""SwAV: Sinkhorn-Knopp assignments and the swapped-prediction loss.

Caron et al., "Unsupervised Learning of Visual Features by Contrasting
Cluster Assignments", NeurIPS 2020 (https://arxiv.org/abs/2006.09882).

::

    >>> import torch
    >>> from cassle.losses import sinkhorn, swav_loss_func
    >>> scores = [torch.randn(8, 10), torch.randn(8, 10)]   # z · prototypesᵀ per view
    >>> targets = [sinkhorn(s) for s in scores]
    >>> loss = swav_loss_func(scores, targets, temperature=0.1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist


def _distributed(world_size: int) -> bool:
    return world_size > 1 and dist.is_available() and dist.is_initialized()


@torch.no_grad()
def sinkhorn(Q: torch.Tensor, num_iters: int = 3, epsilon: float = 0.05, world_size: int = 1) -> torch.Tensor:
    """Equal-partition soft assignments with the Sinkhorn-Knopp algorithm.

    Starting from ``exp(Q / epsilon)``, alternately rescales so that every
    prototype gets total mass ``1/K`` and every sample ``1/B`` (``num_iters``
    times), then scales by ``B`` so each returned row is a distribution over
    prototypes (rows sum to 1, columns to ``B/K`` after the final column step).

    Args:
        Q: ``B x K`` sample-to-prototype scores (usually cosine similarities).
        num_iters: number of row/column normalisation rounds.
        epsilon: entropy regularisation (smaller -> sharper assignments).
        world_size: number of processes sharing the batch; when > 1 and
            ``torch.distributed`` is initialised the sums are all-reduced.

    Returns:
        ``B x K`` assignments (no gradient), rows summing to 1.
    """
    if Q.dim() != 2:
        raise ValueError(f"sinkhorn: Q must be 2-D (B x K), got shape {tuple(Q.shape)}")
    if num_iters < 1:
        raise ValueError(f"sinkhorn: num_iters must be >= 1, got {num_iters}")
    if epsilon <= 0:
        raise ValueError(f"sinkhorn: epsilon must be > 0, got {epsilon}")
    distributed = _distributed(world_size)
    b = Q.shape[0] * world_size
    k = Q.shape[1]

    # Work in the log domain: same result as rescaling exp(Q / eps) directly,
    # but no overflow for large scores and no 0/0 for prototypes nobody picks.
    # (the reference first divides by the global sum; a constant factor that the
    # first per-prototype normalisation cancels, so it is skipped)
    log_p = Q.to(torch.promote_types(Q.dtype, torch.float32)) / epsilon
    for _ in range(num_iters):
        # each prototype gets total mass 1/K over the (global) batch
        log_p = log_p - _logsumexp(log_p, 0, distributed) - math.log(k)
        # each sample gets total mass 1/B
        log_p = log_p - torch.logsumexp(log_p, dim=1, keepdim=True) - math.log(b)
    return (log_p.exp() * b).to(Q.dtype)


def _logsumexp(x: torch.Tensor, dim: int, distributed: bool) -> torch.Tensor:
    """logsumexp over ``dim`` (kept), summed across processes when distributed."""
    if not distributed:
        return torch.logsumexp(x, dim=dim, keepdim=True)
    m = x.amax(dim=dim, keepdim=True).clone()
    dist.all_reduce(m, op=dist.ReduceOp.MAX)
    s = (x - m).exp().sum(dim=dim, keepdim=True)
    dist.all_reduce(s)
    return m + s.log()


def swav_loss_func(
    preds: Sequence[torch.Tensor],
    assignments: Sequence[torch.Tensor],
    temperature: float = 0.1,
) -> torch.Tensor:
    """Swapped prediction: predict view ``a``'s assignment from every other view.

    Args:
        preds: ``V`` tensors ``B x K`` of prototype scores (one per view).
        assignments: ``A <= V`` tensors ``B x K`` of target codes; entry ``a``
            belongs to view ``a`` (typically the two large crops).
        temperature: softmax temperature applied to the predictions.

    Returns:
        Mean over all pairs ``(a, v)`` with ``v != a`` of
        ``-mean_b sum_k q_a[b, k] log softmax(p_v[b] / T)_k``.
    """
    if len(preds) < 2:
        raise ValueError(f"swav_loss_func: needs at least 2 views of preds, got {len(preds)}")
    if not 1 <= len(assignments) <= len(preds):
        raise ValueError(
            f"swav_loss_func: got {len(assignments)} assignments for {len(preds)} views; "
            "expected between 1 and the number of views"
        )
    shape = preds[0].shape
    if len(shape) != 2 or any(t.shape != shape for t in (*preds, *assignments)):
        raise ValueError(
            "swav_loss_func: every pred and assignment must be the same B x K shape, got "
            f"{[tuple(t.shape) for t in preds]} and {[tuple(t.shape) for t in assignments]}"
        )
    losses = []
    for a, q in enumerate(assignments):
        for v, p in enumerate(preds):
            if v == a:
                continue
            log_p = torch.log_softmax(p / temperature, dim=1)
            losses.append(-(q * log_p).sum(dim=1).mean())
    return torch.stack(losses).mean()
