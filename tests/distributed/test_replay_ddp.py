"""Replay under DDP: each of two gloo ranks keeps a buffer of its own shard, checkpointed and restored per rank.

Every rank runs real Lightning ``Trainer(strategy="ddp", devices=2)`` fits of one task of a small generated
data set, with the task loop's callbacks (epoch seeds, mid-task checkpoint) and checkpoint I/O:

* uninterrupted, two epochs;
* the same, killed right after the epoch-0 mid-task checkpoint (which only rank 0 writes), then resumed
  from it by a fresh model and trainer, as a rerun of ``main_continual.py`` does;
* the task checkpoint (``task_checkpoint`` on rank 0) loaded into a fresh model on every rank, as the next
  task of a rerun does.

The resumed run must hold, on each rank, that rank's own buffer (not rank 0's copied to all), and end with
the uninterrupted run's buffers and weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from cassle.callbacks import EpochCheckpoint, EpochSeeds
from cassle.checkpoint import AtomicCheckpointIO, atomic_torch_save, load_task_checkpoint, load_weights
from cassle.checkpoint import task_checkpoint as make_task_checkpoint
from cassle.data.base import TensorImageDataset
from cassle.data.datamodule import ContinualDataModule
from cassle.strategies import build_model_class
from tests.distributed.spawn import run_ranks

SEED = 3
CFG: dict[str, Any] = dict(
    dataset="synthetic",
    data_dir=None,
    num_tasks=2,
    split_strategy="class",
    seed=SEED,
    batch_size=8,
    num_workers=0,
    crop_size=8,
    no_labels=False,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    return_raw=True,
    encoder="resnet9",
    base_width=4,
    method="barlow_twins",
    proj_hidden_dim=16,
    output_dim=16,
    lr=0.05,
    warmup_epochs=0,
    optimizer="sgd",
    weight_decay=0.0,
    max_epochs=2,
    mem_size=12,
    replay_batch_size=4,
    num_classes=4,
)


class _Boom(RuntimeError):
    """The simulated kill."""


def _dataset(n: int, seed: int) -> TensorImageDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 10, 10), generator=g, dtype=torch.uint8)
    return TensorImageDataset(images, torch.arange(n) % 4, 4)


def _snapshot(model) -> dict[str, Any]:
    """A copy of the buffer's state (``state_dict`` hands out its live CPU tensors) and of the replay generator."""
    state = torch.utils._pytree.tree_map(
        lambda v: v.clone() if isinstance(v, torch.Tensor) else v, model.buffer.state_dict()
    )
    return {**state, "replay_generator": model.replay_generator.get_state()}


class _Record(pl.Callback):
    """What a rank trained on and its buffer at the start, after each epoch and at the end of the fit."""

    def __init__(self, crash_after_epoch: int | None = None) -> None:
        self.ids: list[list[int]] = [[]]
        self.crash_after_epoch = crash_after_epoch
        self.buffers: dict[str, Any] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.buffers["start"] = _snapshot(pl_module)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.ids[-1]:
            self.ids.append([])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.ids[-1].extend(batch[0].tolist())

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # runs before the checkpoint callback (listed first): the state the checkpoint is about to hold
        self.buffers[f"epoch{trainer.current_epoch}"] = _snapshot(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.buffers["end"] = _snapshot(pl_module)


class _CrashAfterCheckpoint(pl.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise _Boom("simulated kill after the mid-task checkpoint")


def _fit(strategy: str, ckpt: Path, resume: bool = False, crash_after: int | None = None) -> tuple[Any, _Record]:
    """One fit of task 0 on this rank (a fresh model and data module, as a fresh process has)."""
    cfg = {**CFG, "strategy": strategy}
    dm = ContinualDataModule.from_flat(cfg, train_dataset=_dataset(64, 0), test_dataset=_dataset(16, 1))
    dm.setup("fit")
    pl.seed_everything(SEED, verbose=False)
    model = build_model_class("barlow_twins", strategy).from_flat(cfg)
    dm.set_task(0)
    model.on_task_start(0)
    model.use_stream_augmentation(dm)
    ckpt_path = str(ckpt) if resume else None
    dm.resume_at(int(torch.load(ckpt, weights_only=True)["epoch"]) + 1 if resume else 0)
    record = _Record()
    callbacks: list[pl.Callback] = [EpochSeeds(SEED, 0), record, EpochCheckpoint(ckpt, 1)]
    if crash_after is not None:
        callbacks.append(_CrashAfterCheckpoint(crash_after))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=CFG["max_epochs"],
        logger=False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        deterministic=True,
    )
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    except _Boom:
        pass
    return model, record


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _replay_on_rank(rank: int, world: int, strategy: str, tmp: str) -> dict[str, Any]:
    import torch.distributed as dist

    tmp_dir = Path(tmp)
    whole, rec_whole = _fit(strategy, tmp_dir / "whole-last.ckpt")
    # the task checkpoint, written by rank 0 alone (after the fit, as the task loop does)
    task_ckpt = make_task_checkpoint(whole, 0, {**CFG, "strategy": strategy})
    if rank == 0:
        atomic_torch_save(task_ckpt, tmp_dir / "task0.ckpt")
    dist.barrier()
    fresh = build_model_class("barlow_twins", strategy).from_flat({**CFG, "strategy": strategy})
    load_weights(fresh, load_task_checkpoint(tmp_dir / "task0.ckpt", "barlow_twins", "resnet9"))

    _, rec_killed = _fit(strategy, tmp_dir / "killed-last.ckpt", crash_after=0)
    dist.barrier()
    on_disk = torch.load(tmp_dir / "killed-last.ckpt", weights_only=True)["strategy_state"]
    resumed, rec_resumed = _fit(strategy, tmp_dir / "killed-last.ckpt", resume=True)
    return {
        "whole": {"ids": rec_whole.ids, "buffers": rec_whole.buffers, "params": _params(whole)},
        "from_task_ckpt": _snapshot(fresh),
        "killed": {"ids": rec_killed.ids, "buffers": rec_killed.buffers},
        "killed_ckpt": on_disk,
        "resumed": {"ids": rec_resumed.ids, "buffers": rec_resumed.buffers, "params": _params(resumed)},
    }


def _same_buffer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        a["size"] == b["size"]
        and a["num_seen"] == b["num_seen"]
        and torch.equal(a["generator"], b["generator"])
        and torch.equal(a["stamp"], b["stamp"])
        and a["data"].keys() == b["data"].keys()
        and all(torch.equal(v, b["data"][k]) for k, v in a["data"].items())
        and torch.equal(a["replay_generator"], b["replay_generator"])
    )


def _ids(buffer_state: dict[str, Any]) -> set[int]:
    return set(buffer_state["data"]["indexes"][: buffer_state["size"]].tolist())


@pytest.mark.parametrize("strategy", ["er", "lump", "minred"])
def test_each_rank_keeps_checkpoints_and_restores_its_own_buffer(strategy, tmp_path):
    r0, r1 = run_ranks(_replay_on_rank, strategy, str(tmp_path))

    # each rank's buffer holds only samples of its own shard; after one epoch the shards are disjoint
    for res in (r0, r1):
        for run in ("whole", "killed"):
            assert _ids(res[run]["buffers"]["epoch0"]) <= set(res[run]["ids"][0])
            assert res[run]["buffers"]["epoch0"]["size"] == CFG["mem_size"]  # full: 16 samples offered
        assert _ids(res["whole"]["buffers"]["end"]) <= {i for epoch in res["whole"]["ids"] for i in epoch}
    assert not set(r0["whole"]["ids"][0]) & set(r1["whole"]["ids"][0])
    assert not _ids(r0["whole"]["buffers"]["epoch0"]) & _ids(r1["whole"]["buffers"]["epoch0"])

    # the mid-task checkpoint (rank 0's file) holds every rank's buffer as it was at that epoch's end
    saved = r0["killed_ckpt"]
    assert len(saved["buffer_per_rank"]) == len(saved["replay_generator_per_rank"]) == 2
    per_rank = [
        {**b, "replay_generator": g} for b, g in zip(saved["buffer_per_rank"], saved["replay_generator_per_rank"])
    ]
    for r, res in enumerate((r0, r1)):
        assert _same_buffer(per_rank[r], res["killed"]["buffers"]["epoch0"]), f"rank {r}'s buffer not saved"
    assert not _same_buffer(per_rank[0], per_rank[1])

    # a resumed fit starts, on each rank, from that rank's own buffer and replay generator (not rank 0's) ...
    for r, res in enumerate((r0, r1)):
        assert _same_buffer(res["resumed"]["buffers"]["start"], res["killed"]["buffers"]["epoch0"]), r
    assert not _same_buffer(r1["resumed"]["buffers"]["start"], r0["killed"]["buffers"]["epoch0"])
    # ... trains on the same samples and ends with the uninterrupted run's buffers and weights
    for r, res in enumerate((r0, r1)):
        assert res["resumed"]["ids"] == res["whole"]["ids"][1:], f"rank {r}: other samples after the resume"
        assert _same_buffer(res["resumed"]["buffers"]["end"], res["whole"]["buffers"]["end"]), f"rank {r}"
        for k, v in res["whole"]["params"].items():
            assert torch.equal(v, res["resumed"]["params"][k]), f"rank {r}: {k} differs after the resume"

    # the task checkpoint restores each rank's own end-of-task buffer in a fresh model (the next task's start)
    for r, res in enumerate((r0, r1)):
        assert _same_buffer(res["from_task_ckpt"], res["whole"]["buffers"]["end"]), f"rank {r}"
    assert not _same_buffer(r1["from_task_ckpt"], r0["whole"]["buffers"]["end"])
