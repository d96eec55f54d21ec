"""ContinualDataModule: task loaders, index ids, epochs never empty, eval loaders."""

from __future__ import annotations

from typing import Any

import lightning as L
import pytest
import torch

from cassle.data.base import TensorImageDataset
from cassle.data.datamodule import ContinualDataModule

NO_AUG = dict(
    color_jitter_prob=[0.0],
    grayscale_prob=[0.0],
    horizontal_flip_prob=[0.0],
    min_scale=[1.0],
    max_scale=[1.0],
)


def _dataset(
    n: int, channels: int = 1, num_classes: int = 6, domains: torch.Tensor | None = None, offset: int = 0
) -> TensorImageDataset:
    """Constant images whose pixel value encodes the sample index: value = 2·(i + offset)."""
    values = (torch.arange(n) + offset) * 2
    images = values.view(n, 1, 1, 1).expand(n, channels, 12, 12).to(torch.uint8).clone()
    targets = torch.arange(n) % num_classes
    return TensorImageDataset(
        images,
        targets,
        num_classes,
        domains=domains,
        domain_names=None if domains is None else ["real", "sketch", "clipart"],
    )


def _cfg(**kw: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = dict(
        dataset="synthetic",
        data_dir=None,
        num_tasks=3,
        split_strategy="class",
        seed=3,
        batch_size=8,
        num_workers=0,
        crop_size=12,
        no_labels=False,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
    )
    cfg.update(kw)
    return cfg


def _dm(train_n: int = 60, test_n: int = 30, **kw: Any) -> ContinualDataModule:
    return ContinualDataModule.from_flat(
        _cfg(**kw), train_dataset=_dataset(train_n), test_dataset=_dataset(test_n, offset=60)
    )


def test_batch_structure_and_properties() -> None:
    dm = _dm(num_views=2)
    assert dm.num_tasks == 3 and dm.num_classes == 6 and dm.current_task == 0
    assert sorted(c for cs in dm.task_classes for c in cs) == list(range(6))
    idx, views, targets = next(iter(dm.train_dataloader()))
    assert idx.dtype == torch.long and targets.dtype == torch.long and idx.shape == (8,)
    assert isinstance(views, list) and len(views) == 2
    assert all(v.shape == (8, 3, 12, 12) and v.dtype == torch.float32 for v in views)
    views3 = next(iter(_dm(num_views=3, crop_size=8).train_dataloader()))[1]
    assert len(views3) == 3 and views3[0].shape == (8, 3, 8, 8)


def test_indices_map_back_to_samples_and_targets() -> None:
    dm = _dm(batch_size=7, **NO_AUG)
    ds = dm.train_dataset
    for task in range(dm.num_tasks):
        dm.set_task(task)
        seen = []
        for idx, views, targets in dm.train_dataloader():
            assert torch.equal(targets, ds.targets[idx])
            for v in views:  # pixel value encodes the index: 2·i / 255
                assert torch.allclose(v.mean(dim=(1, 2, 3)) * 255, idx.float() * 2, atol=1e-3)
            seen.append(idx)
        seen_t = torch.cat(seen)
        assert set(ds.targets[seen_t].tolist()) <= set(dm.task_classes[task])
        assert len(set(seen_t.tolist())) == len(seen_t)  # no repeats within an epoch
        assert set(seen_t.tolist()) <= set(dm.split.train_indices[task].tolist())


def test_no_empty_epoch_when_task_smaller_than_batch() -> None:
    dm = _dm(train_n=12, batch_size=8)  # 3 tasks of 4 samples, batch of 8
    for task in range(3):
        dm.set_task(task)
        loader = dm.train_dataloader()
        assert not loader.drop_last
        batches = list(loader)
        assert len(batches) == 1 == len(loader) == dm.steps_per_epoch(task)
        assert len(batches[0][0]) == 4
    big = _dm(train_n=60, batch_size=8)  # 20 samples per task: drop the partial batch
    loader = big.train_dataloader()
    assert loader.drop_last and len(loader) == 2 == big.steps_per_epoch(0)
    assert all(len(b[0]) == 8 for b in loader)
    exact = _dm(train_n=48, batch_size=16)  # 16 per task == batch size: one full batch
    assert len(list(exact.train_dataloader())) == 1 == exact.steps_per_epoch(0)
    # per device under DDP: 20 samples on 4 devices -> 5 each, less than a batch
    assert big.steps_per_epoch(0, world_size=4) == 1


def test_every_epoch_has_batches_under_lightning() -> None:
    class Counter(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.per_epoch: dict[int, int] = {}

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.per_epoch[self.current_epoch] = self.per_epoch.get(self.current_epoch, 0) + 1
            return (self.w * batch[1][0].mean()).sum()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = _dm(train_n=12, batch_size=8)
    dm.set_task(1)
    model = Counter()
    trainer = L.Trainer(
        max_epochs=3,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(model, datamodule=dm)
    assert model.per_epoch == {0: 1, 1: 1, 2: 1}


def test_shuffle_seeded_by_seed_and_task() -> None:
    first = lambda dm: next(iter(dm.train_dataloader()))[0]  # noqa: E731
    a, b = _dm(seed=3), _dm(seed=3)
    assert torch.equal(first(a), first(b))
    orders = {tuple(first(_dm(seed=s)).tolist()) for s in range(4)}
    assert len(orders) > 1
    # each epoch's order is a function of the epoch alone (Lightning calls set_epoch): epochs differ, and an
    # epoch drawn again (a resumed run) repeats; 20 samples, 2 full batches each
    loader = a.train_dataloader()
    e1 = torch.cat([b[0] for b in loader])
    loader.sampler.set_epoch(1)
    e2 = torch.cat([b[0] for b in loader])
    assert len(e1) == len(e2) == 16 and not torch.equal(e1, e2)
    loader.sampler.set_epoch(0)
    assert torch.equal(torch.cat([b[0] for b in loader]), e1)
    fresh = _dm(seed=3).train_dataloader()
    fresh.sampler.set_epoch(1)
    assert torch.equal(torch.cat([b[0] for b in fresh]), e2)


def test_a_samples_augmentation_depends_on_seed_epoch_and_index_only() -> None:
    """Whatever position a sample has in the epoch, whichever worker loads it and however many random draws
    came before, its views are the same: a resumed epoch and any --num_workers give the same batches."""
    ds = _dm(seed=3).train_dataloader().dataset
    pos = 5
    torch.manual_seed(0)
    a = ds[(pos, 0, 1)][1]
    torch.rand(1000)  # other draws in between change nothing
    b = ds[(pos, 0, 1)][1]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    state = torch.random.get_rng_state()
    c = ds[(pos, 0, 2)][1]  # another epoch: other views
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert torch.equal(torch.random.get_rng_state(), state)  # the training process' own RNG is left as it was


def test_val_loader_covers_seen_tasks_only() -> None:
    dm = _dm()
    test_targets = dm.test_dataset.targets
    for task in range(3):
        dm.set_task(task)
        seen_classes = {c for cs in dm.task_classes[: task + 1] for c in cs}
        ys = torch.cat([y for _, y in dm.val_dataloader()])
        assert set(ys.tolist()) == seen_classes
        assert len(ys) == int(sum((test_targets == c).sum() for c in seen_classes))
    # data split: every task's test set is the full test set, served once
    data = _dm(split_strategy="data")
    data.set_task(2)
    assert sum(len(y) for _, y in data.val_dataloader()) == 30


def test_eval_loaders_deterministic_and_mapped() -> None:
    dm = _dm(batch_size=4)
    split = dm.split
    for split_name, per_task, ds in (
        ("test", split.test_indices, dm.test_dataset),
        ("train", split.train_indices, dm.train_dataset),
    ):
        loader = dm.eval_dataloader(1, split_name, batch_size=5)
        run1 = [(x.clone(), y.clone()) for x, y in loader]
        run2 = list(loader)
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(run1, run2))
        xs = torch.cat([x for x, _ in run1])
        ys = torch.cat([y for _, y in run1])
        assert xs.shape[1:] == (3, 12, 12) and len(run1[0][1]) == 5
        # order = the task's index order; pixel value encodes the dataset index
        assert torch.equal(ys, ds.targets[per_task[1]])
        assert torch.allclose(xs.mean(dim=(1, 2, 3)) * 255, ds.images[per_task[1]].float().mean(dim=(1, 2, 3)))
    joint = torch.cat([y for _, y in dm.joint_eval_dataloader("test")])
    assert torch.equal(joint, dm.test_dataset.targets)
    with pytest.raises(ValueError, match="split must be"):
        dm.eval_dataloader(0, "val")
    with pytest.raises(ValueError, match="task must be"):
        dm.eval_dataloader(3, "test")


def test_set_task_validates() -> None:
    dm = _dm()
    dm.set_task(2)
    assert dm.current_task == 2
    for bad in (3, -1, 1.0):
        with pytest.raises(ValueError, match=r"task must be an int in \[0, 2\]"):
            dm.set_task(bad)  # type: ignore[arg-type]


def test_no_test_set() -> None:
    dm = ContinualDataModule.from_flat(_cfg(), train_dataset=_dataset(60))
    assert not dm.has_test and dm.split.test_indices == []
    assert dm.val_dataloader() == []
    with pytest.raises(ValueError, match="no test set"):
        dm.eval_dataloader(0, "test")
    assert len(list(dm.eval_dataloader(0, "train"))) > 0


def test_no_labels() -> None:
    dm = _dm(no_labels=True, split_strategy="data", num_tasks=2)
    assert dm.num_classes == 0 and dm.task_classes == [[], []]
    _, _, targets = next(iter(dm.train_dataloader()))
    assert (targets == -1).all()
    with pytest.raises(ValueError, match="split_strategy data"):
        _ = _dm(no_labels=True, split_strategy="class").split


def test_domain_split_with_named_order_and_rgb() -> None:
    domains = torch.arange(30) // 10
    train = _dataset(30, channels=3, domains=domains)
    test = _dataset(15, channels=3, domains=torch.arange(15) // 5, offset=30)
    dm = ContinualDataModule.from_flat(
        _cfg(split_strategy="domain", num_tasks=2, domain_order="sketch,real"), train_dataset=train, test_dataset=test
    )
    assert dm.split.task_domains == [1, 0]
    idx = torch.cat([b[0] for b in dm.train_dataloader()])
    assert set(domains[idx].tolist()) == {1}
    dm.set_task(1)
    assert sum(len(y) for _, y in dm.val_dataloader()) == 10  # domains 1 and 0 of the test set
    with pytest.raises(ValueError, match="painting"):
        _ = ContinualDataModule.from_flat(
            _cfg(split_strategy="domain", domain_order="painting"), train_dataset=train, test_dataset=test
        ).split


def test_workers_persistent() -> None:
    dm = _dm(num_workers=1)
    assert dm.train_dataloader().persistent_workers
    assert not _dm(num_workers=0).train_dataloader().persistent_workers


def test_loads_registered_digits_dataset() -> None:
    from cassle.data.datasets import DATASETS

    assert "digits" in DATASETS
    dm = ContinualDataModule.from_flat(
        dict(
            dataset="digits",
            data_dir=None,
            num_tasks=5,
            split_strategy="class",
            seed=5,
            batch_size=16,
            num_workers=0,
            crop_size=8,
        )
    )
    assert dm.num_tasks == 5 and dm.num_classes == 10
    idx, views, targets = next(iter(dm.train_dataloader()))
    assert views[0].shape == (16, 3, 8, 8)
    assert torch.equal(targets, dm.train_dataset.targets[idx])


def test_train_fraction_shrinks_training_and_probe_splits_only() -> None:
    full, half = _dm(), _dm(train_fraction=0.5, batch_size=64)  # one batch per epoch: every sample seen
    for t in range(full.num_tasks):
        sub = half.split.train_indices[t]
        assert len(sub) == len(full.split.train_indices[t]) // 2
        assert bool(torch.isin(sub, full.split.train_indices[t]).all())
        assert torch.equal(half.split.test_indices[t], full.split.test_indices[t])
    half.set_task(1)
    seen = torch.cat([b[0] for b in half.train_dataloader()])
    assert torch.equal(torch.sort(seen).values, half.split.train_indices[1])
    assert len(half.eval_dataloader(1, "train").dataset) == len(half.split.train_indices[1])
    assert torch.equal(_dm(train_fraction=1.0).split.train_indices[0], full.split.train_indices[0])


def test_typed_configs_and_from_flat() -> None:
    """The data module takes its own typed configs; ``from_flat`` converts a flat dict; a flat dict passed to
    the constructor (an old call site) fails loudly."""
    from cassle.config import AugmentationConfig, DataConfig, ReplayConfig
    from cassle.data.datamodule import resolve_mean_std

    data = DataConfig(dataset="synthetic", num_tasks=3, seed=3, batch_size=8, num_workers=0, crop_size=12)
    aug = AugmentationConfig(**{k: tuple(v) for k, v in NO_AUG.items()})
    dm = ContinualDataModule(data, aug, ReplayConfig(online=True), train_dataset=_dataset(60))
    assert dm.data_cfg is data and dm.aug_cfg is aug and dm.replay_cfg.online and not hasattr(dm, "cfg")
    default = ContinualDataModule(data, train_dataset=_dataset(60))
    assert default.aug_cfg == AugmentationConfig() and default.replay_cfg == ReplayConfig()
    flat = ContinualDataModule.from_flat({**data.to_flat(), **NO_AUG, "online": True}, train_dataset=_dataset(60))
    assert (flat.data_cfg, flat.aug_cfg, flat.replay_cfg) == (data, aug, ReplayConfig(online=True, seed=3))
    assert torch.equal(flat.split.train_indices[1], dm.split.train_indices[1])
    with pytest.raises(TypeError, match=r"ContinualDataModule\.from_flat"):
        ContinualDataModule(data.to_flat(), train_dataset=_dataset(60))  # type: ignore[arg-type]
    assert resolve_mean_std(DataConfig(mean=(0.1,) * 3, std=(0.2,) * 3)) == ((0.1,) * 3, (0.2,) * 3)
    assert resolve_mean_std(DataConfig(dataset="synthetic"))[0] == (0.485, 0.456, 0.406)  # ImageNet's
    with pytest.raises(TypeError, match="DataConfig"):
        resolve_mean_std({"dataset": "digits"})  # type: ignore[arg-type]
