#!/usr/bin/env python3
"""Training throughput (images/s) of Barlow Twins + CaSSLe on one GPU for the three input paths.

    PYTHONPATH=. python bench/gpu_throughput.py [--steps 30] [--warmup 10] [--workers 8] [--inputs torch gpu_augment dali]

Setting: ResNet-18, 32 px crops, batch 256, bf16-mixed, channels_last, the
second task of a 2-task run (so CaSSLe's frozen teacher and predictor are
active), one Lightning ``fit`` per input path, timed over ``--steps`` steps
after ``--warmup`` steps (data loading, transfer, augmentation, forward,
backward and optimiser step all inside the timed span).

Inputs (all synthetic, no dataset needed):

* ``torch``: in-memory ``uint8`` images, per-sample torchvision augmentation
  in ``--workers`` DataLoader workers;
* ``gpu_augment``: the same images, augmented as whole batches on the GPU
  (:mod:`cassle.data.batched_augment`);
* ``dali``: the same images written once as 32 px JPEGs to a temporary
  folder, decoded (``device="mixed"``) and augmented by DALI
  (:mod:`cassle.data.dali`); skipped with a message without DALI.

Without a GPU it exits with a message and status 1.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NUM_CLASSES = 10
NUM_TASKS = 2


def _synthetic_images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` smooth random 3×32×32 uint8 images (low-frequency noise upsampled, so JPEG sizes are realistic)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    images = torch.nn.functional.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False)
    images = (images * 255).round().clamp(0, 255).to(torch.uint8)
    targets = torch.arange(n) % NUM_CLASSES
    return images, targets


def _write_jpegs(images: torch.Tensor, targets: torch.Tensor, root: Path) -> None:
    """A custom-dataset folder ``root/train/<class>/<i>.jpg``."""
    from PIL import Image

    for c in range(NUM_CLASSES):
        (root / "train" / f"class{c:02d}").mkdir(parents=True, exist_ok=True)
    arr = images.permute(0, 2, 3, 1).numpy()
    for i, (img, t) in enumerate(zip(arr, targets.tolist())):
        Image.fromarray(img).save(root / "train" / f"class{t:02d}" / f"{i:06d}.jpg", quality=90)


def _config(args: argparse.Namespace, dataset: str, data_dir: str | None, **extra: Any) -> dict[str, Any]:
    from cassle.args import parse_args
    from cassle.continual import args_to_cfg

    argv = [
        "--method",
        "barlow_twins",
        "--strategy",
        "cassle",
        "--dataset",
        dataset,
        "--encoder",
        "resnet18",
        "--crop_size",
        "32",
        "--batch_size",
        str(args.batch_size),
        "--precision",
        "bf16",
        "--num_tasks",
        str(NUM_TASKS),
        "--num_workers",
        str(args.workers),
        "--accelerator",
        "gpu",
        "--devices",
        "1",
        "--optimizer",
        "lars",
        "--lr",
        "0.3",
        "--no_progress_bar",
        "--probes",
        "none",
    ]
    if data_dir is not None:
        argv += ["--data_dir", data_dir]
    cfg = args_to_cfg(parse_args(argv))
    cfg.update(num_views=2, num_classes=NUM_CLASSES, **extra)
    return cfg


class _Timer:
    """Lightning callback: wall time between the end of step ``warmup - 1`` and the end of the last step."""

    def __new__(cls, warmup: int):  # built lazily so importing this file needs no Lightning
        import lightning as L

        class Timer(L.Callback):
            def __init__(self) -> None:
                self.t0 = self.t1 = 0.0
                self.steps = 0

            def on_train_batch_end(
                self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
            ) -> None:
                torch.cuda.synchronize()
                step = trainer.global_step
                if step == warmup:
                    self.t0 = time.perf_counter()
                elif step > warmup:
                    self.t1 = time.perf_counter()
                    self.steps = step - warmup

        return Timer()


def _channels_last_model(cfg: dict[str, Any]) -> Any:
    from cassle.strategies import build_model_class

    base = build_model_class("barlow_twins", "cassle")

    class ChannelsLast(base):  # type: ignore[misc, valid-type]
        """Feeds channels_last views to a channels_last network."""

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            idx, views, targets = batch
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
            return super().training_step((idx, views, targets), batch_idx)

    model = ChannelsLast.from_flat(cfg)
    model.on_task_start(0)
    model.on_task_start(1)  # second task: the frozen teacher + predictor are in the step
    return model.to(memory_format=torch.channels_last)


def measure(cfg: dict[str, Any], train_dataset: Any, args: argparse.Namespace) -> float:
    """Images/s of one Lightning fit on task 1 with the input path of ``cfg``."""
    import lightning as L

    from cassle.data.datamodule import ContinualDataModule

    dm = ContinualDataModule.from_flat(cfg, train_dataset=train_dataset, test_dataset=None)
    dm.setup("fit")
    dm.set_task(1)
    model = _channels_last_model(cfg)
    timer = _Timer(args.warmup)
    trainer = L.Trainer(
        accelerator="gpu",
        devices=1,
        precision="bf16-mixed",
        max_steps=args.warmup + args.steps,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    trainer.fit(model, datamodule=dm)
    if timer.steps <= 0:
        raise RuntimeError("no timed steps: raise --images or lower --warmup")
    return timer.steps * args.batch_size / (timer.t1 - timer.t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--workers", type=int, default=8, help="DataLoader workers (torch path) / DALI threads")
    p.add_argument("--images", type=int, default=20480, help="synthetic training images (two tasks of 5 classes)")
    p.add_argument(
        "--inputs", nargs="+", default=["torch", "gpu_augment", "dali"], choices=["torch", "gpu_augment", "dali"]
    )
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print(
            "bench/gpu_throughput.py needs a CUDA GPU and none is present; run it on a GPU machine "
            "(bench/augment.py measures the CPU side).",
            file=sys.stderr,
        )
        return 1
    torch.backends.cudnn.benchmark = True
    from cassle.data.base import TensorImageDataset

    images, targets = _synthetic_images(args.images)
    in_memory = TensorImageDataset(images, targets, NUM_CLASSES)
    print(
        f"# Barlow Twins + CaSSLe, ResNet-18, 32 px, batch {args.batch_size}, bf16, channels_last, "
        f"{torch.cuda.get_device_name()}, {args.steps} timed steps after {args.warmup}"
    )
    results: dict[str, float] = {}
    for name in args.inputs:
        if name == "dali":
            try:
                from cassle.data.dali import require_dali

                require_dali()
            except ValueError as e:
                print(f"dali        skipped: {e}")
                continue
            from cassle.data.datasets import load_dataset

            with tempfile.TemporaryDirectory() as tmp:
                _write_jpegs(images, targets, Path(tmp))
                files = load_dataset("custom", tmp, train=True)
                results[name] = measure(_config(args, "custom", tmp, dali=True), files, args)
        else:
            results[name] = measure(_config(args, "cifar10", None, gpu_augment=name == "gpu_augment"), in_memory, args)
        print(f"{name:<11} {results[name]:9.0f} img/s", flush=True)
    if "torch" in results:
        for name, v in results.items():
            if name != "torch":
                print(f"{name} / torch: {v / results['torch']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
