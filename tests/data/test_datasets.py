"""Dataset readers: each test writes a tiny copy in the dataset's real on-disk format."""

from __future__ import annotations

import dataclasses
import gzip
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cassle.data.base import FileImageDataset, TensorImageDataset
from cassle.data.datasets import (
    DATASETS,
    DOMAINNET_DOMAINS,
    DatasetError,
    check_dataset,
    load_dataset,
)
from cassle.data.readers.digits import _digits_split

# --------------------------------------------------------------------------- writers


def write_idx(path: Path, array: np.ndarray, magic: int, compress: bool) -> None:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def make_fashion(root: Path, compress_test: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    data = {
        "train_x": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "train_y": np.array([9, 0, 4], dtype=np.uint8),
        "test_x": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
        "test_y": np.array([1, 2], dtype=np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / "train-images-idx3-ubyte.gz", data["train_x"], 2051, True)
    write_idx(root / "train-labels-idx1-ubyte.gz", data["train_y"], 2049, True)
    sfx = ".gz" if compress_test else ""
    write_idx(root / f"t10k-images-idx3-ubyte{sfx}", data["test_x"], 2051, compress_test)
    write_idx(root / f"t10k-labels-idx1-ubyte{sfx}", data["test_y"], 2049, compress_test)
    return data


def pickle_dump(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def make_cifar10(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        data = np.full((2, 3072), i, dtype=np.uint8)
        labels = [i - 1, 9]
        pickle_dump(folder / f"data_batch_{i}", {b"data": data, b"labels": labels, b"batch_label": b"x"})
    test = np.zeros((3, 3072), dtype=np.uint8)
    # image 1, channel 2 (blue), row 5, column 7 -> channel-major offset
    test[1, 2 * 1024 + 5 * 32 + 7] = 222
    pickle_dump(folder / "test_batch", {b"data": test, b"labels": [3, 1, 8]})
    names = [f"c10_{k}".encode() for k in range(10)]
    pickle_dump(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": 2})
    return folder


def make_cifar100(root: Path) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    train = np.zeros((4, 3072), dtype=np.uint8)
    train[3, 0 * 1024 + 31 * 32 + 0] = 77  # red channel, last row, first column
    pickle_dump(folder / "train", {b"data": train, b"fine_labels": [0, 50, 99, 12], b"coarse_labels": [0, 1, 2, 3]})
    pickle_dump(folder / "test", {b"data": np.ones((2, 3072), np.uint8), b"fine_labels": [5, 6]})
    names = [f"fine{k}".encode() for k in range(100)]
    pickle_dump(folder / "meta", {b"fine_label_names": names, b"coarse_label_names": []})
    return folder


def make_stl10(root: Path) -> dict[str, np.ndarray]:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    train = np.zeros((2, 3, 96, 96), dtype=np.uint8)
    train[1, 1, 3, 7] = 200  # image 1, green, row 3, column 7 (row-major meaning)
    test = np.full((1, 3, 96, 96), 9, dtype=np.uint8)
    # On disk every channel is column-major: store the H/W transpose.
    (folder / "train_X.bin").write_bytes(train.transpose(0, 1, 3, 2).tobytes())
    (folder / "train_y.bin").write_bytes(bytes([1, 10]))
    (folder / "test_X.bin").write_bytes(test.transpose(0, 1, 3, 2).tobytes())
    (folder / "test_y.bin").write_bytes(bytes([4]))
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    return {"train": train, "test": test}


def save_png(path: Path, value: int, size: int = 5) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size, size, 3), dtype=np.uint8)
    arr[..., 0] = value
    Image.fromarray(arr).save(path)


def make_imagenet(root: Path, train_classes: Sequence[str], val_classes: Sequence[str]) -> None:
    for k, cls in enumerate(train_classes):
        save_png(root / "train" / cls / "a.png", 10 * k)
        save_png(root / "train" / cls / "b.JPEG", 10 * k, size=6)  # uppercase ext accepted
    for k, cls in enumerate(val_classes):
        save_png(root / "val" / cls / "v.png", 100 + k)


def make_domainnet(root: Path, skip_lists: Sequence[str] = ()) -> None:
    classes = ["aircraft_carrier", "zebra"]
    for d_idx, domain in enumerate(DOMAINNET_DOMAINS):
        for split, n in (("train", 2), ("test", 1)):
            lines = []
            for label, cls in enumerate(classes):
                for i in range(n):
                    rel = f"{domain}/{cls}/{domain}_{split}_{i}.png"
                    save_png(root / rel, 20 * d_idx + label)
                    lines.append(f"{rel} {label}")
            name = f"{domain}_{split}.txt"
            if name not in skip_lists:
                (root / name).write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- registry


def test_registry_entries_are_complete() -> None:
    assert set(DATASETS) == {
        "digits",
        "fashion_mnist",
        "cifar10",
        "cifar100",
        "stl10",
        "imagenet",
        "imagenet100",
        "domainnet",
        "custom",
    }
    for name, info in DATASETS.items():
        assert len(info.mean) == 3 and len(info.std) == 3, name
        assert all(0 < s < 1 for s in info.std), name
    assert DATASETS["cifar10"].image_size == 32 and DATASETS["stl10"].image_size == 96
    assert DATASETS["imagenet"].image_size is None and not DATASETS["imagenet"].in_memory
    assert DATASETS["fashion_mnist"].default_data_dir == "/usr/share/datasets/fashion-mnist"
    # grayscale datasets repeat one grey mean
    assert len(set(DATASETS["fashion_mnist"].mean)) == 1 and len(set(DATASETS["digits"].std)) == 1


def test_domainnet_domain_order_matches_cassle() -> None:
    assert DOMAINNET_DOMAINS == ("real", "quickdraw", "painting", "sketch", "infograph", "clipart")


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(DatasetError, match=r"Unknown dataset 'cifar1000'.*cifar10, cifar100"):
        load_dataset("cifar1000", None, train=True)
    with pytest.raises(DatasetError, match="Unknown dataset"):
        check_dataset("nope", None)


def test_missing_data_dir_and_no_default(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="pass --data_dir"):
        load_dataset("cifar10", None, train=True)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("stl10", str(tmp_path / "absent"), train=True)


# --------------------------------------------------------------------------- digits


def test_digits_split_counts_and_determinism() -> None:
    from sklearn.datasets import load_digits

    raw = load_digits()
    train = load_dataset("digits", "/ignored/path", train=True)
    test = load_dataset("digits", None, train=False)
    assert isinstance(train, TensorImageDataset) and isinstance(test, TensorImageDataset)
    assert len(train) + len(test) == 1797
    counts = np.bincount(raw.target)
    assert len(test) == int(sum(n // 5 for n in counts)) == 355
    assert 0.19 < len(test) / 1797 < 0.21
    assert train.images.shape == (1442, 1, 8, 8) and train.images.dtype == torch.uint8
    assert train.num_classes == 10 and train.classes[3] == "3" and train.channels == 1

    _, labels, is_test = _digits_split()
    for c in range(10):
        pos = np.flatnonzero(labels == c)
        test_pos = np.flatnonzero(is_test[pos])
        assert list(test_pos) == list(range(4, len(pos), 5))
    train_idx, test_idx = set(np.flatnonzero(~is_test)), set(np.flatnonzero(is_test))
    assert not train_idx & test_idx and len(train_idx | test_idx) == 1797

    # pixel values: round(v * 255 / 16), first test sample is raw sample index test_idx[0]
    first = int(np.flatnonzero(is_test)[0])
    expected = torch.from_numpy(np.round(raw.images[first] * 255 / 16).astype(np.uint8))
    assert torch.equal(test.images[0, 0], expected)
    assert int(test.targets[0]) == int(raw.target[first])
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0

    again = load_dataset("digits", None, train=False)
    assert torch.equal(again.images, test.images) and torch.equal(again.targets, test.targets)
    assert check_dataset("digits", None) is None


# --------------------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_reads_gzip_and_plain_idx(tmp_path: Path) -> None:
    data = make_fashion(tmp_path)
    train = load_dataset("fashion_mnist", str(tmp_path), train=True)
    test = load_dataset("fashion_mnist", str(tmp_path), train=False)  # plain (not gzipped) files
    assert train.images.shape == (3, 1, 28, 28) and test.images.shape == (2, 1, 28, 28)
    assert torch.equal(train.images[:, 0], torch.from_numpy(data["train_x"]))
    assert torch.equal(test.images[:, 0], torch.from_numpy(data["test_x"]))
    assert train.targets.tolist() == [9, 0, 4] and test.targets.tolist() == [1, 2]
    assert train.classes[9] == "Ankle boot" and train.classes[0] == "T-shirt/top"
    assert check_dataset("fashion_mnist", str(tmp_path)) == tmp_path


def test_fashion_mnist_torchvision_raw_layout(tmp_path: Path) -> None:
    make_fashion(tmp_path / "FashionMNIST" / "raw", compress_test=True)
    assert len(load_dataset("fashion_mnist", str(tmp_path), train=False)) == 2


def test_fashion_mnist_missing_file(tmp_path: Path) -> None:
    make_fashion(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.*apt-get install dataset-fashion-mnist"):
        check_dataset("fashion_mnist", str(tmp_path))
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte"):
        load_dataset("fashion_mnist", str(tmp_path), train=False)
    # the train split is still complete
    assert len(load_dataset("fashion_mnist", str(tmp_path), train=True)) == 3


def test_fashion_mnist_corrupt_magic_and_counts(tmp_path: Path) -> None:
    data = make_fashion(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", data["train_x"], 2049, True)  # label magic
    with pytest.raises(DatasetError, match="magic number 2049, expected 2051"):
        load_dataset("fashion_mnist", str(tmp_path), train=True)
    with pytest.raises(DatasetError, match="magic number 2049"):
        check_dataset("fashion_mnist", str(tmp_path))
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", data["train_x"][:2], 2051, True)
    with pytest.raises(DatasetError, match="2 images but 3 labels"):
        load_dataset("fashion_mnist", str(tmp_path), train=True)
    with pytest.raises(DatasetError, match="2 images but 3 labels"):
        check_dataset("fashion_mnist", str(tmp_path))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DatasetError, match="Could not read .*train-labels"):
        check_dataset("fashion_mnist", str(tmp_path))
    # header announcing more data than present -> truncated
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, 5, 28, 28) + b"\0" * 100)
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        load_dataset("fashion_mnist", str(tmp_path), train=False)


def test_fashion_mnist_default_dir_mentions_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # as on a machine without Debian's dataset-fashion-mnist, whether or not this one has it
    info = dataclasses.replace(DATASETS["fashion_mnist"], default_data_dir=str(tmp_path / "not-installed"))
    monkeypatch.setitem(DATASETS, "fashion_mnist", info)
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        check_dataset("fashion_mnist", None)


# --------------------------------------------------------------------------- CIFAR


def test_cifar10_reads_pickled_batches(tmp_path: Path) -> None:
    folder = make_cifar10(tmp_path)
    train = load_dataset("cifar10", str(tmp_path), train=True)
    test = load_dataset("cifar10", str(tmp_path), train=False)
    assert isinstance(train, TensorImageDataset)
    assert train.images.shape == (10, 3, 32, 32) and test.images.shape == (3, 3, 32, 32)
    assert train.targets.tolist() == [0, 9, 1, 9, 2, 9, 3, 9, 4, 9]
    assert int(train.images[8].float().mean()) == 5  # batch 5 filled with 5
    assert int(test.images[1, 2, 5, 7]) == 222 and int(test.images.sum()) == 222
    assert test.targets.tolist() == [3, 1, 8]
    assert train.classes[4] == "c10_4" and train.num_classes == 10
    # data_dir may be the batches folder itself
    same = load_dataset("cifar10", str(folder), train=False)
    assert torch.equal(same.images, test.images)
    assert check_dataset("cifar10", str(folder)) == folder


def test_cifar10_without_meta_uses_standard_names(tmp_path: Path) -> None:
    folder = make_cifar10(tmp_path)
    (folder / "batches.meta").unlink()
    assert load_dataset("cifar10", str(tmp_path), train=False).classes[:2] == ["airplane", "automobile"]


def test_cifar10_missing_dir_and_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"CIFAR-10 not found.*contains cifar-10-batches-py/"):
        load_dataset("cifar10", str(tmp_path), train=True)
    folder = make_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match=r"lacks data_batch_3"):
        check_dataset("cifar10", str(tmp_path))
    with pytest.raises(DatasetError, match=r"lacks data_batch_3"):
        load_dataset("cifar10", str(tmp_path), train=False)


def test_cifar_corrupt_batches(tmp_path: Path) -> None:
    folder = make_cifar10(tmp_path)
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="Could not read .*test_batch"):
        load_dataset("cifar10", str(tmp_path), train=False)
    pickle_dump(folder / "test_batch", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DatasetError, match="expected N×3072"):
        load_dataset("cifar10", str(tmp_path), train=False)
    pickle_dump(folder / "test_batch", {b"pixels": 1})
    with pytest.raises(DatasetError, match="lacks the keys"):
        load_dataset("cifar10", str(tmp_path), train=False)


def test_cifar100_reads_fine_labels_and_meta(tmp_path: Path) -> None:
    make_cifar100(tmp_path)
    train = load_dataset("cifar100", str(tmp_path), train=True)
    test = load_dataset("cifar100", str(tmp_path), train=False)
    assert train.images.shape == (4, 3, 32, 32) and len(test) == 2
    assert train.targets.tolist() == [0, 50, 99, 12] and test.targets.tolist() == [5, 6]
    assert int(train.images[3, 0, 31, 0]) == 77 and int(train.images.sum()) == 77
    assert train.num_classes == 100 and train.classes[99] == "fine99"
    check_dataset("cifar100", str(tmp_path))
    (tmp_path / "cifar-100-python" / "test").unlink()
    with pytest.raises(DatasetError, match="CIFAR-100 is incomplete.*lacks test"):
        check_dataset("cifar100", str(tmp_path))


def test_no_labels_strips_labels(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    ds = load_dataset("cifar10", str(tmp_path), train=True, no_labels=True)
    assert ds.targets.tolist() == [-1] * 10 and ds.num_classes == 0 and not ds.labelled
    assert ds.images.shape == (10, 3, 32, 32)


# --------------------------------------------------------------------------- STL-10


def test_stl10_column_major_transpose(tmp_path: Path) -> None:
    arrays = make_stl10(tmp_path)
    train = load_dataset("stl10", str(tmp_path), train=True)
    test = load_dataset("stl10", str(tmp_path), train=False)
    assert train.images.shape == (2, 3, 96, 96) and test.images.shape == (1, 3, 96, 96)
    assert int(train.images[1, 1, 3, 7]) == 200 and int(train.images[1, 1, 7, 3]) == 0
    assert torch.equal(train.images, torch.from_numpy(arrays["train"]))
    assert train.targets.tolist() == [0, 9] and test.targets.tolist() == [3]
    assert train.classes[7] == "monkey" and train.num_classes == 10
    assert check_dataset("stl10", str(tmp_path)) == tmp_path


def test_stl10_wrong_sizes_and_missing(tmp_path: Path) -> None:
    make_stl10(tmp_path)
    folder = tmp_path / "stl10_binary"
    (folder / "test_X.bin").write_bytes(b"\0" * 27647)
    with pytest.raises(DatasetError, match="not a positive multiple of 27648"):
        check_dataset("stl10", str(tmp_path))
    with pytest.raises(DatasetError, match="27648"):
        load_dataset("stl10", str(tmp_path), train=False)
    (folder / "train_y.bin").write_bytes(bytes([1, 2, 3]))
    with pytest.raises(DatasetError, match="3 labels but train_X.bin holds 2 images"):
        load_dataset("stl10", str(tmp_path), train=True)
    (folder / "train_y.bin").unlink()
    with pytest.raises(DatasetError, match="lacks train_y.bin"):
        load_dataset("stl10", str(tmp_path), train=True)
    with pytest.raises(DatasetError, match="STL-10 not found"):
        (tmp_path / "empty").mkdir()
        load_dataset("stl10", str(tmp_path / "empty"), train=True)


# --------------------------------------------------------------------------- ImageNet folders


def test_imagenet100_class_folders(tmp_path: Path) -> None:
    make_imagenet(tmp_path, ["n02", "n01", "n03"], ["n03", "n01", "n02"])
    (tmp_path / "train" / "n01" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / ".cache").mkdir()
    train = load_dataset("imagenet100", str(tmp_path), train=True)
    val = load_dataset("imagenet100", str(tmp_path), train=False)
    assert isinstance(train, FileImageDataset)
    assert train.classes == ["n01", "n02", "n03"] and train.num_classes == 3
    assert len(train) == 6 and train.targets.tolist() == [0, 0, 1, 1, 2, 2]
    assert [Path(p).name for p in train.paths[:2]] == ["a.png", "b.JPEG"]
    assert val.targets.tolist() == [0, 1, 2] and val.classes == train.classes
    img = val.get_image(2)  # n03 -> value 100 + 0 (first val class written)
    assert img.shape == (3, 5, 5) and int(img[0, 0, 0]) == 100 and int(img[1].max()) == 0
    # sorted order: n01 (written with value 10), n02 (value 0), n03 (value 20)
    assert [int(train.get_image(i)[0, 0, 0]) for i in (0, 2, 4)] == [10, 0, 20]
    check_dataset("imagenet100", str(tmp_path))


def test_imagenet_pixel_values_follow_folder(tmp_path: Path) -> None:
    make_imagenet(tmp_path, ["a", "b"], ["a", "b"])
    train = load_dataset("imagenet", str(tmp_path), train=True)
    assert [int(train.get_image(i)[0, 0, 0]) for i in (0, 2)] == [0, 10]


def test_imagenet_val_class_mismatch(tmp_path: Path) -> None:
    make_imagenet(tmp_path, ["a", "b", "c"], ["a", "b", "zz"])
    with pytest.raises(DatasetError, match=r"zz.*lacks 1 train classes \(e.g. c\)"):
        load_dataset("imagenet100", str(tmp_path), train=True)
    with pytest.raises(DatasetError, match="Class folders differ between train and val"):
        check_dataset("imagenet", str(tmp_path))


def test_imagenet_missing_val_and_empty_class(tmp_path: Path) -> None:
    make_imagenet(tmp_path, ["a"], [])
    with pytest.raises(DatasetError, match=r"val split not found.*val/<class>/"):
        check_dataset("imagenet", str(tmp_path))
    (tmp_path / "val" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="has no images"):
        load_dataset("imagenet", str(tmp_path), train=False)


# --------------------------------------------------------------------------- DomainNet


def test_domainnet_lists_and_domains(tmp_path: Path) -> None:
    make_domainnet(tmp_path)
    train = load_dataset("domainnet", str(tmp_path), train=True)
    test = load_dataset("domainnet", str(tmp_path), train=False)
    assert isinstance(train, FileImageDataset)
    assert len(train) == 6 * 4 and len(test) == 6 * 2
    assert train.domain_names == list(DOMAINNET_DOMAINS)
    assert train.domains.tolist() == [d for d in range(6) for _ in range(4)]
    assert train.targets.tolist()[:4] == [0, 0, 1, 1]
    assert train.classes == ["aircraft_carrier", "zebra"] and train.num_classes == 2
    assert Path(train.paths[4]).parts[-3] == "quickdraw"
    assert int(test.get_image(3)[0, 0, 0]) == 20 * 1 + 1  # quickdraw, zebra
    assert check_dataset("domainnet", str(tmp_path)) == tmp_path
    unl = load_dataset("domainnet", str(tmp_path), train=True, no_labels=True)
    assert unl.targets.tolist() == [-1] * 24 and unl.domains.tolist() == train.domains.tolist()


def test_domainnet_missing_lists_are_named(tmp_path: Path) -> None:
    make_domainnet(tmp_path, skip_lists=["sketch_test.txt", "clipart_train.txt"])
    with pytest.raises(DatasetError, match=r"lacks the split lists sketch_test.txt, clipart_train.txt"):
        check_dataset("domainnet", str(tmp_path))
    with pytest.raises(DatasetError, match="clipart_train.txt"):
        load_dataset("domainnet", str(tmp_path), train=True)


def test_domainnet_bad_line_and_missing_images(tmp_path: Path) -> None:
    make_domainnet(tmp_path)
    (tmp_path / "painting_train.txt").write_text("painting/zebra/x.png\n")
    with pytest.raises(DatasetError, match=r"painting_train.txt:1: expected"):
        load_dataset("domainnet", str(tmp_path), train=False)
    (tmp_path / "painting_train.txt").write_text("real/zebra/x.png 1\n")
    with pytest.raises(DatasetError, match=r"should read 'painting/<class>/<file> <label>'"):
        load_dataset("domainnet", str(tmp_path), train=True)
    (tmp_path / "painting_train.txt").write_text("painting/zebra/gone.png 1\n")
    with pytest.raises(DatasetError, match=r"gone.png.*Extract painting.zip"):
        check_dataset("domainnet", str(tmp_path))
    with pytest.raises(DatasetError, match=r"gone.png"):
        load_dataset("domainnet", str(tmp_path), train=True)


# --------------------------------------------------------------------------- custom


def test_custom_labelled_with_and_without_val(tmp_path: Path) -> None:
    for cls, v in (("cat", 1), ("dog", 2)):
        save_png(tmp_path / "train" / cls / "0.png", v)
        save_png(tmp_path / "train" / cls / "1.jpg", v)
    save_png(tmp_path / "val" / "dog" / "0.png", 2)  # val may hold a subset of classes
    train = load_dataset("custom", str(tmp_path), train=True)
    val = load_dataset("custom", str(tmp_path), train=False)
    assert train.classes == ["cat", "dog"] and train.targets.tolist() == [0, 0, 1, 1]
    assert val.targets.tolist() == [1] and val.num_classes == 2
    check_dataset("custom", str(tmp_path))
    # test/ is accepted in place of val/
    (tmp_path / "val").rename(tmp_path / "test")
    assert load_dataset("custom", str(tmp_path), train=False).targets.tolist() == [1]
    # no val/test folder -> None (probes are skipped)
    (tmp_path / "test" / "dog" / "0.png").unlink()
    (tmp_path / "test" / "dog").rmdir()
    (tmp_path / "test").rmdir()
    assert load_dataset("custom", str(tmp_path), train=False) is None


def test_custom_unlabelled_flat_folder(tmp_path: Path) -> None:
    for i in range(3):
        save_png(tmp_path / f"img{i}.png", i)
    ds = load_dataset("custom", str(tmp_path), train=True, no_labels=True)
    assert len(ds) == 3 and ds.targets.tolist() == [-1, -1, -1] and ds.num_classes == 0
    assert int(ds.get_image(2)[0, 0, 0]) == 2
    assert load_dataset("custom", str(tmp_path), train=False, no_labels=True) is None
    check_dataset("custom", str(tmp_path), no_labels=True)
    with pytest.raises(DatasetError, match=r"train not found"):
        load_dataset("custom", str(tmp_path), train=True)


def test_custom_unlabelled_ignores_class_folders(tmp_path: Path) -> None:
    save_png(tmp_path / "train" / "a" / "0.png", 1)
    save_png(tmp_path / "train" / "b" / "0.png", 2)
    save_png(tmp_path / "train" / "loose.png", 3)
    ds = load_dataset("custom", str(tmp_path), train=True, no_labels=True)
    assert len(ds) == 3 and set(ds.targets.tolist()) == {-1} and ds.num_classes == 0


def test_custom_errors(tmp_path: Path) -> None:
    save_png(tmp_path / "train" / "loose.png", 3)
    with pytest.raises(DatasetError, match="pass --no_labels"):
        load_dataset("custom", str(tmp_path), train=True)
    save_png(tmp_path / "train" / "cat" / "0.png", 1)
    save_png(tmp_path / "val" / "horse" / "0.png", 1)
    with pytest.raises(DatasetError, match=r"1 classes not in train \(e.g. horse\)"):
        load_dataset("custom", str(tmp_path), train=False)
    with pytest.raises(DatasetError, match="horse"):
        check_dataset("custom", str(tmp_path))
    with pytest.raises(DatasetError, match="not found"):
        check_dataset("custom", str(tmp_path / "missing"))


class _Poison:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/cassle-poisoned",))


def test_poisoned_cifar_batch_is_refused_without_running_code(tmp_path: Path) -> None:
    folder = make_cifar100(tmp_path)
    pickle_dump(folder / "train", {b"data": _Poison(), b"fine_labels": [0]})
    marker = Path("/tmp/cassle-poisoned")
    marker.unlink(missing_ok=True)
    with pytest.raises(DatasetError, match="refused"):
        load_dataset("cifar100", tmp_path, train=True)
    assert not marker.exists()


# --------------------------------------------------------------------------- corrupt image files (issue 10)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:20])  # a copy cut off mid-file


def test_a_corrupt_image_is_named_by_the_loader_even_in_a_worker(tmp_path: Path) -> None:
    """torchvision's decode error names no file; a folder dataset's image that cannot be decoded is one
    DatasetError naming it, and a DataLoader worker hands it on as that one line (not its whole traceback)."""
    for i in range(4):
        save_png(tmp_path / "train" / "cat" / f"{i}.png", i)
    bad = tmp_path / "train" / "cat" / "2.png"
    _truncate(bad)
    check_dataset("custom", str(tmp_path))  # cheap start-up check: the first image decodes
    ds = load_dataset("custom", str(tmp_path), train=True)
    with pytest.raises(DatasetError, match=rf"image {bad} cannot be decoded .*corrupt, truncated"):
        ds.get_image(2)
    loader = torch.utils.data.DataLoader(_Images(ds), batch_size=2, num_workers=1)
    with pytest.raises(DatasetError) as e:
        list(loader)
    assert str(e.value).startswith(f"image {bad} cannot be decoded") and "\n" not in str(e.value)


class _Images(torch.utils.data.Dataset):
    def __init__(self, ds) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.ds.get_image(i)


@pytest.mark.parametrize("name", ["custom", "imagenet", "domainnet"])
def test_a_first_image_of_another_format_is_found_at_start(tmp_path: Path, name: str) -> None:
    if name == "custom":
        save_png(tmp_path / "train" / "cat" / "0.png", 1)
        first = tmp_path / "train" / "cat" / "0.png"
    elif name == "imagenet":
        make_imagenet(tmp_path, ["a", "b"], ["a", "b"])
        first = tmp_path / "val" / "a" / "v.png"
    else:
        make_domainnet(tmp_path)
        rel = (tmp_path / "real_train.txt").read_text().split()[0]
        first = tmp_path / rel
    first.write_bytes(b"<html>404 Not Found</html>")  # a download that saved an error page
    with pytest.raises(DatasetError, match=rf"image {first} cannot be decoded"):
        check_dataset(name, str(tmp_path))


@pytest.mark.slow
def test_main_continual_names_a_corrupt_image_met_mid_run(tmp_path: Path, capsys) -> None:
    import main_continual

    for cls in ("cat", "dog"):
        for i in range(8):
            save_png(tmp_path / "data" / "train" / cls / f"{i}.png", 30 * i, size=8)
            save_png(tmp_path / "data" / "val" / cls / f"{i}.png", 30 * i, size=8)
    bad = tmp_path / "data" / "train" / "dog" / "5.png"
    _truncate(bad)
    argv = ["--dataset", "custom", "--data_dir", str(tmp_path / "data"), "--encoder", "resnet9", "--base_width", "4"]
    argv += ["--crop_size", "8", "--num_tasks", "1", "--max_epochs", "1", "--batch_size", "4", "--num_workers", "1"]
    argv += ["--no_progress_bar", "--no_baseline", "--probes", "knn", "--checkpoint_dir", str(tmp_path / "run")]
    assert main_continual.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(f"error: image {bad} cannot be decoded")
