"""The evaluation loaders of :class:`~cassle.data.datamodule.ContinualDataModule`, as a mixin: the
validation loader of the tasks seen so far and the per-task / joint loaders the probes read (unshuffled,
eval transform, batches ``(images, targets)``)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from cassle.data.base import ImageDataset
from cassle.data.subsets import EvalSubset


class EvalLoadersMixin:
    """Needs the data module's ``train_dataset`` / ``test_dataset``, ``split``, ``eval_transform()``,
    ``batch_size``, ``num_workers``, ``num_tasks`` and the targets it keeps after ``setup``."""

    def _eval_loader(
        self, dataset: ImageDataset, indices: torch.Tensor, targets: torch.Tensor, batch_size: int | None
    ) -> DataLoader:
        ds = EvalSubset(dataset, indices, self.eval_transform(), targets)
        return DataLoader(
            ds,
            batch_size=int(batch_size or self.batch_size),
            shuffle=False,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
        )

    def _split_parts(self, split: str) -> tuple[ImageDataset, list[torch.Tensor], torch.Tensor]:
        if split == "train":
            assert self._train_targets is not None
            return self.train_dataset, self.split.train_indices, self._train_targets
        if split == "test":
            if self.test_dataset is None:
                raise ValueError(
                    f"dataset {self.data_cfg.dataset!r} has no test set: evaluate on split='train', "
                    "or add a test folder to the custom dataset"
                )
            assert self._test_targets is not None
            return self.test_dataset, self.split.test_indices, self._test_targets
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")

    def val_dataloader(self) -> DataLoader | list:
        """Test samples of tasks ``0..current`` (each once); ``[]`` when there is no test set."""
        if self.test_dataset is None:
            return []
        dataset, per_task, targets = self._split_parts("test")
        indices = torch.unique(torch.cat(per_task[: self._current_task + 1]))
        if len(indices) == 0:
            return []
        return self._eval_loader(dataset, indices, targets, None)

    def eval_dataloader(self, task: int, split: str = "test", batch_size: int | None = None) -> DataLoader:
        """Unshuffled, eval-transformed ``(images, targets)`` batches of one task's ``split``."""
        if not 0 <= task < self.num_tasks:
            raise ValueError(f"task must be in [0, {self.num_tasks - 1}], got {task}")
        dataset, per_task, targets = self._split_parts(split)
        return self._eval_loader(dataset, per_task[task], targets, batch_size)

    def trial_batch(self, task: int, n: int = 2) -> torch.Tensor:
        """The first ``n`` training images of ``task`` through the eval transform, stacked: the shape every
        training view's global crop has, for a trial forward pass before a run writes anything."""
        dataset, per_task, targets = self._split_parts("train")
        ds = EvalSubset(dataset, per_task[task][:n], self.eval_transform(), targets)
        return torch.stack([ds[i][0] for i in range(len(ds))])

    def joint_eval_dataloader(self, split: str = "test", batch_size: int | None = None) -> DataLoader:
        """Unshuffled, eval-transformed batches over the samples of all tasks (each once)."""
        dataset, per_task, targets = self._split_parts(split)
        return self._eval_loader(dataset, torch.unique(torch.cat(per_task)), targets, batch_size)
