"""Dataset readers: each one reads a dataset's own on-disk layout under ``data_dir``.

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

import gzip
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NoReturn

import numpy as np
import torch

from cassle.data.base import FileImageDataset, ImageDataset, TensorImageDataset
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


#: Domain order of CaSSLe's domain-incremental DomainNet runs (task t = domain t).
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


# --------------------------------------------------------------------------- helpers


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


# --------------------------------------------------------------------------- digits


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


# --------------------------------------------------------------------------- Fashion-MNIST

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


# --------------------------------------------------------------------------- CIFAR


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


def _unpickle(path: Path, what: str) -> dict:
    """Load one CIFAR python pickle (only ever point --data_dir at archives you trust)."""
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
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


# --------------------------------------------------------------------------- STL-10

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


# --------------------------------------------------------------------------- folders


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))


def _images_under(folder: Path) -> list[str]:
    """All image files under ``folder`` (recursive, symlinks followed), in sorted order."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(os.path.join(dirpath, f) for f in sorted(filenames) if _is_image(f))
    return out


def _has_image(folder: Path) -> bool:
    """Cheap: stop at the first image found under ``folder``."""
    for _, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if any(_is_image(f) for f in filenames):
            return True
    return False


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
            if not _has_image(root / split / classes[0]):
                _fail(f"{title}: class folder {root / split / classes[0]} has no images. {fix}")

    return read, check


# --------------------------------------------------------------------------- DomainNet


def _domainnet_lists(root: Path) -> dict[tuple[str, str], Path]:
    _require_dir(
        root,
        "DomainNet",
        "Pass --data_dir pointing to the DomainNet root (domain folders and <domain>_train.txt lists).",
    )
    lists = {(d, s): root / f"{d}_{s}.txt" for d in DOMAINNET_DOMAINS for s in ("train", "test")}
    missing = [p.name for p in lists.values() if not p.is_file()]
    if missing:
        _fail(
            f"DomainNet is incomplete: {root} lacks the split lists {', '.join(missing)}. Every domain "
            f"({', '.join(DOMAINNET_DOMAINS)}) needs <domain>_train.txt and <domain>_test.txt with lines "
            "'<domain>/<class>/<file>.jpg <label>' next to the extracted domain folders."
        )
    return lists


def _parse_domainnet_list(path: Path, domain: str) -> list[tuple[str, int]]:
    entries = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            _fail(f"{path}:{n}: expected '<domain>/<class>/<file>.jpg <label>', got {line.strip()!r}. Fix the list.")
        rel, label = fields[0], int(fields[1])
        parts = rel.split("/")
        if len(parts) < 3 or parts[0] != domain or label < 0:
            _fail(
                f"{path}:{n}: {line.strip()!r} should read '{domain}/<class>/<file> <label>' with label >= 0. "
                "Fix the list or use the official DomainNet split files."
            )
        entries.append((rel, label))
    if not entries:
        _fail(f"{path} is empty; it should list the {domain} images, one '<path> <label>' per line.")
    return entries


def _domainnet_classes(lists: dict[tuple[str, str], list[tuple[str, int]]]) -> list[str]:
    """Class names indexed by label, from the class folder in every list's paths."""
    by_label: dict[int, str] = {}
    for entries in lists.values():
        for rel, label in entries:
            cls = rel.split("/")[1]
            if by_label.setdefault(label, cls) != cls:
                _fail(
                    f"DomainNet lists disagree: label {label} is used for both {by_label[label]!r} and {cls!r}. "
                    "Use the official split lists, where every class folder has one label."
                )
    return [by_label.get(i, f"class_{i}") for i in range(max(by_label) + 1)]


def _read_domainnet(root: Path | None, train: bool) -> FileImageDataset:
    assert root is not None
    list_paths = _domainnet_lists(root)
    parsed = {key: _parse_domainnet_list(p, key[0]) for key, p in list_paths.items()}
    classes = _domainnet_classes(parsed)
    split = "train" if train else "test"
    paths: list[str] = []
    targets: list[int] = []
    domains: list[int] = []
    for d_idx, domain in enumerate(DOMAINNET_DOMAINS):
        entries = parsed[(domain, split)]
        first = root / entries[0][0]
        if not first.is_file():
            _fail(
                f"DomainNet images missing: {first} (listed in {list_paths[(domain, split)].name}) does not exist. "
                f"Extract {domain}.zip into {root}."
            )
        paths.extend(str(root / rel) for rel, _ in entries)
        targets.extend(label for _, label in entries)
        domains.extend([d_idx] * len(entries))
    return FileImageDataset(
        paths,
        torch.tensor(targets, dtype=torch.long),
        num_classes=len(classes),
        classes=classes,
        domains=torch.tensor(domains, dtype=torch.long),
        domain_names=list(DOMAINNET_DOMAINS),
    )


def _check_domainnet(root: Path | None) -> None:
    assert root is not None
    for (domain, split), path in _domainnet_lists(root).items():
        with open(path) as f:
            first_line = next((line for line in f if line.strip()), "")
        if not first_line:
            _fail(f"{path} is empty; it should list the {domain} images, one '<path> <label>' per line.")
        rel = first_line.split()[0]
        if not (root / rel).is_file():
            _fail(
                f"DomainNet images missing: {root / rel} (listed in {path.name}) does not exist. "
                f"Extract {domain}.zip into {root}."
            )


# --------------------------------------------------------------------------- custom

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
    if not _has_image(train_dir):
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
