"""A FIFO of past vectors, the one queue / support set every method uses.

MoCo v2+ keeps its negative keys here, SwAV the projections that enlarge its Sinkhorn batch, NNCLR / NNBYOL /
NNSiam / All4One their support set of past projections (with :meth:`FeatureQueue.nearest`), ReSSL its
teacher's past features. One ring buffer per ``slot`` (a view, for SwAV; most methods use one slot):

* ``queue`` (``slots x size x dim``), ``ptr`` (the next row written), ``count`` (rows written so far, capped
  at ``size``) and, with ``labels=True``, ``labels`` (``size``, ``-1`` = none) are buffers, so they are in
  every checkpoint and a resumed run continues with the same queue;
* ``init="random"`` starts full of random unit vectors (MoCo's and NNCLR's choice, so the queue is usable
  from the first step); ``init="zeros"`` starts empty and :meth:`rows` returns only what was written (SwAV);
* :meth:`push` writes the newest vectors (``n`` per slot) at ``ptr`` and wraps around; more than ``size``
  vectors keep the last ``size``. What a method pushes is its business (MoCo, SwAV and the NN methods push
  the vectors of every process, gathered, which keeps the queues of all ranks identical). In a labelled queue
  a push without labels marks the overwritten rows unknown (``-1``) rather than leaving stale labels;
* :meth:`nearest` is the support-set lookup (cosine, no gradient) and :meth:`label_agreement` the fraction of
  neighbours that share the query's label (NNCLR's "nn accuracy" diagnostic).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["FeatureQueue", "SupportSetMixin", "upgrade_legacy_queue"]


class FeatureQueue(nn.Module):
    """``slots`` ring buffers of the last ``size`` vectors of width ``dim``."""

    def __init__(self, size: int, dim: int, slots: int = 1, init: str = "random", labels: bool = False) -> None:
        super().__init__()
        if size < 1 or dim < 1 or slots < 1:
            raise ValueError(f"a queue needs size, dim and slots >= 1, got {size}, {dim}, {slots}")
        if init not in ("random", "zeros"):
            raise ValueError(f"queue init must be 'random' or 'zeros', got {init!r}")
        self.size, self.dim, self.slots = int(size), int(dim), int(slots)
        full = init == "random"
        data = F.normalize(torch.randn(slots, size, dim), dim=-1) if full else torch.zeros(slots, size, dim)
        self.register_buffer("queue", data)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.tensor(size if full else 0, dtype=torch.long))
        if labels:
            self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        else:
            self.labels = None

    @torch.no_grad()
    def push(self, vectors: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Write ``vectors`` (``n x dim`` for one slot, or ``slots x n x dim``) after the newest row."""
        v = vectors.detach()
        if v.dim() == 2:
            v = v.unsqueeze(0)
        if v.dim() != 3 or v.shape[0] != self.slots or v.shape[2] != self.dim:
            raise ValueError(
                f"push expects {self.slots} x n x {self.dim} vectors (or n x {self.dim} with one slot), "
                f"got {tuple(vectors.shape)}"
            )
        if labels is not None and (labels.dim() != 1 or labels.shape[0] != v.shape[1]):
            raise ValueError(
                f"push: labels must be 1-D with one entry per pushed vector ({v.shape[1]}), got {tuple(labels.shape)}"
            )
        v = v[:, -self.size :]
        n = v.shape[1]
        pos = (self.ptr + torch.arange(n, device=v.device)) % self.size
        self.queue[:, pos] = v.to(self.queue.dtype)
        if self.labels is not None:
            if labels is None:
                self.labels[pos] = -1  # the rows' old labels no longer describe them
            else:
                self.labels[pos] = labels.detach()[-self.size :].to(self.labels.device, torch.long)
        self.ptr.fill_(int((self.ptr + n) % self.size))
        self.count.fill_(min(int(self.count) + n, self.size))

    def rows(self, slot: int = 0) -> torch.Tensor:
        """The written rows of ``slot`` (all ``size`` rows once full), in storage order."""
        return self.queue[slot] if int(self.count) >= self.size else self.queue[slot, : int(self.count)]

    def row_labels(self) -> torch.Tensor | None:
        """The labels of :meth:`rows` (``-1``: unknown); ``None`` without ``labels=True``."""
        if self.labels is None:
            return None
        return self.labels if int(self.count) >= self.size else self.labels[: int(self.count)]

    @torch.no_grad()
    def nearest(self, z: torch.Tensor, slot: int = 0, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The nearest neighbour (cosine) of every row of ``z`` among :meth:`rows`, and its index.

        NNCLR's support-set lookup (``B x D`` rows, ``B`` indices); with ``k`` the ``k`` nearest, most similar
        first (``B x k x D``, ``B x k``: All4One's neighbour sequences). Returned detached, in ``z``'s dtype."""
        support = self.rows(slot)
        if support.shape[0] == 0:
            raise RuntimeError("nearest() on an empty queue: push vectors first (or build it with init='random')")
        sim = F.normalize(z.detach(), dim=-1) @ F.normalize(support, dim=-1).to(z.dtype).T
        idx = sim.argmax(dim=1) if k is None else sim.topk(k, dim=1).indices
        return support[idx].to(z.dtype), idx

    @torch.no_grad()
    def label_agreement(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """Fraction of queries whose neighbour (row ``idx`` of :meth:`rows`, as :meth:`nearest` returns) carries
        the query's label; unlabelled queries (``target < 0``) are left out. ``None`` without ``labels=True`` or
        without a labelled query. Rows of unknown label (``-1``) never agree."""
        if self.labels is None:
            return None
        if idx.shape != targets.shape:
            raise ValueError(
                f"label_agreement: idx and targets must have the same shape, got {tuple(idx.shape)} "
                f"and {tuple(targets.shape)}"
            )
        valid = targets >= 0
        if not bool(valid.any()):
            return None
        hits = self.row_labels()[idx[valid]] == targets[valid].to(self.labels.device)
        return hits.float().mean()

    def extra_repr(self) -> str:
        return f"slots={self.slots}, size={self.size}, dim={self.dim}"


def upgrade_legacy_queue(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load-state pre-hook for a method whose ``queue`` attribute is a :class:`FeatureQueue`: a checkpoint
    written before the queue was a module holds a bare ``queue`` buffer (MoCo v2+: ``size x dim`` and
    ``queue_ptr``, a ring; SwAV: ``slots x size x dim`` shifted so the newest row is first, zeros = empty),
    rewritten here into the module's ring (oldest at ``ptr`` once full), so such a run still resumes."""
    old = state_dict.get(prefix + "queue")
    if not isinstance(old, torch.Tensor) or prefix + "queue.queue" in state_dict:
        return
    old = state_dict.pop(prefix + "queue")
    ptr = state_dict.pop(prefix + "queue_ptr", None)
    size = old.shape[-2]
    if ptr is not None:  # MoCo v2+: already a full ring
        state_dict[prefix + "queue.queue"] = old.unsqueeze(0) if old.dim() == 2 else old
        state_dict[prefix + "queue.ptr"] = torch.as_tensor(ptr, dtype=torch.long).reshape(())
        state_dict[prefix + "queue.count"] = torch.tensor(size)
        return
    filled = int((old[0].norm(dim=1) > 0).sum())  # SwAV: newest first -> oldest first
    ring = old.clone()
    ring[:, :filled] = old[:, :filled].flip(1)
    state_dict[prefix + "queue.queue"] = ring
    state_dict[prefix + "queue.ptr"] = torch.tensor(filled % size)
    state_dict[prefix + "queue.count"] = torch.tensor(filled)


class SupportSetMixin:
    """The support set of the nearest-neighbour methods (NNCLR, NNBYOL, NNSiam), for a :class:`BaseMethod`.

    ``self.queue`` is a labelled :class:`FeatureQueue` of past l2-normalised projections, random unit vectors
    at start (as in the references). :meth:`nearest_neighbours` looks a batch up (cosine, detached) and
    :meth:`update_support_set` pushes the normalised projections of *every* process (``self.gather``) with
    their labels, so all ranks keep the same support set, as NNCLR's paper and solo-learn do.
    """

    queue: FeatureQueue

    def build_support_set(self, size: int, dim: int) -> FeatureQueue:
        """Create ``self.queue`` (``size`` rows of width ``dim``); ``ValueError`` for ``size < 1``."""
        if size < 1:
            raise ValueError(f"{type(self).__name__} needs --queue_size >= 1 (its support set), got {size}")
        self.queue = FeatureQueue(size, dim, init="random", labels=True)
        return self.queue

    def nearest_neighbours(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(neighbours, indices)`` of the rows of ``z`` in the support set, without gradient."""
        return self.queue.nearest(z)

    @torch.no_grad()
    def update_support_set(self, z: torch.Tensor, targets: torch.Tensor) -> None:
        """Push the l2-normalised ``z`` and ``targets`` of every process (FIFO)."""
        z = F.normalize(z.detach(), dim=-1)
        self.queue.push(self.gather(z), labels=self.gather(targets))  # type: ignore[attr-defined]

    @torch.no_grad()
    def log_nn_accuracy(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """Log ``train_nn_acc``: how often the neighbour of a labelled sample has its label (a diagnostic).

        Call it before :meth:`update_support_set` (``idx`` indexes the support set the lookup saw). The
        indices and labels of every process are gathered first, so all ranks compute the same value and
        agree on whether there is one to log (no rank waits in a collective the others skip)."""
        gather = self.gather  # type: ignore[attr-defined]
        acc = self.queue.label_agreement(gather(idx), gather(targets))
        if acc is not None:
            self._log("train_nn_acc", 100.0 * acc, sync_dist=False)  # type: ignore[attr-defined]  (% like the probes)
        return acc
