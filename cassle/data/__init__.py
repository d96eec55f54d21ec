"""Data: datasets read from their own on-disk formats, task splits, augmentations and the DataModule.

The public names import on first use (``from cassle.data import ContinualDataModule``), so importing
one submodule (``cassle.data.transforms``) stays cheap::

    ContinualDataModule, resolve_mean_std          the Lightning DataModule of a continual run
    load_dataset, check_dataset, DATASETS, get_info the dataset registry (``--dataset`` names)
    make_splits, TaskSplit, SPLIT_STRATEGIES        task splits (class / data / domain)
    ImageDataset, TensorImageDataset, FileImageDataset
    build_multiview_transform, build_eval_transform, AUGMENTATION_DEFAULTS, BatchedAugment
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "ContinualDataModule": "cassle.data.datamodule",
    "resolve_mean_std": "cassle.data.datamodule",
    "load_dataset": "cassle.data.datasets",
    "check_dataset": "cassle.data.datasets",
    "DATASETS": "cassle.data.datasets",
    "get_info": "cassle.data.datasets",
    "make_splits": "cassle.data.splits",
    "TaskSplit": "cassle.data.splits",
    "SPLIT_STRATEGIES": "cassle.data.splits",
    "ImageDataset": "cassle.data.base",
    "TensorImageDataset": "cassle.data.base",
    "FileImageDataset": "cassle.data.base",
    "build_multiview_transform": "cassle.data.transforms",
    "build_eval_transform": "cassle.data.transforms",
    "AUGMENTATION_DEFAULTS": "cassle.data.transforms",
    "BatchedAugment": "cassle.data.batched_augment",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cassle.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
