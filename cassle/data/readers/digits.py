"""The embedded scikit-learn handwritten digits (8×8, no files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cassle.data.base import TensorImageDataset
from cassle.data.readers.common import _fail, _to_tensor_dataset


def _digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (uint8 images N×1×8×8, labels, is_test mask) for scikit-learn's digits."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * 255.0 / 16.0).astype(np.uint8)[:, None]
    labels = digits.target.astype(np.int64)
    is_test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        is_test[idx[4::5]] = True  # every 5th sample of each class: positions 4, 9, ...
    return images, labels, is_test


def _read_digits(root: Path | None, train: bool) -> TensorImageDataset:
    images, labels, is_test = _digits_split()
    keep = ~is_test if train else is_test
    return _to_tensor_dataset(images[keep], labels[keep], [str(c) for c in range(10)])


def _check_digits(root: Path | None) -> None:
    try:
        from sklearn.datasets import load_digits  # noqa: F401
    except ImportError:  # pragma: no cover - sklearn is a dependency
        _fail("The 'digits' dataset needs scikit-learn. Install it with `pip install scikit-learn`.")
