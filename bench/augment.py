#!/usr/bin/env python3
"""Two-view SSL augmentation throughput: batched (``--gpu_augment``) vs the per-sample path.

    PYTHONPATH=. python bench/augment.py [--images 2048] [--threads 1]

Both paths augment the same synthetic ``uint8`` images with the run's default
augmentations (``cassle.config.AugmentationConfig``: jitter 0.8,
grayscale 0.2, solarisation [0, 0.2], flip 0.5, crop scale [0.08, 1]) plus
Gaussian blur at 0.5, into two views. The per-sample path is the existing
:func:`cassle.data.transforms.build_multiview_transform` (torchvision v2 on
``uint8`` tensors, what each DataLoader worker runs per image); the batched
path is :class:`cassle.data.batched_augment.BatchedAugment` on batches of
256. Each measure is taken in this one run, with the same torch thread count
for both (a DataLoader worker uses one thread, so ``--threads 1`` compares
per core), and printed as one line with the ratio.

With a GPU it also prints the batched path's throughput there and the share
of a Barlow Twins ResNet-18 training step (32 px, batch 256, bf16) spent on
augmentation.

Measured on the 2-core CPU development machine (shared, load ≈ 8; no GPU), 2048 images:

    cpu 3x32px -> 32px: batched     3164 img/s | per-sample     380 img/s | ratio   8.3x
    cpu 1x28px -> 28px: batched     4711 img/s | per-sample     525 img/s | ratio   9.0x
    cpu 3x96px -> 64px: batched      779 img/s | per-sample     257 img/s | ratio   3.0x
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cassle.config import AugmentationConfig  # noqa: E402
from cassle.data.batched_augment import BatchedAugment  # noqa: E402
from cassle.data.transforms import build_multiview_transform  # noqa: E402

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.247, 0.243, 0.261)


def _config() -> AugmentationConfig:
    """The default augmentations with Gaussian blur at 0.5."""
    return AugmentationConfig(gaussian_prob=(0.5,))


def _timed(fn: Callable[[], object], repeats: int = 3, sync: Callable[[], None] = lambda: None) -> float:
    """Best wall time of ``repeats`` calls (after one warm-up call)."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def per_sample_rate(images: torch.Tensor, crop_size: int) -> float:
    t = build_multiview_transform(_config(), crop_size, 2, MEAN, STD)

    def run() -> None:
        for img in images:
            t(img)

    return len(images) / _timed(run, repeats=2)


def batched_rate(images: torch.Tensor, crop_size: int, batch_size: int = 256, device: str = "cpu") -> float:
    aug = BatchedAugment.from_config(_config(), crop_size, 2, MEAN, STD, seed=0)
    x = images.to(device)
    batches = list(torch.split(x, batch_size))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run() -> None:
        for b in batches:
            aug(b)

    return len(images) / _timed(run, sync=sync)


def gpu_step_share(crop_size: int = 32, batch_size: int = 256, steps: int = 20) -> tuple[float, float, float]:
    """(augment ms, total step ms, share) of a Barlow Twins ResNet-18 step on the GPU with batched augmentation."""
    from cassle.methods import METHODS

    cfg = dict(
        encoder="resnet18",
        crop_size=crop_size,
        num_classes=10,
        proj_hidden_dim=2048,
        output_dim=2048,
        batch_size=batch_size,
        lr=0.3,
        max_epochs=1,
        optimizer="sgd",
        weight_decay=1e-4,
        method="barlow_twins",
    )
    model = METHODS["barlow_twins"].from_flat(cfg).cuda().to(memory_format=torch.channels_last)
    model.log = lambda *a, **k: None  # outside a Trainer
    opt = torch.optim.SGD([p for g in model.learnable_params for p in g["params"]], lr=0.1, momentum=0.9)
    aug = BatchedAugment.from_config(_config(), crop_size, 2, MEAN, STD, seed=0)
    images = torch.randint(0, 256, (batch_size, 3, 32, 32), dtype=torch.uint8, device="cuda")
    targets = torch.randint(0, 10, (batch_size,), device="cuda")
    idx = torch.arange(batch_size, device="cuda")
    t_aug = t_all = 0.0
    for i in range(steps + 5):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        views = [v.contiguous(memory_format=torch.channels_last) for v in aug(images)]
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model.training_step((idx, views, targets), i)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        if i >= 5:
            t_aug += t1 - t0
            t_all += t2 - t0
    return 1000 * t_aug / steps, 1000 * t_all / steps, t_aug / t_all


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2048, help="images per measure")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for both paths")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"# two-view augmentation, {args.images} images, {args.threads} CPU thread(s), torch {torch.__version__}")
    for size, crop, channels in ((32, 32, 3), (28, 28, 1), (96, 64, 3)):
        images = torch.randint(0, 256, (args.images, channels, size, size), dtype=torch.uint8, generator=g)
        per = per_sample_rate(images, crop)
        bat = batched_rate(images, crop)
        print(
            f"cpu {channels}x{size}px -> {crop}px: batched {bat:8.0f} img/s | per-sample {per:7.0f} img/s | "
            f"ratio {bat / per:5.1f}x"
        )
    if torch.cuda.is_available():
        images = torch.randint(0, 256, (8192, 3, 32, 32), dtype=torch.uint8, generator=g)
        print(
            f"gpu ({torch.cuda.get_device_name()}) 3x32px -> 32px: batched {batched_rate(images, 32, device='cuda'):9.0f} img/s"
        )
        a, t, share = gpu_step_share()
        print(
            f"gpu Barlow Twins ResNet-18 32px batch 256 bf16 step: augmentation {a:.2f} ms of {t:.2f} ms = {100 * share:.1f}%"
        )
    else:
        print("gpu: none present (the share of a training step spent on augmentation needs one)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
