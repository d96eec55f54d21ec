"""Views of some samples of an :class:`~cassle.data.base.ImageDataset`: the training one (views + extras)
and the evaluation one (one transformed image and its target), shared by the data module and linear evaluation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset

from cassle.data.base import ImageDataset
from cassle.data.sampling import mix_seed, seeded_sample


class AugmentedSubset(Dataset):
    """Training view of some samples: item ``i`` is ``(index, views, target)``.

    ``index`` is the sample's position in ``dataset`` (not in the subset).
    ``targets`` overrides the dataset's targets (e.g. all ``-1`` with ``no_labels``).
    ``transform=None`` (``--gpu_augment``) keeps the un-augmented ``uint8`` image in
    the place of the views: the whole batch is augmented later, on its device.
    With ``extras`` true the item has a fourth element, ``{"raw": raw_transform(image),
    "mb_pass": p}`` (``raw`` only with a ``raw_transform``).

    ``i`` is a position, an ``(i, p)`` pair (online stream: pass ``p``) or an ``(i, p, epoch)`` triple
    (:class:`~cassle.data.sampling.EpochShuffleSampler`). With a ``seed``, the sample's augmentation
    draws from the global RNG seeded by ``(seed, epoch, p, index)``, so it is the same whichever worker
    runs it and however many samples came before (exact resume, any ``--num_workers``).
    """

    def __init__(
        self,
        dataset: ImageDataset,
        indices: torch.Tensor,
        transform: Callable[[torch.Tensor], list[torch.Tensor]] | None,
        targets: torch.Tensor,
        raw_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        extras: bool = False,
        seed: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        self.transform = transform
        self.targets = targets
        self.raw_transform = raw_transform
        self.extras = extras or raw_transform is not None
        self.seed = seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int | tuple[int, ...]) -> tuple:
        i, mb_pass, epoch = (tuple(i) + (0, 0))[:3] if isinstance(i, tuple) else (i, 0, 0)
        idx = int(self.indices[i])
        image = self.dataset.get_image(idx)
        if self.transform is None:
            views = image
        elif self.seed is None:
            views = self.transform(image)
        else:
            with seeded_sample(mix_seed(self.seed, epoch, mb_pass, idx)):
                views = self.transform(image)
        item = (idx, views, int(self.targets[idx]))
        if not self.extras:
            return item
        extras: dict[str, Any] = {"mb_pass": int(mb_pass)}
        if self.raw_transform is not None:
            extras["raw"] = self.raw_transform(image).contiguous()
        return (*item, extras)


class IndexedSubset(Dataset):
    """Evaluation view of samples ``indices`` of ``dataset`` through ``transform``.

    Item ``i`` is ``(image, target)``, or ``(image, target, index)`` with
    ``return_index=True`` where ``index`` is the position in ``dataset``
    (used to place each test prediction, also under a distributed sampler).
    ``targets`` overrides the dataset's targets (e.g. all ``-1`` with ``no_labels``).
    """

    def __init__(
        self,
        dataset: Any,
        indices: torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor],
        targets: torch.Tensor | None = None,
        return_index: bool = False,
    ) -> None:
        self.dataset = dataset
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        self.transform = transform
        self.targets = dataset.targets if targets is None else targets
        self.return_index = return_index

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple:
        idx = int(self.indices[i])
        item = (self.transform(self.dataset.get_image(idx)), int(self.targets[idx]))
        return item + (idx,) if self.return_index else item


#: the evaluation subset under its older name
EvalSubset = IndexedSubset
