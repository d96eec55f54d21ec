"""CIFAR-10 / CIFAR-100, the python version's pickled batches."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cassle.data.base import TensorImageDataset
from cassle.data.readers.common import CIFAR10_CLASSES, _fail, _to_tensor_dataset


@dataclass(frozen=True)
class _CifarSpec:
    title: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes
    meta_file: str
    names_key: bytes
    default_names: tuple[str, ...]
    archive: str


_CIFAR10 = _CifarSpec(
    "CIFAR-10",
    "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("test_batch",),
    b"labels",
    "batches.meta",
    b"label_names",
    CIFAR10_CLASSES,
    "cifar-10-python.tar.gz",
)
_CIFAR100 = _CifarSpec(
    "CIFAR-100",
    "cifar-100-python",
    ("train",),
    ("test",),
    b"fine_labels",
    "meta",
    b"fine_label_names",
    tuple(str(i) for i in range(100)),
    "cifar-100-python.tar.gz",
)


def _cifar_dir(root: Path, spec: _CifarSpec) -> Path:
    """The batches folder: ``root/<folder>`` or ``root`` itself when it holds the batches."""
    needed = spec.train_files + spec.test_files
    for folder in (root / spec.folder, root):
        if folder.is_dir() and any((folder / f).is_file() for f in needed):
            missing = [f for f in needed if not (folder / f).is_file()]
            if missing:
                _fail(
                    f"{spec.title} is incomplete: {folder} lacks {', '.join(missing)}. "
                    f"Re-extract {spec.archive} into {folder.parent}."
                )
            return folder
    _fail(
        f"{spec.title} not found: expected {root / spec.folder}/{{{','.join(needed)}}} "
        f"(torchvision's python pickle layout). Pass --data_dir pointing to the folder that "
        f"contains {spec.folder}/ (extracted from {spec.archive})."
    )


#: the only globals a CIFAR batch may name: numpy's array reconstruction (numpy 1 and 2 module paths)
_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle that names a global outside :data:`_CIFAR_GLOBALS`."""


class _CifarUnpickler(pickle.Unpickler):
    """Admits what the CIFAR format holds (dicts, lists, bytes / str, numbers, numpy arrays) and nothing else:
    a poisoned batch cannot run code."""

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) in _CIFAR_GLOBALS:
            return super().find_class(module, name)
        raise _RefusedGlobal(f"refused global {module}.{name}: a CIFAR batch holds only arrays and lists")


def _unpickle(path: Path, what: str) -> dict:
    """Load one CIFAR python pickle with :class:`_CifarUnpickler` (no code runs, whatever the file holds)."""
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except _RefusedGlobal as e:
        _fail(f"{path} is not a plain {what} batch ({e}); it was refused unread. Re-extract the archive.")
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        _fail(f"Could not read {path} as a {what} pickle ({type(e).__name__}: {e}). Re-extract the archive.")
    if not isinstance(obj, dict):
        _fail(f"{path} is not a {what} batch (a pickled dict was expected). Re-extract the archive.")
    return obj


def _read_cifar(spec: _CifarSpec, root: Path, train: bool) -> TensorImageDataset:
    folder = _cifar_dir(root, spec)
    images, labels = [], []
    for name in spec.train_files if train else spec.test_files:
        batch = _unpickle(folder / name, spec.title)
        if b"data" not in batch or spec.label_key not in batch:
            _fail(
                f"{folder / name} lacks the keys b'data' and {spec.label_key!r}; it is not a {spec.title} "
                f"batch. Re-extract {spec.archive}."
            )
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(batch[spec.label_key]):
            _fail(
                f"{folder / name}: b'data' has shape {data.shape} for {len(batch[spec.label_key])} labels, "
                f"expected N×3072. Re-extract {spec.archive}."
            )
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[spec.label_key], dtype=np.int64))
    names = list(spec.default_names)
    meta_path = folder / spec.meta_file
    if meta_path.is_file():
        meta = _unpickle(meta_path, f"{spec.title} meta")
        if spec.names_key in meta:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[spec.names_key]]
    y = np.concatenate(labels)
    if y.size and (y.min() < 0 or y.max() >= len(names)):
        _fail(f"{spec.title} labels under {folder} fall outside 0..{len(names) - 1}; re-extract {spec.archive}.")
    return _to_tensor_dataset(np.concatenate(images), y, names)


def _check_cifar(spec: _CifarSpec, root: Path) -> None:
    """Presence check: every batch file exists and is non-empty (contents are not unpickled)."""
    folder = _cifar_dir(root, spec)
    empty = [f for f in spec.train_files + spec.test_files if (folder / f).stat().st_size == 0]
    if empty:
        _fail(f"{spec.title} is corrupt: {', '.join(empty)} in {folder} are empty. Re-extract {spec.archive}.")
