"""Class-folder datasets: ImageNet / ImageNet-100 (``train/<class>/``, ``val/<class>/``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from cassle.data.base import FileImageDataset, decode_file
from cassle.data.readers.common import (
    IMAGE_EXTENSIONS,
    Checker,
    Reader,
    _fail,
    _is_image,
    _require_dir,
)


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))


def _images_under(folder: Path) -> list[str]:
    """All image files under ``folder`` (recursive, symlinks followed), in sorted order."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(os.path.join(dirpath, f) for f in sorted(filenames) if _is_image(f))
    return out


def _first_image(folder: Path) -> str | None:
    """Cheap: the first image file found under ``folder`` (``None`` if there is none)."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if _is_image(f):
                return os.path.join(dirpath, f)
    return None


def _has_image(folder: Path) -> bool:
    return _first_image(folder) is not None


def _check_decodes(folder: Path) -> bool:
    """Cheap start-up check: the first image under ``folder`` decodes (a file of another format, or a corrupt
    one, is named now, not mid-run; every other file is named by the loader if it fails). ``False``: none."""
    first = _first_image(folder)
    if first is None:
        return False
    decode_file(first)
    return True


def _folder_classes(split_dir: Path, title: str, fix: str) -> list[str]:
    _require_dir(split_dir, title, fix)
    classes = _class_dirs(split_dir)
    if not classes:
        _fail(f"{title}: {split_dir} has no class folders; images must be in {split_dir}/<class>/<image>. {fix}")
    return classes


def _check_same_classes(train_classes: list[str], val_classes: list[str], val_dir: Path, subset_ok: bool) -> None:
    extra = sorted(set(val_classes) - set(train_classes))
    lacking = [] if subset_ok else sorted(set(train_classes) - set(val_classes))
    if extra or lacking:
        parts = []
        if extra:
            parts.append(f"{len(extra)} classes not in train (e.g. {', '.join(extra[:5])})")
        if lacking:
            parts.append(f"lacks {len(lacking)} train classes (e.g. {', '.join(lacking[:5])})")
        _fail(
            f"Class folders differ between train and {val_dir.name}: {val_dir} has {'; '.join(parts)}. "
            f"Make {val_dir} hold the same <class>/ folders as the train folder."
        )


def _read_class_folders(split_dir: Path, classes: list[str], title: str) -> FileImageDataset:
    paths: list[str] = []
    targets: list[int] = []
    for label, cls in enumerate(classes):
        if not (split_dir / cls).is_dir():
            continue  # class absent from this split (allowed for custom val folders)
        files = _images_under(split_dir / cls)
        if not files:
            _fail(
                f"{title}: class folder {split_dir / cls} has no images ({', '.join(IMAGE_EXTENSIONS)}). "
                "Add its images or remove the folder."
            )
        paths.extend(files)
        targets.extend([label] * len(files))
    return FileImageDataset(paths, torch.tensor(targets, dtype=torch.long), num_classes=len(classes), classes=classes)


def _imagenet_reader(title: str) -> tuple[Reader, Checker]:
    fix = (
        f"Pass --data_dir pointing to the {title} root that contains train/<class>/ and val/<class>/ "
        "(sort the official flat val images into class folders first)."
    )

    def classes_of(root: Path) -> tuple[list[str], list[str]]:
        train_classes = _folder_classes(root / "train", f"{title} train split", fix)
        val_classes = _folder_classes(root / "val", f"{title} val split", fix)
        _check_same_classes(train_classes, val_classes, root / "val", subset_ok=False)
        return train_classes, val_classes

    def read(root: Path | None, train: bool) -> FileImageDataset:
        assert root is not None
        classes, _ = classes_of(root)
        return _read_class_folders(root / ("train" if train else "val"), classes, title)

    def check(root: Path | None) -> None:
        assert root is not None
        classes, _ = classes_of(root)
        for split in ("train", "val"):
            if not _check_decodes(root / split / classes[0]):
                _fail(f"{title}: class folder {root / split / classes[0]} has no images. {fix}")

    return read, check
