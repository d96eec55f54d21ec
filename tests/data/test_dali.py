"""DALI loaders (``--dali``) on the CPU: batch structure, labels, epochs, sharding, DataModule and a short run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

import main_continual
from cassle.config import AugmentationConfig
from cassle.data.base import TensorImageDataset
from cassle.data.dali import (
    DaliUnavailableError,
    build_eval_loader,
    build_pretrain_loader,
    pretrain_num_batches,
    require_dali,
)
from cassle.data.datamodule import ContinualDataModule
from cassle.data.transforms import per_view_values

HAS_DALI = importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.dali") is not None
needs_dali = pytest.mark.skipif(not HAS_DALI, reason="NVIDIA DALI is not installed (pip install 'cassle[dali]')")

ID = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
PLAIN = dict(
    color_jitter_prob=[0.0],
    grayscale_prob=[0.0],
    horizontal_flip_prob=[0.0],
    min_scale=[1.0],
    max_scale=[1.0],
    solarization_prob=[0.0],
)


def _value(i: int) -> int:
    return 10 + 9 * i


def _write_folder(
    root: Path, n_per_class: int = 5, classes: tuple[str, ...] = ("a", "b", "c"), size: int = 16
) -> tuple[list[str], torch.Tensor]:
    """``root/<class>/<i>.png|jpg`` constant-colour images (value ``_value(i)`` in the red channel for PNGs)."""
    from PIL import Image

    files, labels = [], []
    i = 0
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for _ in range(n_per_class):
            ext = "png" if i % 3 else "jpg"
            path = root / name / f"{i:03d}.{ext}"
            Image.new("RGB", (size + i % 5, size), (_value(i), 60, 120)).save(path)
            files.append(str(path))
            labels.append(c)
            i += 1
    return files, torch.tensor(labels)


def test_missing_dali_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    with pytest.raises(DaliUnavailableError, match=r"pip install 'cassle\[dali\]'"):
        require_dali()


def test_batch_counts_rule() -> None:
    assert pretrain_num_batches(10, 4) == (2, 4)  # last partial batch dropped: a full one remains
    assert pretrain_num_batches(3, 8) == (1, 3)  # shard smaller than a batch: one batch of it all, never empty
    assert pretrain_num_batches(10, 4, num_shards=2) == (1, 4)
    assert pretrain_num_batches(9, 8, num_shards=2) == (1, 5)


@needs_dali
def test_pretrain_loader_structure_labels_and_epochs(tmp_path: Path) -> None:
    files, labels = _write_folder(tmp_path)
    n = len(files)  # 15
    dataset_index = torch.arange(n) + 100
    views = per_view_values(
        AugmentationConfig.from_flat(dict(solarization_prob=[0.0, 0.2], gaussian_prob=[1.0, 0.1])), 2
    )
    loader = build_pretrain_loader(
        files,
        labels,
        dataset_index,
        batch_size=4,
        crop_size=8,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        view_params=views,
        seed=3,
    )
    assert len(loader) == 3
    orders = []
    for _ in range(2):  # every epoch sees the expected number of batches
        batches = list(loader)
        assert len(batches) == 3
        for idx, vs, targets in batches:
            assert idx.dtype == torch.long and targets.dtype == torch.long and idx.shape == targets.shape == (4,)
            assert isinstance(vs, list) and len(vs) == 2
            for v in vs:
                assert v.shape == (4, 3, 8, 8) and v.dtype == torch.float32
                assert v.min() >= -1.0 - 1e-5 and v.max() <= 1.0 + 1e-5
            assert torch.equal(targets, labels[idx - 100])  # labels follow the files
        seen = torch.cat([b[0] for b in batches])
        assert len(torch.unique(seen)) == len(seen)  # an epoch is a permutation: no repeats
        orders.append(seen)
    assert not torch.equal(orders[0], orders[1])  # reshuffled every epoch


@needs_dali
def test_pretrain_images_follow_their_files(tmp_path: Path) -> None:
    files, labels = _write_folder(tmp_path)
    png = [i for i, f in enumerate(files) if f.endswith(".png")]
    files = [files[i] for i in png]
    loader = build_pretrain_loader(
        files,
        labels[png],
        torch.tensor(png),
        batch_size=5,
        crop_size=8,
        mean=ID[0],
        std=ID[1],
        view_params=per_view_values(AugmentationConfig.from_flat(PLAIN), 2),
        seed=0,
    )
    for idx, (v1, v2), _ in loader:
        expected = torch.tensor([_value(int(i)) for i in idx]).float() / 255
        assert torch.allclose(v1[:, 0].mean((1, 2)), expected, atol=2 / 255)
        assert torch.allclose(v2[:, 0].mean((1, 2)), expected, atol=2 / 255)


def _constant_folder(root: Path, n: int = 6, colour: tuple[int, int, int] = (200, 200, 200)) -> list[str]:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        Image.new("RGB", (12, 12), colour).save(root / f"{i}.png")
        files.append(str(root / f"{i}.png"))
    return files


@needs_dali
def test_asymmetric_views_and_probabilities(tmp_path: Path) -> None:
    """View 1 never solarizes, view 2 always does (constant 200 -> 55); grayscale at 1 equalises the channels."""
    files = _constant_folder(tmp_path / "grey")
    params = per_view_values(AugmentationConfig.from_flat(dict(PLAIN, solarization_prob=[0.0, 1.0])), 2)
    loader = build_pretrain_loader(files, torch.zeros(6), torch.arange(6), 6, 8, ID[0], ID[1], params, seed=1)
    for _, (v1, v2), _ in loader:
        assert torch.allclose(v1, torch.full_like(v1, 200 / 255), atol=1.5 / 255)
        assert torch.allclose(v2, torch.full_like(v2, 55 / 255), atol=1.5 / 255)
    files = _constant_folder(tmp_path / "red", colour=(220, 40, 10))
    params = per_view_values(AugmentationConfig.from_flat(dict(PLAIN, grayscale_prob=[0.0, 1.0])), 2)
    loader = build_pretrain_loader(files, torch.zeros(6), torch.arange(6), 6, 8, ID[0], ID[1], params, seed=1)
    for _, (v1, v2), _ in loader:
        assert (v1[:, 0] - v1[:, 1]).abs().min() > 0.5  # colour kept
        assert (v2[:, 0] - v2[:, 1]).abs().max() < 3 / 255 and (v2[:, 1] - v2[:, 2]).abs().max() < 3 / 255


@needs_dali
def test_small_shard_gives_one_full_batch_every_epoch(tmp_path: Path) -> None:
    files, labels = _write_folder(tmp_path, n_per_class=1)
    loader = build_pretrain_loader(
        files,
        labels,
        torch.arange(3),
        batch_size=8,
        crop_size=8,
        mean=ID[0],
        std=ID[1],
        view_params=per_view_values(AugmentationConfig.from_flat({}), 2),
    )
    assert len(loader) == 1
    for _ in range(3):
        (batch,) = list(loader)
        assert sorted(batch[0].tolist()) == [0, 1, 2]


@needs_dali
def test_sharding_splits_files_without_overlap(tmp_path: Path) -> None:
    files, labels = _write_folder(tmp_path, n_per_class=4)  # 12 files
    loaders = [
        build_pretrain_loader(
            files,
            labels,
            torch.arange(12),
            batch_size=6,
            crop_size=8,
            mean=ID[0],
            std=ID[1],
            view_params=per_view_values(AugmentationConfig.from_flat({}), 2),
            seed=7,
            shard_id=shard,
            num_shards=2,
        )
        for shard in range(2)
    ]
    assert [len(lo) for lo in loaders] == [1, 1]
    for _ in range(2):  # each epoch: a global permutation split between the ranks
        seen = [set(next(iter(lo))[0].tolist()) for lo in loaders]
        assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(12))
    evals = [build_eval_loader(files, labels, 4, 8, ID[0], ID[1], shard_id=s, num_shards=2) for s in range(2)]
    ts = [torch.cat([t for _, t in e]) for e in evals]
    assert [len(t) for t in ts] == [6, 6]
    assert torch.equal(torch.cat(ts), labels)


@needs_dali
def test_eval_loader_every_file_once_per_pass_in_order(tmp_path: Path) -> None:
    files, labels = _write_folder(tmp_path)
    loader = build_eval_loader(files, labels, batch_size=4, crop_size=8, mean=ID[0], std=ID[1])
    assert len(loader) == 4
    next(iter(loader))  # a pass abandoned after one batch does not shift the next one
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == 4 and [len(t) for _, t in batches] == [4, 4, 4, 3]
        assert all(x.shape[1:] == (3, 8, 8) and x.dtype == torch.float32 for x, _ in batches)
        assert torch.equal(torch.cat([t for _, t in batches]), labels)


def _cfg(tmp_path: Path, **kw: object) -> dict:
    cfg = dict(
        dataset="custom",
        data_dir=str(tmp_path),
        num_tasks=3,
        split_strategy="class",
        seed=3,
        batch_size=4,
        num_workers=1,
        crop_size=8,
        no_labels=False,
        num_views=2,
        dali=True,
    )
    cfg.update(kw)
    return cfg


@needs_dali
def test_datamodule_dali_train_loader_serves_the_current_task(tmp_path: Path) -> None:
    _write_folder(tmp_path / "train")
    _write_folder(tmp_path / "val", n_per_class=2)
    dm = ContinualDataModule.from_flat(_cfg(tmp_path))
    dm.setup("fit")
    for task in range(3):
        dm.set_task(task)
        loader = dm.train_dataloader()
        assert len(loader) == dm.steps_per_epoch() == 1
        idx, views, targets = next(iter(loader))
        assert set(targets.tolist()) <= set(dm.task_classes[task])
        assert set(idx.tolist()) <= set(dm.split.train_indices[task].tolist())
        assert len(views) == 2 and views[0].shape == (4, 3, 8, 8)


def test_dali_refuses_in_memory_datasets() -> None:
    ds = TensorImageDataset(torch.zeros(6, 1, 8, 8, dtype=torch.uint8), torch.arange(6) % 2, 2)
    dm = ContinualDataModule.from_flat(
        dict(dataset="digits", num_tasks=1, batch_size=2, crop_size=8, dali=True), train_dataset=ds
    )
    with pytest.raises(ValueError, match="--gpu_augment"):
        dm.setup("fit")


@pytest.mark.slow
@needs_dali
def test_main_continual_runs_with_dali(tmp_path: Path) -> None:
    import csv

    from tests.helpers import TINY

    data = tmp_path / "data"
    _write_folder(data / "train", n_per_class=10, classes=("a", "b"))
    _write_folder(data / "val", n_per_class=2, classes=("a", "b"))
    argv = TINY + [
        "--dataset",
        "custom",
        "--data_dir",
        str(data),
        "--batch_size",
        "4",
        "--checkpoint_dir",
        str(tmp_path / "run"),
        "--num_tasks",
        "2",
        "--max_epochs",
        "2",
        "--dali",
        "--probes",
        "knn",
        "--log_every_n_steps",
        "1",
    ]
    assert main_continual.main(argv) == 0
    assert torch.load(tmp_path / "run" / "task1.ckpt", weights_only=True)["task_idx"] == 1
    # every epoch trained on the expected number of batches: 10 images per task, batch 4 -> 2 steps per epoch
    for task in range(2):
        with open(tmp_path / "run" / "logs" / f"task{task}" / "metrics.csv") as f:
            rows = [r for r in csv.DictReader(f) if r["train_barlow_loss_step"]]
        steps_per_epoch = [sum(1 for r in rows if r["epoch"] == str(e)) for e in range(2)]
        assert steps_per_epoch == [2, 2]


@needs_dali
@pytest.mark.parametrize("loader", ["pretrain", "eval"])
def test_an_undecodable_file_is_named(tmp_path: Path, loader: str) -> None:
    """DALI's own decoding error names no file (issue 10): the loader names the corrupt one and the fix."""
    from cassle.errors import DatasetError

    files, labels = _write_folder(tmp_path)
    bad = next(f for f in files if f.endswith(".jpg"))
    Path(bad).write_bytes(b"\xff\xd8\xff\xe0" + b"not a jpeg" * 20)  # a JPEG header, then garbage
    if loader == "pretrain":
        views = per_view_values(AugmentationConfig(**PLAIN), 2)
        dl = build_pretrain_loader(files, labels, torch.arange(len(files)), 4, 16, *ID, views, seed=0)
    else:
        dl = build_eval_loader(files, labels, 4, 16, *ID)
    with pytest.raises(DatasetError, match=rf"image {bad} cannot be decoded.*Replace it with a good copy"):
        for _ in dl:
            pass
