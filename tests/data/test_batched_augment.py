"""Batched device augmentation (``--gpu_augment``): distributional equivalence with the per-sample path,
shapes, seeding, DataModule wiring and a short run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torchvision.transforms import RandomResizedCrop

import main_continual
from cassle.data.base import FileImageDataset, TensorImageDataset
from cassle.data.batched_augment import BatchedAugment
from cassle.data.datamodule import ContinualDataModule
from cassle.data.transforms import build_view_transform

ID = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
PLAIN = dict(color_jitter_prob=0.0, grayscale_prob=0.0, horizontal_flip_prob=0.0, min_scale=1.0, max_scale=1.0)
N = 2000  # samples for rates: a binomial rate's std is at most 0.011


def _ramp(size: int = 16) -> torch.Tensor:
    """3×size×size uint8: channel 0 grows with x, channel 1 with y, channel 2 constant."""
    x = (torch.arange(size) * (240 // size)).repeat(size, 1)
    return torch.stack([x, x.T, torch.full_like(x, 90)]).to(torch.uint8)


def _aug(views: list[dict[str, float]], crop: int = 16, seed: int = 0) -> BatchedAugment:
    return BatchedAugment(crop, *ID, views, seed=seed)


def _per_sample_rate(t: Any, img: torch.Tensor, detect: Any, n: int = 600) -> float:
    torch.manual_seed(1)
    return sum(bool(detect(t(img).unsqueeze(0))[0]) for _ in range(n)) / n


# --------------------------------------------------------------- parameters
def test_crop_area_fraction_in_range_and_mean_matches_per_sample_path() -> None:
    aug = _aug([dict(min_scale=0.2, max_scale=0.9)])
    h = w = 32
    box = aug.sample_params(N, h, w, 0)["box"]
    frac = box[:, 2] * box[:, 3] / (h * w)
    # rounding of the crop side can move the fraction by ~1/side around the bounds
    assert frac.min() >= 0.2 - 0.05 and frac.max() <= 0.9 + 0.05
    assert (box[:, 0] >= 0).all() and (box[:, 1] >= 0).all()
    assert (box[:, 0] + box[:, 2] <= h).all() and (box[:, 1] + box[:, 3] <= w).all()
    torch.manual_seed(0)
    img = torch.zeros(3, h, w)
    ref = torch.tensor(
        [(lambda p: p[2] * p[3])(RandomResizedCrop.get_params(img, (0.2, 0.9), (3 / 4, 4 / 3))) for _ in range(N)]
    ).float() / (h * w)
    assert abs(frac.mean().item() - ref.mean().item()) < 0.02
    assert abs(frac.std().item() - ref.std().item()) < 0.02


def _is_flipped(x: torch.Tensor) -> torch.Tensor:
    return x[:, 0, :, 0].mean(1) > x[:, 0, :, -1].mean(1)


def _is_gray(x: torch.Tensor) -> torch.Tensor:
    return (x[:, 0] - x[:, 1]).abs().amax(dim=(1, 2)) < 1e-4


def _is_solarized(x: torch.Tensor) -> torch.Tensor:
    return x[:, 0, 0, 0] < 0.5  # constant 200/255 image: 55/255 once solarized


@pytest.mark.parametrize(
    "params, image, detect",
    [
        (dict(PLAIN, horizontal_flip_prob=0.5), "ramp", _is_flipped),
        (dict(PLAIN, grayscale_prob=0.3), "ramp", _is_gray),
        (dict(PLAIN, solarization_prob=0.2), "const", _is_solarized),
    ],
    ids=["flip", "grayscale", "solarization"],
)
def test_rates_match_the_per_sample_path(params: dict[str, float], image: str, detect: Any) -> None:
    img = _ramp() if image == "ramp" else torch.full((3, 16, 16), 200, dtype=torch.uint8)
    (out,) = _aug([params])(img.unsqueeze(0).expand(N, -1, -1, -1).contiguous())
    rate = detect(out).float().mean().item()
    p = next(
        v for k, v in params.items() if k in ("horizontal_flip_prob", "grayscale_prob", "solarization_prob") and v > 0
    )
    ref = _per_sample_rate(build_view_transform(16, *ID, **params), img, detect)
    assert abs(rate - p) < 0.04, (rate, p)
    assert abs(rate - ref) < 0.07, (rate, ref)


def test_asymmetric_views_solarize_only_the_second() -> None:
    img = torch.full((N, 3, 16, 16), 200, dtype=torch.uint8)
    v1, v2 = _aug([dict(PLAIN, solarization_prob=0.0), dict(PLAIN, solarization_prob=0.2)])(img)
    assert not _is_solarized(v1).any()
    assert abs(_is_solarized(v2).float().mean().item() - 0.2) < 0.04
    # the two views draw their own crops
    aug = _aug([dict(), dict()])
    p1, p2 = aug.sample_params(64, 32, 32, 0), aug.sample_params(64, 32, 32, 1)
    assert not torch.equal(p1["box"], p2["box"])


def test_full_pipeline_pixel_statistics_match_the_per_sample_path() -> None:
    """Default jitter / grayscale / blur / flip / crop: output value mean and spread close to torchvision's."""
    gen = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8, generator=gen)
    img[0] //= 2  # give the channels different statistics so colour ops matter
    params = dict(gaussian_prob=0.5, solarization_prob=0.1)
    (ours,) = _aug([params])(img.unsqueeze(0).expand(600, -1, -1, -1).contiguous())
    t = build_view_transform(16, *ID, **params)
    torch.manual_seed(0)
    ref = torch.stack([t(img) for _ in range(600)])
    for dims in ((0, 2, 3),):
        assert torch.allclose(ours.mean(dims), ref.mean(dims), atol=0.03)
        assert torch.allclose(ours.std(dims), ref.std(dims), atol=0.03)
    # per-image spread (contrast) distribution
    assert abs(ours.std((1, 2, 3)).mean().item() - ref.std((1, 2, 3)).mean().item()) < 0.03


def test_blur_smooths_and_keeps_constants() -> None:
    checker = ((torch.arange(16).view(1, -1) + torch.arange(16).view(-1, 1)) % 2 * 255).to(torch.uint8)
    img = checker.expand(3, 16, 16).unsqueeze(0).expand(8, -1, -1, -1).contiguous()
    (sharp,) = _aug([PLAIN])(img)
    (blurred,) = _aug([dict(PLAIN, gaussian_prob=1.0)])(img)
    assert blurred.std((1, 2, 3)).max() < sharp.std((1, 2, 3)).min()
    const = torch.full((4, 3, 16, 16), 77, dtype=torch.uint8)
    (out,) = _aug([dict(PLAIN, gaussian_prob=1.0)])(const)
    assert torch.allclose(out, torch.full_like(out, 77 / 255), atol=1e-5)


def test_colour_ops_match_torchvision_per_sample() -> None:
    """Each jitter operation with per-sample factors equals torchvision's functional op applied image by image."""
    from torchvision.transforms.v2 import functional as TF

    from cassle.data.batched_augment import _adjust

    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 3, 7, 7, generator=g)
    x[0] = 0.5  # grey: hue undefined
    factors = torch.rand(12, generator=g) * 1.5
    shifts = torch.rand(12, generator=g) - 0.5
    refs = {
        0: (TF.adjust_brightness, factors),
        1: (TF.adjust_contrast, factors),
        2: (TF.adjust_saturation, factors),
        3: (TF.adjust_hue, shifts),
    }
    for op, (fn, f) in refs.items():
        ref = torch.stack([fn(x[i], float(f[i])) for i in range(12)])
        assert torch.allclose(_adjust(x.clone(), op, f), ref, atol=1e-5), op


def test_jitter_changes_colours_and_keeps_range() -> None:
    img = _ramp().unsqueeze(0).expand(64, -1, -1, -1).contiguous()
    (plain,) = _aug([PLAIN])(img)
    (jit,) = _aug([dict(PLAIN, color_jitter_prob=1.0)])(img)
    changed = (jit - plain).abs().amax(dim=(1, 2, 3)) > 1e-3
    assert changed.all()
    assert jit.min() >= 0.0 and jit.max() <= 1.0


# --------------------------------------------------------------- shapes, seeds, errors
@pytest.mark.parametrize("channels, size", [(1, 8), (3, 32), (3, 20)])
def test_output_shapes_and_dtypes(channels: int, size: int) -> None:
    aug = BatchedAugment(12, (0.5,) * 3, (0.5,) * 3, [dict(gaussian_prob=0.5), dict(solarization_prob=0.2)], seed=1)
    x = torch.randint(0, 256, (5, channels, size, size), dtype=torch.uint8)
    views = aug(x)
    assert len(views) == 2
    for v in views:
        assert v.shape == (5, 3, 12, 12) and v.dtype == torch.float32 and v.device == x.device
        assert v.min() >= -1.0 - 1e-5 and v.max() <= 1.0 + 1e-5
    assert x.dtype == torch.uint8  # input untouched
    if channels == 1:
        assert torch.equal(views[0][:, 0], views[0][:, 1])


def test_same_seed_same_output_other_seed_differs() -> None:
    x = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8)
    a = _aug([dict(), dict(gaussian_prob=0.5)], seed=4)(x)
    b = _aug([dict(), dict(gaussian_prob=0.5)], seed=4)(x)
    c = _aug([dict(), dict(gaussian_prob=0.5)], seed=5)(x)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])
    aug = _aug([dict()], seed=4)
    first = aug(x)[0]
    aug.reseed(4)
    assert torch.equal(aug(x)[0], first)


def test_bad_input_is_refused() -> None:
    aug = _aug([dict()])
    with pytest.raises(ValueError, match="uint8"):
        aug(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        aug(torch.zeros(2, 4, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="min_scale"):
        _aug([dict(min_scale=0.9, max_scale=0.5)])
    with pytest.raises(ValueError, match="solarization_prob"):
        _aug([dict(solarization_prob=1.5)])


# --------------------------------------------------------------- DataModule
def _cfg(**kw: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = dict(
        dataset="synthetic",
        data_dir=None,
        num_tasks=2,
        split_strategy="class",
        seed=3,
        batch_size=8,
        num_workers=0,
        crop_size=10,
        no_labels=False,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        num_views=2,
        solarization_prob=[0.0, 0.2],
    )
    cfg.update(kw)
    return cfg


def _tensor_dataset(n: int = 40) -> TensorImageDataset:
    images = torch.randint(0, 256, (n, 1, 12, 12), dtype=torch.uint8)
    return TensorImageDataset(images, torch.arange(n) % 4, 4)


def test_datamodule_gpu_augment_yields_the_torch_batch_structure() -> None:
    ds, test = _tensor_dataset(), _tensor_dataset(20)
    torch_dm = ContinualDataModule.from_flat(_cfg(), train_dataset=ds, test_dataset=test)
    gpu_dm = ContinualDataModule.from_flat(_cfg(gpu_augment=True), train_dataset=ds, test_dataset=test)
    ref_idx, ref_views, ref_t = next(iter(torch_dm.train_dataloader()))
    raw = next(iter(gpu_dm.train_dataloader()))
    assert raw[1].dtype == torch.uint8 and raw[1].shape == (8, 1, 12, 12)
    idx, views, targets = gpu_dm.on_after_batch_transfer(raw, 0)
    assert torch.equal(idx, ref_idx) and torch.equal(targets, ref_t)  # same shuffling, same samples
    assert torch.equal(targets, ds.targets[idx])
    assert len(views) == len(ref_views) == 2
    for v, r in zip(views, ref_views):
        assert v.shape == r.shape and v.dtype == r.dtype
    assert len(gpu_dm.train_dataloader()) == len(torch_dm.train_dataloader())
    # evaluation batches pass through untouched
    images, t = next(iter(gpu_dm.val_dataloader()))
    out = gpu_dm.on_after_batch_transfer((images, t), 0)
    assert out[0] is images


def test_gpu_augment_refuses_folder_datasets(tmp_path: Path) -> None:
    from PIL import Image

    paths = []
    for i in range(4):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(p)
        paths.append(p)
    files = FileImageDataset(paths, torch.tensor([0, 1, 0, 1]), 2)
    dm = ContinualDataModule.from_flat(_cfg(gpu_augment=True, num_tasks=1), train_dataset=files, test_dataset=None)
    with pytest.raises(ValueError, match="--dali"):
        dm.setup("fit")
    with pytest.raises(ValueError, match="--dali"):
        dm.train_dataloader()


@pytest.mark.slow
def test_main_continual_runs_with_gpu_augment(tmp_path: Path) -> None:
    from tests.helpers import TINY

    argv = TINY + ["--checkpoint_dir", str(tmp_path / "run"), "--num_tasks", "2", "--max_epochs", "1", "--gpu_augment"]
    assert main_continual.main(argv) == 0
    assert (tmp_path / "run" / "task1.ckpt").exists()
    assert (tmp_path / "run" / "results" / "metrics.json").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dataset", "imagenet", "--gpu_augment"], "--dali"),
        (["--dataset", "cifar10", "--dali"], "--gpu_augment"),
        (["--gpu_augment", "--dali"], "exclusive"),
    ],
)
def test_arguments_refuse_mismatched_input_paths(extra: list[str], message: str) -> None:
    from cassle.args import ArgumentError, parse_args

    with pytest.raises(ArgumentError, match=message):
        parse_args(["--num_tasks", "2"] + extra)


def test_input_path_flags_may_change_on_resume() -> None:
    """A run started without --gpu_augment/--dali (or before they existed) resumes with them."""
    from cassle.rundir import run_identity

    assert run_identity({"method": "byol", "gpu_augment": True, "dali": False}) == {"method": "byol"}
