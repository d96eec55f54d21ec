"""Randomness keyed by (seed, task, epoch): what makes a resumed run repeat the uninterrupted one exactly.

A mid-task checkpoint is written at the end of an epoch. If every random draw of
the next epoch — the shuffle order, each sample's augmentation, the batched
augmentation's generator, the global RNGs — is a function of ``(seed, task,
epoch)`` alone, and never of how many draws came before, then a run killed at
any point and resumed from that checkpoint recomputes the same epochs bit for
bit, with any number of DataLoader workers (the workers' own RNG state no
longer matters: each sample seeds its augmentation itself).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DistributedSampler, get_worker_info

_MASK = (1 << 63) - 1


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix64 over the parts): nearby inputs give unrelated seeds."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & _MASK


class EpochShuffleSampler(DistributedSampler):
    """A random order of ``num_samples`` positions drawn from ``(seed, epoch)`` only, sharded by rank.

    Lightning calls :meth:`set_epoch` before every epoch. Items are ``(position, 0, epoch)`` so that the
    dataset (:class:`~cassle.data.subsets.AugmentedSubset`) can key each sample's augmentation on the epoch.

    Under DDP (``world_size > 1``) every rank draws the same permutation and keeps every ``world_size``-th
    position of it, starting at its ``rank``: the ranks' shards are disjoint and have the same length,
    ``num_samples // world_size`` (every rank must take the same number of steps, and a batch-wide loss
    gathers equal-size batches); the ``num_samples mod world_size`` positions left over are different ones
    each epoch. A task smaller than the world gives every rank one position (shared). It is a
    ``DistributedSampler`` so that Lightning keeps it instead of sharding it again; the parent's
    ``__init__`` is not called (it wants the dataset and an initialised process group), its attributes
    (``num_replicas``, ``rank``, ``num_samples`` per rank, ``total_size``, ``shuffle``, ``seed``,
    ``drop_last``) are set here.
    """

    def __init__(
        self,
        num_samples: int,
        seed: int,
        epoch_source: Callable[[], int] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"EpochShuffleSampler: need 0 <= rank < world_size, got rank {rank}, world_size {world_size}"
            )
        #: samples in the whole task (every rank's shard together)
        self.dataset_size = int(num_samples)
        self.num_replicas, self.rank = int(world_size), int(rank)
        self.seed, self.epoch, self.shuffle, self.drop_last = int(seed), 0, True, True
        per_rank = self.dataset_size // self.num_replicas
        #: this rank's samples per epoch
        self.num_samples = max(1, per_rank) if self.dataset_size else 0
        self.total_size = self.num_samples * self.num_replicas
        #: asked for the epoch when an iteration starts (the larger of it and set_epoch's counts: the trainer's
        #: epoch, at least the epoch a resumed fit starts at): Lightning creates the
        #: first iterator of a fit, and with workers starts prefetching, before it calls set_epoch (and before
        #: it restores its counter from a checkpoint), which would give a resumed fit's first epoch the
        #: order of epoch 0
        self.epoch_source = epoch_source

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def positions(self, epoch: int) -> list[int]:
        """This rank's positions in ``epoch``, in order."""
        g = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        order = torch.randperm(self.dataset_size, generator=g).tolist()
        if self.num_replicas == 1:
            return order
        return [order[(self.rank + k * self.num_replicas) % self.dataset_size] for k in range(self.num_samples)]

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        epoch = self.epoch if self.epoch_source is None else max(self.epoch, int(self.epoch_source()))
        for i in self.positions(epoch):
            yield (i, 0, epoch)

    def __len__(self) -> int:
        return self.num_samples


@contextlib.contextmanager
def seeded_sample(seed: int) -> Iterator[None]:
    """Run a sample's augmentation with the global torch RNG seeded by ``seed``. In a DataLoader worker the
    worker's RNG is simply reseeded; in the main process (``num_workers=0``) the training process' own RNG
    state is saved and restored around it."""
    if get_worker_info() is not None:
        torch.manual_seed(seed)
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def seed_global_rngs(seed: int) -> None:
    """Seed torch (CPU and every GPU), numpy and Python's ``random`` (the start of an epoch)."""
    torch.manual_seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    random.seed(seed)
