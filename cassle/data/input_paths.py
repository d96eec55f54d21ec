"""The two faster input paths of :class:`~cassle.data.datamodule.ContinualDataModule`, as a mixin.

* ``gpu_augment`` (in-memory datasets): the loader yields raw ``uint8`` batches and
  :meth:`InputPathsMixin.on_after_batch_transfer` augments them on the batch's device with the run's
  :class:`~cassle.data.batched_augment.BatchedAugment` (which replay strategies borrow through
  :meth:`InputPathsMixin.augment_on_device`, so replayed samples share the stream's augmentation).
* ``dali`` (folder datasets): the task's files are decoded and augmented by a DALI pipeline
  (:func:`cassle.data.dali.build_pretrain_loader`).

The per-sample torchvision path stays in the data module itself.
"""

from __future__ import annotations

from typing import Any

import torch


class InputPathsMixin:
    """``gpu_augment`` / ``dali`` for the data module (uses its ``data_cfg`` / ``aug_cfg``, dataset, task indices and seed)."""

    def check_input_path(self) -> None:
        """Raise a clear ``ValueError`` when ``gpu_augment`` / ``dali`` do not fit the dataset."""
        if self.gpu_augment and self.dali:
            raise ValueError(
                "--gpu_augment and --dali are exclusive: use --gpu_augment for in-memory datasets, --dali for folder datasets"
            )
        name = self.data_cfg.dataset
        in_memory = bool(getattr(self.train_dataset, "in_memory", False))
        if self.gpu_augment and not in_memory:
            raise ValueError(
                f"--gpu_augment needs an in-memory dataset (digits, fashion_mnist, cifar10, cifar100, stl10), "
                f"but {name!r} decodes images from files: use --dali for folder datasets"
            )
        if self.dali and in_memory:
            raise ValueError(
                f"--dali reads image files, but {name!r} is held in memory: use --gpu_augment to augment it on the device"
            )

    @property
    def batched_augment(self) -> Any:
        """The :class:`~cassle.data.batched_augment.BatchedAugment` of this run (built on first use)."""
        if self._batched_augment is None:
            from cassle.data.batched_augment import BatchedAugment

            mean, std = self._mean_std()
            self._batched_augment = BatchedAugment.from_config(
                self.aug_cfg, self._crop_size(), self.num_views, mean, std, seed=self.seed
            )
        return self._batched_augment

    def augment_on_device(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The run's :class:`~cassle.data.batched_augment.BatchedAugment` applied to a ``uint8`` batch on its
        device (the stream's batches, and the replayed buffer samples of replay strategies)."""
        aug = self.batched_augment
        if aug.mean.device != images.device:
            aug.to(images.device)  # normalisation constants live with the batch
        return aug(images)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """With ``gpu_augment``: turn a raw training batch ``(indexes, uint8 images, targets[, extras])``
        into ``(indexes, [views], targets[, extras])`` on the batch's device; every other batch passes unchanged."""
        if (
            self.gpu_augment
            and isinstance(batch, (list, tuple))
            and len(batch) in (3, 4)
            and isinstance(batch[1], torch.Tensor)
            and batch[1].dtype == torch.uint8
        ):
            return [batch[0], self.augment_on_device(batch[1]), *batch[2:]]
        return batch

    def _dali_train_loader(self, task: int, indices: torch.Tensor) -> Any:
        """The DALI pipeline over task ``task``'s files (``indices`` into the training set)."""
        from cassle.data.dali import build_pretrain_loader

        mean, std = self._mean_std()
        trainer = getattr(self, "trainer", None)
        paths = [self.train_dataset.paths[int(i)] for i in indices]  # type: ignore[attr-defined]
        return build_pretrain_loader(
            paths,
            self._train_targets[indices],
            indices,
            batch_size=self.batch_size,
            crop_size=self._crop_size(),
            mean=mean,
            std=std,
            view_params=self._view_params(),
            seed=self.seed + task,
            num_threads=max(1, self.num_workers),
            device_id=_device_id(trainer),
            shard_id=self._global_rank(),
            num_shards=self._world_size(),
        )


def _device_id(trainer: Any) -> int | None:
    """CUDA device index of the trainer's root device, ``None`` on the CPU (DALI then runs on the CPU)."""
    if trainer is None:
        return None
    device = getattr(getattr(trainer, "strategy", None), "root_device", None)
    if device is None or getattr(device, "type", "cpu") != "cuda":
        return None
    return int(device.index or 0)
