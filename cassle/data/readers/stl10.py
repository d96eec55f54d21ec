"""STL-10's binary files (column-major images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cassle.data.base import TensorImageDataset
from cassle.data.readers.common import STL10_CLASSES, _fail, _to_tensor_dataset

_STL_IMAGE_BYTES = 3 * 96 * 96  # 27648


def _stl_dir(root: Path) -> Path:
    for folder in (root / "stl10_binary", root):
        if (folder / "train_X.bin").is_file() or (folder / "test_X.bin").is_file():
            return folder
    _fail(
        f"STL-10 not found: expected {root / 'stl10_binary'}/{{train_X.bin,train_y.bin,test_X.bin,test_y.bin}}. "
        "Pass --data_dir pointing to the folder that contains stl10_binary/ (extracted from stl10_binary.tar.gz)."
    )


def _stl_files(root: Path, train: bool) -> tuple[Path, Path, int]:
    """Return (X path, y path, number of images), validating presence and sizes."""
    folder = _stl_dir(root)
    split = "train" if train else "test"
    x_path, y_path = folder / f"{split}_X.bin", folder / f"{split}_y.bin"
    missing = [p.name for p in (x_path, y_path) if not p.is_file()]
    if missing:
        _fail(f"STL-10 is incomplete: {folder} lacks {', '.join(missing)}. Re-extract stl10_binary.tar.gz.")
    x_size, y_size = x_path.stat().st_size, y_path.stat().st_size
    if x_size == 0 or x_size % _STL_IMAGE_BYTES:
        _fail(
            f"{x_path} has {x_size} bytes, not a positive multiple of {_STL_IMAGE_BYTES} (3×96×96 per image); "
            "the file is truncated or corrupt. Re-extract stl10_binary.tar.gz."
        )
    n = x_size // _STL_IMAGE_BYTES
    if y_size != n:
        _fail(f"{y_path} has {y_size} labels but {x_path.name} holds {n} images. Re-extract stl10_binary.tar.gz.")
    return x_path, y_path, n


def _read_stl10(root: Path | None, train: bool) -> TensorImageDataset:
    assert root is not None
    x_path, y_path, n = _stl_files(root, train)
    # Each channel is stored column-major: swap H and W to get row-major N×3×96×96.
    images = np.fromfile(x_path, dtype=np.uint8).reshape(n, 3, 96, 96).transpose(0, 1, 3, 2)
    labels = np.fromfile(y_path, dtype=np.uint8).astype(np.int64)
    if labels.min() < 1 or labels.max() > 10:
        _fail(f"{y_path} has labels outside 1..10 (found {labels.min()}..{labels.max()}); the file is corrupt.")
    names = list(STL10_CLASSES)
    names_file = x_path.parent / "class_names.txt"
    if names_file.is_file():
        read = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
        if len(read) == 10:
            names = read
    return _to_tensor_dataset(images, labels - 1, names)


def _check_stl10(root: Path | None) -> None:
    assert root is not None
    _stl_files(root, True)
    _stl_files(root, False)
