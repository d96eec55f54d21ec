"""``--dali`` under DDP: two gloo processes, each with its own DALI CPU pipeline (``device_id=None``), train
on disjoint shards of the task's files whose union is the task, every epoch, with the same number of steps.

Each rank runs a real ``Trainer(strategy="ddp", devices=2)`` fit of a tiny model on a folder data set of
PNG files; the data module builds the DALI loader with the trainer's rank and world size (Lightning leaves a
DALI loader unsharded: it is not a ``DataLoader``), and the test records every batch's sample indexes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest

from tests.distributed.spawn import run_ranks

HAS_DALI = importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.dali") is not None
CLASSES, PER_CLASS, BATCH, EPOCHS = ("a", "b", "c", "d"), 9, 4, 2


def _write_folder(root: Path, per_class: int) -> None:
    """``root/<class>/<i>.png``: 12×12 images, each with its own colour."""
    from PIL import Image

    i = 0
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for _ in range(per_class):
            Image.new("RGB", (12, 12), (10 + 7 * i, 90, 200 - 5 * i)).save(root / name / f"{i:03d}.png")
            i += 1


class _Record(pl.Callback):
    def __init__(self) -> None:
        self.epochs: list[list[int]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epochs.append([])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        idx, views, _ = batch
        assert len(views) == 2 and views[0].shape == (len(idx), 3, 8, 8) and views[0].device.type == "cpu"
        self.epochs[-1].extend(idx.tolist())


def _dali_on_rank(rank: int, world: int, data_dir: str) -> dict[str, Any]:
    from cassle.data.datamodule import ContinualDataModule
    from cassle.strategies import build_model_class

    cfg: dict[str, Any] = dict(
        dataset="custom",
        data_dir=data_dir,
        num_tasks=2,
        split_strategy="class",
        seed=5,
        batch_size=BATCH,
        num_workers=1,
        crop_size=8,
        no_labels=False,
        dali=True,
        method="barlow_twins",
        strategy="finetune",
        encoder="resnet9",
        base_width=4,
        proj_hidden_dim=16,
        output_dim=16,
        lr=0.05,
        warmup_epochs=0,
        optimizer="sgd",
        weight_decay=0.0,
        max_epochs=EPOCHS,
        num_classes=len(CLASSES),
    )
    dm = ContinualDataModule.from_flat(cfg)
    dm.setup("fit")
    model = build_model_class("barlow_twins", "finetune").from_flat(cfg)
    out: dict[str, Any] = {"tasks": [], "task_indices": [], "loader": []}
    for task in range(cfg["num_tasks"]):
        dm.set_task(task)
        model.on_task_start(task)
        record = _Record()
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=world,
            strategy="ddp",
            max_epochs=EPOCHS,
            logger=False,
            callbacks=[record],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
        )
        trainer.fit(model, datamodule=dm)
        loader = trainer.train_dataloader
        out["loader"].append((type(loader).__name__, len(loader), loader.pipeline.device_id))
        out["tasks"].append(record.epochs)
        out["task_indices"].append(sorted(dm.split.train_indices[task].tolist()))
    return out


@pytest.mark.slow
@pytest.mark.skipif(not HAS_DALI, reason="NVIDIA DALI is not installed (pip install 'cassle[dali]')")
@pytest.mark.parametrize("per_class", [PER_CLASS - 1, PER_CLASS], ids=["even", "odd"])
def test_each_rank_reads_a_disjoint_shard_and_together_the_task(tmp_path, per_class):
    _write_folder(tmp_path / "train", per_class)
    _write_folder(tmp_path / "val", 2)
    r0, r1 = run_ranks(_dali_on_rank, str(tmp_path))
    assert r0["task_indices"] == r1["task_indices"]
    for task, task_ids in enumerate(r0["task_indices"]):
        n = len(task_ids)
        for rank, res in enumerate((r0, r1)):
            # a CPU pipeline (device_id None) on each rank, one batch of BATCH per step, whole batches only
            name, steps, device_id = res["loader"][task]
            assert name == "DaliLoader" and device_id is None
            assert steps == ((n + 1) // 2) // BATCH
            assert [len(e) for e in res["tasks"][task]] == [steps * BATCH] * EPOCHS, f"rank {rank}"
        orders = []
        for epoch in range(EPOCHS):
            ids0, ids1 = r0["tasks"][task][epoch], r1["tasks"][task][epoch]
            assert len(set(ids0)) == len(ids0) and len(set(ids1)) == len(ids1)
            assert not set(ids0) & set(ids1), f"task {task} epoch {epoch}: a file read by both ranks"
            assert set(ids0) | set(ids1) <= set(task_ids)
            if n % (2 * BATCH) == 0:  # the shards divide into whole batches: together they are the task
                assert sorted(ids0 + ids1) == task_ids
            orders.append((ids0, ids1))
        assert orders[0] != orders[1], "every epoch reshuffles the task before sharding it"
