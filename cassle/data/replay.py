"""Data pieces of replay and online continual learning.

* :func:`build_raw_transform` — the fixed-size raw ``uint8`` image a replay
  buffer stores (resized to ``crop_size`` for small images, to a centre square
  of ``round(crop_size·256/224)`` for large ones), so replayed samples get
  fresh augmentations later.
* :func:`augment_batch` — the one function that augments a ``uint8`` batch
  into the method's views (today: the stream's own per-sample CPU pipeline; a
  batched on-device augmentation can replace its body).
* :func:`plain_views` — deterministic float view of a raw batch (no
  augmentation), e.g. for MinRed's features.
* :class:`OnlineBatchSampler` — the online stream: a seeded order seen once,
  each minibatch yielded ``mb_passes`` times, items ``(index, pass)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import Sampler
from torchvision.transforms import InterpolationMode, v2

from cassle.data.transforms import SMALL_IMAGE_SIZE, build_eval_transform


def raw_image_size(crop_size: int, image_size: int | None) -> int:
    """Side of the stored raw images: ``crop_size`` for small images, else ``round(crop_size·256/224)``."""
    if image_size is not None and image_size <= SMALL_IMAGE_SIZE:
        return int(crop_size)
    return int(round(crop_size * 256 / 224))


def build_raw_transform(crop_size: int, image_size: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``uint8`` ``C×H×W`` → ``uint8`` ``C×R×R`` with ``R = raw_image_size(...)`` (channels kept)."""
    size = raw_image_size(crop_size, image_size)
    if image_size is not None and image_size <= SMALL_IMAGE_SIZE:
        if image_size == size:
            return lambda img: img
        return v2.Resize((size, size), interpolation=InterpolationMode.BICUBIC, antialias=True)
    return v2.Compose([v2.Resize(size, interpolation=InterpolationMode.BICUBIC, antialias=True), v2.CenterCrop(size)])


def augment_batch(images: torch.Tensor, transform: Callable[[torch.Tensor], list[torch.Tensor]]) -> list[torch.Tensor]:
    """Augment a ``uint8`` ``B×C×H×W`` batch with a multi-view ``transform``; returns one ``B×3×S×S`` tensor per view.

    The per-sample pipeline runs on the CPU (the stream's own augmentation);
    the views come back on ``images``' device.
    """
    if images.shape[0] == 0:
        raise ValueError("augment_batch needs at least one image")
    per_sample = [transform(img) for img in images.cpu()]
    return [torch.stack(views).to(images.device, non_blocking=True) for views in zip(*per_sample)]


def plain_views(images: torch.Tensor, crop_size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Deterministic ``float`` ``B×3×crop×crop`` of a raw ``uint8`` batch (resize/centre crop, normalise)."""
    size = int(images.shape[-1])
    return build_eval_transform(crop_size, mean, std, size if size <= SMALL_IMAGE_SIZE else None)(images)


class OnlineBatchSampler(Sampler[list[tuple[int, int]]]):
    """The online stream of one task: seen once, each minibatch repeated ``mb_passes`` times.

    The order is a permutation drawn from ``seed``. Items are ``(position, pass)`` pairs for
    :class:`~cassle.data.datamodule.AugmentedSubset`. On one device the last partial minibatch is
    kept (a stream drops nothing).

    Under DDP the stream is cut into global minibatches of ``world_size · batch_size`` and rank ``r``
    takes the ``r``-th equal share of each: ranks see disjoint data and, at every step, minibatches of
    the same size (a batch-wide loss gathers equal shapes, and a rank with a step more would hang the
    others). Only the last global minibatch can be smaller: its ``len // world_size`` samples per rank
    are kept, the fewer than ``world_size`` left over are dropped (a stream smaller than the world gives
    every rank one sample, shared).
    """

    def __init__(
        self, num_samples: int, batch_size: int, mb_passes: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        if mb_passes < 1:
            raise ValueError(f"--mb_passes must be at least 1, got {mb_passes}")
        self.num_samples, self.batch_size, self.mb_passes = int(num_samples), int(batch_size), int(mb_passes)
        self.seed, self.rank, self.world_size = int(seed), int(rank), max(1, int(world_size))

    def _minibatches(self) -> list[list[int]]:
        order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed)).tolist()
        w, step = self.world_size, self.world_size * self.batch_size
        mbs: list[list[int]] = []
        for start in range(0, self.num_samples, step):
            chunk = order[start : start + step]  # one global minibatch
            share = len(chunk) // w
            if share == 0 and mbs:
                break  # fewer samples left than ranks
            share = max(share, 1)
            mbs.append([chunk[(self.rank * share + j) % len(chunk)] for j in range(share)])
        return mbs

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for mb in self._minibatches():
            for p in range(self.mb_passes):
                yield [(i, p) for i in mb]

    def __len__(self) -> int:
        step = self.world_size * self.batch_size
        n = self.num_samples // step + (self.num_samples % step >= self.world_size)
        if self.num_samples and not n:
            n = 1  # a stream smaller than the world
        return n * self.mb_passes
