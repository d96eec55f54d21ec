"""DeepCluster V2: spherical k-means pseudo-labels and their cross-entropy.

Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", NeurIPS 2020 (https://arxiv.org/abs/2006.09882), DeepCluster V2
(the paper's appendix and the official ``main_deepclusterv2.py``).

At the start of an epoch the l2-normalised projections of the previous epoch
(a memory bank) are clustered with spherical k-means; cluster ``c_h(i)`` of
sample ``i`` in prototype head ``h`` is its pseudo-label and the head's
prototypes become the centroids. During the epoch every view's prototype
scores ``s = C_h z / ||z||`` are trained towards the pseudo-label::

    L = 1/H  sum_h  mean_{(v, i) labelled}  -log softmax(s_{h,v,i} / T)[c_h(i)]

Samples without a pseudo-label (label ``-1``: not clustered yet) are ignored.

::

    >>> import torch
    >>> from cassle.losses.deepclusterv2 import deepclusterv2_loss_func, spherical_kmeans
    >>> bank = torch.nn.functional.normalize(torch.randn(32, 16), dim=1)
    >>> centroids, labels = spherical_kmeans(bank, 4, num_iters=10, generator=torch.Generator().manual_seed(0))
    >>> scores = [[bank[:8] @ centroids.T, bank[:8] @ centroids.T]]   # one head, two views
    >>> loss = deepclusterv2_loss_func(scores, [labels[:8]], temperature=0.1)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

__all__ = ["deepclusterv2_loss_func", "spherical_kmeans"]

#: rows scored against the centroids at once (bounds the ``rows x K`` similarity matrix)
_CHUNK = 8192


def _distributed(world_size: int) -> bool:
    return world_size > 1 and dist.is_available() and dist.is_initialized()


def _nearest(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the most similar centroid (dot product) of every row of ``x``."""
    if x.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=x.device)
    return torch.cat([(chunk @ centroids.T).argmax(dim=1) for chunk in x.split(_CHUNK)])


@torch.no_grad()
def spherical_kmeans(
    x: torch.Tensor,
    num_clusters: int,
    num_iters: int = 10,
    generator: torch.Generator | None = None,
    world_size: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """K-means on the unit sphere (cosine similarity), as DeepCluster V2 clusters its memory bank.

    The centroids start as ``num_clusters`` distinct rows of ``x`` drawn with ``generator`` (on rank 0 under
    ``torch.distributed``, then broadcast). Each of the ``num_iters`` rounds assigns every row to its most
    similar centroid and moves each non-empty cluster's centroid to the l2-normalised mean of its rows (an empty
    cluster keeps its centroid); a last assignment step gives the returned labels.

    Args:
        x: ``N x D`` rows, expected l2-normalised (the memory bank's are). Under ``torch.distributed`` each
            process passes its own shard; the per-cluster sums and counts are all-reduced, so every process
            ends with the same centroids and labels for its own rows.
        num_clusters: ``K``.
        num_iters: centroid updates (0: the labels of the initial centroids).
        generator: the random source of the initial rows (the global RNG if ``None``).
        world_size: number of processes sharing the bank; when > 1 and ``torch.distributed`` is
            initialised the reductions run across them.

    Returns:
        ``(centroids K x D`` unit rows, ``labels`` LongTensor ``N`` in ``[0, K))``.

    When rank 0 holds fewer than ``K`` rows the remaining centroids start as random unit vectors (a warning
    says so): with so few samples most clusters stay empty, which is harmless but wasteful.
    """
    if x.dim() != 2:
        raise ValueError(f"spherical_kmeans: x must be 2-D (N x D), got shape {tuple(x.shape)}")
    if num_clusters < 1:
        raise ValueError(f"spherical_kmeans: num_clusters must be >= 1, got {num_clusters}")
    if num_iters < 0:
        raise ValueError(f"spherical_kmeans: num_iters must be >= 0, got {num_iters}")
    distributed = _distributed(world_size)
    dtype = torch.promote_types(x.dtype, torch.float32)  # half-precision banks are clustered in float32
    x = x.to(dtype)
    n, d = x.shape
    # ---- initial centroids: distinct rows of (rank 0's) bank
    centroids = torch.zeros(num_clusters, d, dtype=dtype, device=x.device)
    if not distributed or dist.get_rank() == 0:
        take = min(n, num_clusters)
        rows = torch.randperm(n, generator=generator)[:take].to(x.device)
        centroids[:take] = x[rows]
        if take < num_clusters:
            warnings.warn(
                f"spherical_kmeans: {n} rows for {num_clusters} clusters; the other {num_clusters - take} "
                "centroids start random (use fewer --num_prototypes for so small a training set)",
                stacklevel=2,
            )
            extra = torch.randn(num_clusters - take, d, generator=generator, dtype=dtype).to(x.device)
            centroids[take:] = F.normalize(extra, dim=1)
    if distributed:
        dist.broadcast(centroids, 0)

    labels = _nearest(x, centroids)
    for _ in range(num_iters):
        sums = torch.zeros(num_clusters, d, dtype=dtype, device=x.device).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=num_clusters).to(x.dtype)
        if distributed:
            dist.all_reduce(sums)
            dist.all_reduce(counts)
        filled = counts > 0
        centroids[filled] = F.normalize(sums[filled], dim=1)  # the mean's direction
        labels = _nearest(x, centroids)
    return centroids, labels


def deepclusterv2_loss_func(
    scores: Sequence[Sequence[torch.Tensor]],
    assignments: Sequence[torch.Tensor],
    temperature: float = 0.1,
) -> torch.Tensor:
    """Cross-entropy of the prototype scores against the k-means pseudo-labels, averaged over heads.

    Args:
        scores: one entry per prototype head, each ``V`` tensors ``B x K_h`` (the head's scores of every
            view; a ``H x V x B x K`` tensor works too).
        assignments: one LongTensor ``B`` per head: the pseudo-label of each sample in ``[0, K_h)``, or
            ``-1`` for a sample without one (ignored; the same label serves every view).
        temperature: softmax temperature ``T``.

    Returns:
        ``1/H sum_h`` of the mean over the labelled (view, sample) pairs of
        ``-log softmax(s / T)[label]``; a head with no labelled sample contributes 0 (with a zero
        gradient), so a batch before the first clustering gives a loss of 0, not NaN.
    """
    if temperature <= 0:
        raise ValueError(f"deepclusterv2_loss_func: temperature must be > 0, got {temperature}")
    if len(scores) == 0:
        raise ValueError("deepclusterv2_loss_func: needs at least one prototype head of scores")
    if len(assignments) != len(scores):
        raise ValueError(
            f"deepclusterv2_loss_func: got {len(assignments)} assignments for {len(scores)} prototype heads"
        )
    losses = []
    for h, (views, labels) in enumerate(zip(scores, assignments)):
        views = list(views)
        if len(views) == 0:
            raise ValueError(f"deepclusterv2_loss_func: head {h} has no views of scores")
        shape = views[0].shape
        if len(shape) != 2 or any(v.shape != shape for v in views):
            raise ValueError(
                f"deepclusterv2_loss_func: the scores of head {h} must be B x K tensors of one shape, got "
                f"{[tuple(v.shape) for v in views]}"
            )
        if labels.dim() != 1 or labels.shape[0] != shape[0]:
            raise ValueError(
                f"deepclusterv2_loss_func: the assignments of head {h} must have shape ({shape[0]},), "
                f"got {tuple(labels.shape)}"
            )
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"deepclusterv2_loss_func: assignments must be integer labels, got {labels.dtype}")
        if labels.device.type == "cpu" and labels.numel() and (int(labels.max()) >= shape[1] or int(labels.min()) < -1):
            raise ValueError(  # (checked on the CPU only: on an accelerator it would cost a host sync per step)
                f"deepclusterv2_loss_func: head {h} has {shape[1]} prototypes but its assignments range over "
                f"[{int(labels.min())}, {int(labels.max())}] (valid: -1 = none, 0..{shape[1] - 1})"
            )
        logits = torch.cat(views)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature
        target = labels.to(logits.device, torch.long).repeat(len(views))
        known = (target >= 0).to(logits.dtype)
        # mean over the labelled rows without a host sync; 0 (zero gradient) when there is none
        per_row = F.cross_entropy(logits, target.clamp(min=0), reduction="none")
        losses.append((per_row * known).sum() / known.sum().clamp(min=1.0))
    return torch.stack(losses).mean()
