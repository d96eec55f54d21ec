"""The dataset registry: each dataset's reader (one module per format in :mod:`cassle.data.readers`), statistics and layout.

Nothing here downloads. Every reader returns one of the containers of
:mod:`cassle.data.base`: in-memory datasets (digits, Fashion-MNIST, CIFAR,
STL-10) a :class:`~cassle.data.base.TensorImageDataset` holding ``uint8``
``N×C×H×W`` images, folder datasets (ImageNet, DomainNet, custom) a
:class:`~cassle.data.base.FileImageDataset` of paths decoded lazily.

Public API
----------
``DATASETS``
    ``name -> DatasetInfo`` (reader, normalisation statistics, native image
    size, storage kind, default data directory).
``load_dataset(name, data_dir, train, no_labels=False)``
    Read the train or test split. ``no_labels=True`` drops the labels of the
    returned split (targets ``-1``, ``num_classes`` 0; DomainNet keeps its
    domains).
``check_dataset(name, data_dir)``
    Cheap presence/layout check of both splits (headers and file sizes only),
    meant to run before training starts.

Every problem is raised as :class:`DatasetError` with one message that names
what is wrong and how to fix it.

Expected layouts (``<d>`` is ``data_dir``)::

    digits        embedded (scikit-learn), data_dir ignored
    fashion_mnist <d>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
                  (also <d>/FashionMNIST/raw/..., torchvision's layout)
    cifar10       <d>/cifar-10-batches-py/{data_batch_1..5,test_batch[,batches.meta]}
    cifar100      <d>/cifar-100-python/{train,test[,meta]}
    stl10         <d>/stl10_binary/{train,test}_{X,y}.bin [+ class_names.txt]
    imagenet(100) <d>/{train,val}/<class>/*.{jpg,jpeg,png}
    domainnet     <d>/<domain>_{train,test}.txt + <d>/<domain>/<class>/<file>.jpg
    custom        <d>/train/<class>/... and optional <d>/val/<class>/... (or test/);
                  with no_labels the train folder may be flat (or <d> itself).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from cassle.data.base import ImageDataset
from cassle.data.readers.cifar import _CIFAR10, _CIFAR100, _check_cifar, _read_cifar
from cassle.data.readers.common import (  # noqa: F401  (re-exported)
    CIFAR10_CLASSES,
    DOMAINNET_DOMAINS,
    FASHION_MNIST_CLASSES,
    IMAGE_EXTENSIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    STL10_CLASSES,
    Checker,
    Reader,
    _fail,
)
from cassle.data.readers.custom import _check_custom, _read_custom
from cassle.data.readers.digits import _check_digits, _read_digits
from cassle.data.readers.domainnet import _check_domainnet, _read_domainnet
from cassle.data.readers.fashion_mnist import _check_fashion_mnist, _read_fashion_mnist
from cassle.data.readers.folders import _imagenet_reader
from cassle.data.readers.stl10 import _check_stl10, _read_stl10
from cassle.errors import DatasetError  # noqa: F401  (re-exported)

__all__ = [
    "DatasetError",
    "DatasetInfo",
    "DATASETS",
    "DOMAINNET_DOMAINS",
    "IMAGE_EXTENSIONS",
    "get_info",
    "load_dataset",
    "check_dataset",
]


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the framework needs to know about one dataset.

    Attributes:
        reader: ``reader(root, train) -> ImageDataset | None`` reading one split
            (labels included; :func:`load_dataset` strips them for ``no_labels``).
        checker: ``checker(root)`` validating both splits cheaply, raising :class:`DatasetError`.
        mean: per-channel normalisation mean (3 values; grayscale repeats its grey mean).
        std: per-channel normalisation std (3 values).
        image_size: native side length in pixels, ``None`` for folder datasets.
        in_memory: ``True`` when the reader returns a :class:`TensorImageDataset`.
        default_data_dir: used when ``data_dir`` is ``None``; ``None`` means "must be given".
        num_classes: number of classes when fixed by the dataset, else ``None``.
        needs_data_dir: ``False`` only for the embedded dataset.
    """

    reader: Reader
    checker: Checker
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int | None
    in_memory: bool
    default_data_dir: str | None = None
    num_classes: int | None = None
    needs_data_dir: bool = True


# --------------------------------------------------------------------------- registry

_imagenet_read, _imagenet_check = _imagenet_reader("ImageNet")
_imagenet100_read, _imagenet100_check = _imagenet_reader("ImageNet-100")

DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        _read_digits,
        _check_digits,
        mean=(0.3053, 0.3053, 0.3053),
        std=(0.3759, 0.3759, 0.3759),
        image_size=8,
        in_memory=True,
        num_classes=10,
        needs_data_dir=False,
    ),
    "fashion_mnist": DatasetInfo(
        _read_fashion_mnist,
        _check_fashion_mnist,
        mean=(0.2860, 0.2860, 0.2860),
        std=(0.3530, 0.3530, 0.3530),
        image_size=28,
        in_memory=True,
        default_data_dir="/usr/share/datasets/fashion-mnist",
        num_classes=10,
    ),
    "cifar10": DatasetInfo(
        lambda root, train: _read_cifar(_CIFAR10, root, train),  # type: ignore[arg-type]
        lambda root: _check_cifar(_CIFAR10, root),  # type: ignore[arg-type]
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        image_size=32,
        in_memory=True,
        num_classes=10,
    ),
    "cifar100": DatasetInfo(
        lambda root, train: _read_cifar(_CIFAR100, root, train),  # type: ignore[arg-type]
        lambda root: _check_cifar(_CIFAR100, root),  # type: ignore[arg-type]
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        image_size=32,
        in_memory=True,
        num_classes=100,
    ),
    "stl10": DatasetInfo(
        _read_stl10,
        _check_stl10,
        mean=(0.4467, 0.4398, 0.4066),
        std=(0.2603, 0.2566, 0.2713),
        image_size=96,
        in_memory=True,
        num_classes=10,
    ),
    "imagenet": DatasetInfo(
        _imagenet_read, _imagenet_check, IMAGENET_MEAN, IMAGENET_STD, image_size=None, in_memory=False
    ),
    "imagenet100": DatasetInfo(
        _imagenet100_read,
        _imagenet100_check,
        IMAGENET_MEAN,
        IMAGENET_STD,
        image_size=None,
        in_memory=False,
        num_classes=100,
    ),
    "domainnet": DatasetInfo(
        _read_domainnet,
        _check_domainnet,
        IMAGENET_MEAN,
        IMAGENET_STD,
        image_size=None,
        in_memory=False,
        num_classes=345,
    ),
    # custom's reader needs no_labels; load_dataset/check_dataset dispatch it specially.
    "custom": DatasetInfo(
        lambda root, train: _read_custom(root, train, False),  # type: ignore[arg-type]
        lambda root: _check_custom(root, False),  # type: ignore[arg-type]
        IMAGENET_MEAN,
        IMAGENET_STD,
        image_size=None,
        in_memory=False,
    ),
}


def get_info(name: str) -> DatasetInfo:
    """Return the :class:`DatasetInfo` of ``name`` or raise :class:`DatasetError` listing the valid names."""
    if name not in DATASETS:
        _fail(f"Unknown dataset {name!r}. Choose one of: {', '.join(sorted(DATASETS))}.")
    return DATASETS[name]


#: the on-disk layout each dataset expects under ``--data_dir`` (quoted in errors)
LAYOUTS = {
    "fashion_mnist": "the four idx files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz",
    "cifar10": "cifar-10-batches-py/ (data_batch_1..5, test_batch: torchvision's python pickle layout)",
    "cifar100": "cifar-100-python/ (train, test, meta: torchvision's python pickle layout)",
    "stl10": "stl10_binary/ (train_X.bin, train_y.bin, test_X.bin, test_y.bin)",
    "imagenet": "train/<class>/*.JPEG and val/<class>/*.JPEG",
    "imagenet100": "train/<class>/*.JPEG and val/<class>/*.JPEG (100 classes)",
    "domainnet": "<domain>/<class>/*.jpg with <domain>_train.txt and <domain>_test.txt lists",
    "custom": "train/<class>/<images> (+ optional val/<class>/...), or a flat folder of images with --no_labels",
}


def _resolve_root(name: str, info: DatasetInfo, data_dir: str | os.PathLike | None) -> Path | None:
    if not info.needs_data_dir:
        return None
    if data_dir is None or str(data_dir) == "":
        if info.default_data_dir is None:
            _fail(
                f"Dataset {name!r} is read from disk: pass --data_dir pointing to its folder (nothing is downloaded)."
            )
        data_dir = info.default_data_dir
    root = Path(os.path.expanduser(str(data_dir)))
    if not root.is_dir():
        extra = (
            " Install it with `apt-get install dataset-fashion-mnist` or pass --data_dir."
            if name == "fashion_mnist"
            else " Pass --data_dir pointing to the dataset's folder."
        )
        if name in LAYOUTS:
            extra += f" It must hold {LAYOUTS[name]}."
        _fail(f"Data directory for {name!r} not found: {root} does not exist or is not a directory.{extra}")
    return root


def _strip_labels(ds: ImageDataset) -> ImageDataset:
    """Drop the labels of ``ds`` in place (targets -1, no classes); domains stay."""
    ds.targets = torch.full_like(ds.targets, -1)
    ds.num_classes = 0
    ds.classes = []
    return ds


def load_dataset(
    name: str, data_dir: str | os.PathLike | None, train: bool, no_labels: bool = False
) -> ImageDataset | None:
    """Read one split of a dataset from its own on-disk layout.

    Args:
        name: a key of :data:`DATASETS`.
        data_dir: the dataset's folder; ``None`` uses the dataset's default folder
            (ignored by ``digits``).
        train: ``True`` for the train split, ``False`` for the test/val split.
        no_labels: drop the labels (targets ``-1``, ``num_classes`` 0). For ``custom``
            this also allows a flat folder of images.

    Returns:
        The dataset; ``None`` only for ``custom`` with ``train=False`` when no
        ``val/`` (or ``test/``) folder exists — probes are then skipped.

    Raises:
        DatasetError: unknown name, missing or malformed files (the message says how to fix it).
    """
    info = get_info(name)
    root = _resolve_root(name, info, data_dir)
    if name == "custom":
        assert root is not None
        return _read_custom(root, train, no_labels)
    ds = info.reader(root, train)
    if ds is not None and no_labels:
        _strip_labels(ds)
    return ds


def check_dataset(name: str, data_dir: str | os.PathLike | None, no_labels: bool = False) -> Path | None:
    """Validate that a dataset is present and laid out as expected, without loading it.

    Only directory listings, file sizes and headers are read, so this is fast
    enough to run before training starts.

    Returns:
        The resolved data directory (``None`` for the embedded ``digits``).

    Raises:
        DatasetError: the same problems :func:`load_dataset` would hit, with a fix.
    """
    info = get_info(name)
    root = _resolve_root(name, info, data_dir)
    if name == "custom":
        assert root is not None
        _check_custom(root, no_labels)
    else:
        info.checker(root)
    return root
