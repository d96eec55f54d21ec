"""Fashion-MNIST in its idx format (``.gz`` or raw), Debian's or torchvision's layout."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO

import numpy as np

from cassle.data.base import TensorImageDataset
from cassle.data.readers.common import FASHION_MNIST_CLASSES, _fail, _to_tensor_dataset

_FMNIST_FILES = {
    (True, "images"): "train-images-idx3-ubyte",
    (True, "labels"): "train-labels-idx1-ubyte",
    (False, "images"): "t10k-images-idx3-ubyte",
    (False, "labels"): "t10k-labels-idx1-ubyte",
}
_IDX_MAGIC = {"images": 2051, "labels": 2049}


def _fmnist_missing_msg(root: Path, missing: list[str]) -> str:
    return (
        f"Fashion-MNIST not found: {root} lacks {', '.join(missing)} (plain or .gz idx files). "
        "Install Debian's package with `apt-get install dataset-fashion-mnist` "
        "(files go to /usr/share/datasets/fashion-mnist) or pass --data_dir pointing to the "
        "folder that holds the four idx files."
    )


def _fmnist_file(root: Path, base: str) -> Path | None:
    for folder in (root, root / "FashionMNIST" / "raw", root / "raw"):
        for name in (base, base + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _fmnist_paths(root: Path, train: bool | None = None) -> dict[tuple[bool, str], Path]:
    keys = [k for k in _FMNIST_FILES if train is None or k[0] == train]
    found = {k: _fmnist_file(root, _FMNIST_FILES[k]) for k in keys}
    missing = [_FMNIST_FILES[k] for k, p in found.items() if p is None]
    if missing:
        _fail(_fmnist_missing_msg(root, missing))
    return found  # type: ignore[return-value]


def _open_maybe_gzip(path: Path) -> IO[bytes]:
    """Open ``path`` for reading, transparently gunzipping it when it starts with the gzip magic."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _idx_header(path: Path, kind: str, head: bytes) -> tuple[int, ...]:
    """Parse and validate an idx header (magic, big-endian dims); return the dims."""
    fix = "The file is corrupt or not a Fashion-MNIST idx file; reinstall dataset-fashion-mnist or re-download it."
    if len(head) < 4:
        _fail(f"{path} is too short to be an idx file ({len(head)} bytes). {fix}")
    magic = int.from_bytes(head[:4], "big")
    if magic != _IDX_MAGIC[kind]:
        _fail(f"{path} has idx magic number {magic}, expected {_IDX_MAGIC[kind]} for {kind}. {fix}")
    ndim = head[3]
    if len(head) < 4 + 4 * ndim:
        _fail(f"{path} has a truncated idx header. {fix}")
    return tuple(int(d) for d in np.frombuffer(head[4 : 4 + 4 * ndim], dtype=">i4"))


def _read_idx(path: Path, kind: str) -> np.ndarray:
    try:
        with _open_maybe_gzip(path) as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        _fail(f"Could not read {path}: {e}. The file is corrupt; reinstall or re-download it.")
    dims = _idx_header(path, kind, raw[:16])
    offset = 4 + 4 * len(dims)
    data = np.frombuffer(raw, dtype=np.uint8, offset=offset)
    expected = int(np.prod(dims))
    if data.size != expected:
        _fail(
            f"{path} holds {data.size} bytes of data but its header {dims} announces {expected}. "
            "The file is truncated or corrupt; reinstall or re-download it."
        )
    return data.reshape(dims).copy()  # frombuffer views are read-only


def _read_fashion_mnist(root: Path | None, train: bool) -> TensorImageDataset:
    assert root is not None
    paths = _fmnist_paths(root, train)
    images = _read_idx(paths[(train, "images")], "images")
    labels = _read_idx(paths[(train, "labels")], "labels")
    if images.ndim != 3:
        _fail(f"{paths[(train, 'images')]} has dims {images.shape}, expected N×28×28; it is not an image file.")
    if len(images) != len(labels):
        _fail(
            f"Fashion-MNIST split mismatch: {len(images)} images but {len(labels)} labels "
            f"({paths[(train, 'images')].name} vs {paths[(train, 'labels')].name}); reinstall the dataset."
        )
    if labels.size and labels.max() >= 10:
        _fail(f"{paths[(train, 'labels')]} has label {int(labels.max())}, expected 0..9; the file is corrupt.")
    return _to_tensor_dataset(images[:, None], labels, FASHION_MNIST_CLASSES)


def _check_fashion_mnist(root: Path | None) -> None:
    assert root is not None
    paths = _fmnist_paths(root)
    for train in (True, False):
        counts = []
        for kind in ("images", "labels"):
            path = paths[(train, kind)]
            try:
                with _open_maybe_gzip(path) as f:
                    head = f.read(16)
            except (OSError, EOFError) as e:
                _fail(f"Could not read {path}: {e}. The file is corrupt; reinstall or re-download it.")
            counts.append(_idx_header(path, kind, head)[0])
        if counts[0] != counts[1]:
            _fail(
                f"Fashion-MNIST split mismatch: {counts[0]} images but {counts[1]} labels in the "
                f"{'train' if train else 't10k'} files under {root}; reinstall the dataset."
            )
