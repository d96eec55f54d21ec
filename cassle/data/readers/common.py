"""Pieces every reader shares: the dataset constants, the error helper, image-name checks, tensor packing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

from cassle.data.base import ImageDataset, TensorImageDataset
from cassle.errors import DatasetError

DOMAINNET_DOMAINS: tuple[str, ...] = ("real", "quickdraw", "painting", "sketch", "infograph", "clipart")

#: File name endings (lower-cased) accepted as images in folder datasets.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")

Reader = Callable[[Path | None, bool], ImageDataset | None]
Checker = Callable[[Path | None], None]


def _fail(msg: str) -> NoReturn:
    raise DatasetError(msg)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _require_dir(path: Path, what: str, fix: str) -> None:
    if not path.is_dir():
        _fail(f"{what} not found: {path} is not a directory. {fix}")


def _to_tensor_dataset(images: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> TensorImageDataset:
    return TensorImageDataset(
        torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)),
        torch.from_numpy(np.asarray(labels, dtype=np.int64)),
        num_classes=len(classes),
        classes=list(classes),
    )
