"""Custom folders: ``train/<class>/`` (or flat, unlabelled) and an optional ``val/``."""

from __future__ import annotations

from pathlib import Path

import torch

from cassle.data.base import FileImageDataset, ImageDataset
from cassle.data.readers.common import IMAGE_EXTENSIONS, _fail, _require_dir
from cassle.data.readers.folders import (
    _check_decodes,
    _check_same_classes,
    _class_dirs,
    _has_image,
    _images_under,
    _read_class_folders,
)

_CUSTOM_FIX = "Pass --data_dir pointing to a folder with train/<class>/<image> (and optionally val/<class>/...)."


def _custom_dirs(root: Path, no_labels: bool) -> tuple[Path, Path | None]:
    """Return (train folder, val/test folder or None)."""
    _require_dir(root, "Custom dataset", _CUSTOM_FIX)
    val = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if (root / "train").is_dir():
        return root / "train", val
    if no_labels and val is None:
        return root, None  # a flat folder of images (or class folders) used as is
    _fail(f"Custom dataset: {root / 'train'} not found. {_CUSTOM_FIX}")


def _read_custom(root: Path, train: bool, no_labels: bool) -> ImageDataset | None:
    train_dir, val_dir = _custom_dirs(root, no_labels)
    split_dir = train_dir if train else val_dir
    if split_dir is None:
        return None
    if no_labels:
        files = _images_under(split_dir)
        if not files:
            _fail(f"Custom dataset: no images ({', '.join(IMAGE_EXTENSIONS)}) under {split_dir}. {_CUSTOM_FIX}")
        return FileImageDataset(files, torch.full((len(files),), -1, dtype=torch.long), num_classes=0)
    classes = _class_dirs(train_dir)
    if not classes:
        hint = " It holds loose images: pass --no_labels to train without labels." if _has_image(train_dir) else ""
        _fail(f"Custom dataset: {train_dir} has no class folders.{hint} {_CUSTOM_FIX}")
    if not train:
        _check_same_classes(classes, _class_dirs(split_dir), split_dir, subset_ok=True)
    return _read_class_folders(split_dir, classes, "Custom dataset")


def _check_custom(root: Path, no_labels: bool) -> None:
    train_dir, val_dir = _custom_dirs(root, no_labels)
    if not _check_decodes(train_dir):
        _fail(f"Custom dataset: no images ({', '.join(IMAGE_EXTENSIONS)}) under {train_dir}. {_CUSTOM_FIX}")
    if no_labels:
        return
    classes = _class_dirs(train_dir)
    if not classes:
        _fail(
            f"Custom dataset: {train_dir} has no class folders. Pass --no_labels to train without labels. {_CUSTOM_FIX}"
        )
    if val_dir is not None:
        _check_same_classes(classes, _class_dirs(val_dir), val_dir, subset_ok=True)
        _check_decodes(val_dir)
