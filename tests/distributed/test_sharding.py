"""Each DDP rank trains on its own shard of the task: disjoint, equal-size, together the task.

No processes: the data module is given a stand-in trainer with ``world_size=2`` and ``global_rank``
0 or 1, exactly what it reads from Lightning's trainer, and both ranks' loaders are iterated here.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch.utils.data import DistributedSampler

from cassle.data.base import TensorImageDataset
from cassle.data.datamodule import ContinualDataModule
from cassle.data.replay import OnlineBatchSampler
from cassle.data.sampling import EpochShuffleSampler

W = 2


def _dataset(n: int, seed: int = 0) -> TensorImageDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 12, 12), generator=g, dtype=torch.uint8)
    targets = torch.arange(n) % 6
    domains = torch.arange(n) * 3 // n  # three domains of consecutive samples
    return TensorImageDataset(images, targets, 6, domains=domains, domain_names=["real", "sketch", "clipart"])


def _dm(split: str, train_n: int = 91, **kw: Any) -> ContinualDataModule:
    cfg: dict[str, Any] = dict(
        dataset="synthetic",
        data_dir=None,
        num_tasks=3,
        split_strategy=split,
        seed=3,
        batch_size=8,
        num_workers=0,
        crop_size=12,
        no_labels=False,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
    )
    cfg.update(kw)
    dm = ContinualDataModule.from_flat(cfg, train_dataset=_dataset(train_n), test_dataset=_dataset(30, seed=1))
    dm.setup("fit")
    return dm


def _on_rank(dm: ContinualDataModule, rank: int, epoch: int = 0) -> ContinualDataModule:
    dm.trainer = SimpleNamespace(world_size=W, global_rank=rank, fit_loop=None)
    dm.resume_at(epoch)  # the epoch the stand-in trainer's fit is at
    return dm


def _epoch(dm: ContinualDataModule, task: int, rank: int, epoch: int = 0) -> tuple[list[int], list[int], Any]:
    """(sample ids, batch sizes, loader) of one epoch of ``task`` on ``rank``."""
    dm.set_task(task)
    loader = _on_rank(dm, rank, epoch).train_dataloader()
    ids, sizes = [], []
    for batch in loader:
        ids += batch[0].tolist()
        sizes.append(len(batch[0]))
    return ids, sizes, loader


#: no augmentation where only the sample ids matter (faster)
PLAIN = dict(
    color_jitter_prob=[0.0], grayscale_prob=[0.0], horizontal_flip_prob=[0.0], min_scale=[1.0], max_scale=[1.0]
)


@pytest.mark.parametrize("split", ["class", "data", "domain"])
def test_ranks_get_disjoint_equal_shards_of_every_task(split):
    dm = _dm(split, **PLAIN)
    for task in range(dm.num_tasks):
        task_ids = set(dm.split.train_indices[task].tolist())
        n = len(task_ids)
        (ids0, sizes0, loader), (ids1, sizes1, _) = (_epoch(dm, task, r) for r in range(W))
        assert isinstance(loader.sampler, EpochShuffleSampler) and loader.sampler.num_replicas == W
        assert sizes0 == sizes1, "every rank takes the same steps with the same batch size"
        assert len(sizes0) == len(loader) == dm.steps_per_epoch(task, world_size=W)
        assert not set(ids0) & set(ids1), "a sample on both ranks"
        assert len(set(ids0)) == len(ids0) and len(set(ids1)) == len(ids1)
        assert set(ids0) | set(ids1) <= task_ids
        # each shard holds n // W samples; the batches drop a partial last batch only when a full one remains
        per_rank = n // W
        assert len(ids0) == ((per_rank // 8) * 8 if per_rank > 8 else per_rank)


def test_the_shards_cover_the_task_exactly_when_it_divides():
    for num_samples in (10, 11, 17):
        shards = [EpochShuffleSampler(num_samples, seed=5, rank=r, world_size=W).positions(0) for r in range(W)]
        flat = list(itertools.chain(*shards))
        assert len(set(flat)) == len(flat) == (num_samples // W) * W
        if num_samples % W == 0:
            assert sorted(flat) == list(range(num_samples))
        # over the epochs no sample is left out for good: the leftover differs each epoch
        seen = {
            i for e in range(8) for r in range(W) for i in EpochShuffleSampler(num_samples, 5, None, r, W).positions(e)
        }
        assert seen == set(range(num_samples))


def test_one_device_order_is_unchanged_and_ranks_draw_one_permutation():
    one = EpochShuffleSampler(20, seed=7).positions(3)
    assert one == torch.randperm(20, generator=torch.Generator().manual_seed(_mix(7, 3))).tolist()
    r0, r1 = (EpochShuffleSampler(20, 7, None, r, W).positions(3) for r in range(W))
    assert r0 == one[0::2] and r1 == one[1::2]


def _mix(*parts: int) -> int:
    from cassle.data.sampling import mix_seed

    return mix_seed(*parts)


def test_tiny_task_gives_every_rank_a_sample():
    shards = [list(EpochShuffleSampler(1, 0, None, r, W)) for r in range(W)]
    assert [len(s) for s in shards] == [1, 1]
    with pytest.raises(ValueError, match="rank"):
        EpochShuffleSampler(10, 0, None, rank=2, world_size=2)


def test_epochs_reshuffle_and_reaugment_under_ddp():
    """Each epoch is a new permutation and every sample a new augmentation (the per-sample seed has the epoch:
    Lightning's own DistributedSampler yields bare positions, which keyed every epoch's views on epoch 0)."""
    dm = _dm("data", train_n=60, num_tasks=1)
    views = {}
    for epoch in (0, 1):
        dm.set_task(0)
        loader = _on_rank(dm, 0, epoch).train_dataloader()
        order = []
        for idx, vs, _ in loader:
            order += idx.tolist()
            for i, v in zip(idx.tolist(), vs[0]):
                views.setdefault(i, []).append(v)
        views[f"order{epoch}"] = order
    assert views["order0"] != views["order1"]
    both = [v for k, v in views.items() if isinstance(k, int) and len(v) == 2]
    assert both and all(not torch.equal(a, b) for a, b in both)


def test_lightning_keeps_the_datamodule_sampler():
    """Lightning re-shards any loader whose sampler is not a DistributedSampler; ours is one, so it stays."""
    import lightning.pytorch as pl
    from lightning.pytorch.trainer.states import RunningStage

    dm = _dm("class")
    dm.set_task(0)
    loader = _on_rank(dm, 1).train_dataloader()
    assert isinstance(loader.sampler, DistributedSampler)
    trainer = pl.Trainer(accelerator="cpu", devices=W, strategy="ddp", logger=False, enable_progress_bar=False)
    assert trainer._data_connector._prepare_dataloader(loader, shuffle=True, mode=RunningStage.TRAINING) is loader


@pytest.mark.parametrize("num_samples", [7, 48, 50, 60, 61])
def test_online_stream_gives_every_rank_equal_disjoint_minibatches(num_samples):
    """Every step has the same minibatch size on both ranks (60 samples in batches of 8 used to end with a
    full minibatch on rank 0 and a 4-sample one on rank 1: a gathered loss then fails)."""
    batches = [list(OnlineBatchSampler(num_samples, 8, 2, seed=1, rank=r, world_size=W)) for r in range(W)]
    assert len(batches[0]) == len(batches[1]) == len(OnlineBatchSampler(num_samples, 8, 2, 1, 0, W))
    for b0, b1 in zip(*batches):
        assert len(b0) == len(b1) > 0
    ids = [{i for b in bs for i, _ in b} for bs in batches]
    assert not ids[0] & ids[1]
    assert len(ids[0] | ids[1]) >= num_samples - (W - 1)  # only the < W leftover of the last global minibatch
