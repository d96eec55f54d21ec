"""Online continual learning: a seeded stream seen once, each minibatch trained --mb_passes times,
buffer insertion once per minibatch (after its last pass); end-to-end replay run with a mid-task resume."""

from __future__ import annotations

import itertools

import pytest
import torch

import main_continual
from cassle import continual
from cassle.args import parse_args
from cassle.data.base import TensorImageDataset
from cassle.data.datamodule import ContinualDataModule
from cassle.data.replay import OnlineBatchSampler
from cassle.strategies.replay import ReplayMixin
from tests.helpers import TINY
from tests.strategies.replay_helpers import model


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: tiny models gain nothing from more, and a busy 2-core machine slows them down a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


DM_CFG = dict(dataset="digits", num_tasks=2, seed=3, batch_size=16, num_workers=0, crop_size=8, num_views=2)


def _dm(**over) -> ContinualDataModule:
    """A 160-image, 4-class in-memory dataset (two tasks of 80 images)."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (160, 1, 8, 8), generator=g, dtype=torch.uint8)
    train = TensorImageDataset(images, torch.arange(160) % 4, num_classes=4)
    dm = ContinualDataModule.from_flat({**DM_CFG, **over}, train_dataset=train)
    dm.setup("fit")
    return dm


def test_stream_repeats_each_minibatch_and_sees_every_sample_once():
    dm = _dm(online=True, mb_passes=3, return_raw=True)
    batches = list(dm.train_dataloader())
    n = len(dm.split.train_indices[0])
    assert len(batches) == 3 * -(-n // 16) == dm.steps_per_epoch()
    seen = []
    for k in range(0, len(batches), 3):
        group = batches[k : k + 3]
        assert [int(b[3]["mb_pass"][0]) for b in group] == [0, 1, 2]
        assert all(torch.equal(b[0], group[0][0]) for b in group)  # same samples...
        assert all(torch.equal(b[3]["raw"], group[0][3]["raw"]) for b in group)
        assert not torch.equal(group[0][1][0], group[1][1][0])  # ...with fresh augmentations
        seen += group[0][0].tolist()
    assert sorted(seen) == sorted(dm.split.train_indices[0].tolist())
    raw = batches[0][3]["raw"]
    assert raw.dtype == torch.uint8 and raw.shape[1:] == (1, 8, 8)


def test_stream_order_comes_from_the_seed():
    order = lambda seed: [b[0] for b in OnlineBatchSampler(50, 8, 1, seed)]
    assert order(1) == order(1) and order(1) != order(2)
    ranks = [list(itertools.chain(*OnlineBatchSampler(50, 8, 2, 1, rank=r, world_size=2))) for r in range(2)]
    assert not {i for i, _ in ranks[0]} & {i for i, _ in ranks[1]}  # ranks see disjoint minibatches


def test_offline_batches_stay_plain_without_replay():
    b = next(iter(_dm().train_dataloader()))
    assert len(b) == 3
    b = next(iter(_dm(return_raw=True).train_dataloader()))
    assert len(b) == 4 and int(b[3]["mb_pass"].max()) == 0


def test_non_replay_strategies_accept_online_batches(monkeypatch):
    """finetune / cassle get the 4-element online batch; the method still receives (indexes, views, targets)."""
    from tests.strategies.replay_helpers import batch

    for strategy in ("finetune", "cassle"):
        m = model("simclr", strategy)
        m.on_task_start(1)
        b = batch(mb_pass=1)
        out = m.training_step(b, 0)
        assert torch.isfinite(out["loss"]) and len(out["z"][0]) == len(b[0])


def _online_er(seed: int, steps: int = 12, passes: int = 3):
    torch.manual_seed(0)
    dm = _dm(online=True, mb_passes=passes, return_raw=True, seed=seed)
    m = model("simclr", "er", online=True, mb_passes=passes, seed=seed, mem_size=40, replay_batch_size=8)
    log = []
    for i, b in enumerate(itertools.islice(dm.train_dataloader(), steps)):
        before = m.buffer.num_seen
        m.training_step(b, i)
        log.append((int(b[3]["mb_pass"][0]), m.buffer.num_seen - before, m.replay_ctx["positions"].tolist()))
    return m, log


def test_online_er_inserts_once_per_minibatch_after_its_last_pass():
    m, log = _online_er(seed=3)
    for pass_idx, inserted, _ in log:
        assert inserted == (16 if pass_idx == 2 else 0)
    assert m.buffer.num_seen == 16 * 4
    # every pass of a minibatch draws its own replay sample
    second = log[3:6]
    assert len({tuple(p) for _, _, p in second}) > 1


def test_same_seed_same_stream_same_buffer():
    a, _ = _online_er(seed=3, steps=9)
    b, _ = _online_er(seed=3, steps=9)
    c, _ = _online_er(seed=4, steps=9)
    for k in a.buffer.data:
        assert torch.equal(a.buffer.data[k], b.buffer.data[k]), k
    assert not torch.equal(a.buffer.data["indexes"], c.buffer.data["indexes"])


# --------------------------------------------------------------------- arguments
def _fails(capsys, argv, *needles):
    assert main_continual.main(argv) == 2
    err = capsys.readouterr().err
    for n in needles:
        assert n in err, err


def test_online_arguments(tmp_path, capsys):
    base = TINY + ["--checkpoint_dir", str(tmp_path / "run")]
    assert parse_args(base + ["--online", "--mb_passes", "2"]).max_epochs == 1
    _fails(capsys, base + ["--online", "--max_epochs", "3"], "--online", "--max_epochs 1")
    _fails(capsys, base + ["--mb_passes", "2"], "--mb_passes 2 only applies to --online")
    _fails(capsys, base + ["--strategy", "er", "--mem_size", "0"], "--mem_size must be at least 1")
    _fails(capsys, base + ["--strategy", "minred", "--buffer_type", "fifo"], "--buffer_type minred")
    _fails(capsys, base + ["--strategy", "er", "--buffer_type", "lifo"], "--buffer_type", "reservoir")
    _fails(
        capsys,
        base + ["--strategy", "aep", "--method", "swav", "--align_criterion", "ssl"],
        "--align_criterion ssl",
        "SwAV",
        "cosine or mse",
    )
    _fails(capsys, base + ["--strategy", "lump", "--lump_alpha", "0"], "--lump_alpha must be positive")
    _fails(capsys, base + ["--strategy", "arp", "--buffer_feature_ema", "1.5"], "--buffer_feature_ema")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------- end to end
REPLAY_ARGS = [
    "--strategy",
    "er",
    "--mem_size",
    "100",
    "--replay_batch_size",
    "16",
    "--batch_size",
    "128",
    "--num_tasks",
    "2",
    "--probes",
    "knn",
]


class _Boom(RuntimeError):
    pass


@pytest.mark.slow
def test_end_to_end_online(tmp_path):
    argv = (
        TINY
        + REPLAY_ARGS
        + ["--checkpoint_dir", str(tmp_path / "run"), "--online", "--mb_passes", "2", "--buffer_type", "fifo"]
    )
    assert main_continual.main(argv) == 0
    state = torch.load(tmp_path / "run" / "task1.ckpt", weights_only=True)["strategy_state"]["buffer"]
    plan = continual.prepare_run(parse_args(argv))
    n = sum(len(plan.datamodule.split.train_indices[t]) for t in range(2))
    assert state["num_seen"] == n and state["size"] == 100  # every stream sample offered once
    assert state["data"]["images"].dtype == torch.uint8


@pytest.mark.slow
def test_end_to_end_replay_with_mid_task_resume_keeps_the_buffer(tmp_path, monkeypatch):
    argv = TINY + REPLAY_ARGS + ["--checkpoint_dir", str(tmp_path / "run"), "--max_epochs", "2"]
    original = continual._EpochCheckpoint.on_train_epoch_end

    def crash(self, trainer, pl_module):
        original(self, trainer, pl_module)
        if self.path.name == "task1-last.ckpt" and trainer.current_epoch == 0:
            raise _Boom("simulated crash")

    monkeypatch.setattr(continual._EpochCheckpoint, "on_train_epoch_end", crash)
    with pytest.raises(_Boom):
        main_continual.main(argv)
    run = tmp_path / "run"
    saved = torch.load(run / "resume" / "task1-last.ckpt", weights_only=True)["strategy_state"]["buffer"]
    task0 = torch.load(run / "task0.ckpt", weights_only=True)["strategy_state"]["buffer"]
    assert saved["num_seen"] > task0["num_seen"] > 0

    monkeypatch.setattr(continual._EpochCheckpoint, "on_train_epoch_end", original)
    starts = []
    orig_start = ReplayMixin.on_train_start

    def record(self):
        starts.append((self.buffer.num_seen, self.buffer.data["indexes"].clone(), self.buffer.generator.get_state()))
        orig_start(self)

    monkeypatch.setattr(ReplayMixin, "on_train_start", record)
    assert main_continual.main(argv) == 0
    num_seen, indexes, gen = starts[0]
    assert num_seen == saved["num_seen"]  # the mid-task buffer, not task 0's
    assert torch.equal(indexes, saved["data"]["indexes"]) and torch.equal(gen, saved["generator"])
    final = torch.load(run / "task1.ckpt", weights_only=True)["strategy_state"]["buffer"]
    assert final["num_seen"] > saved["num_seen"] and final["size"] == 100


# --------------------------------------------------------------------- --gpu_augment
def test_batched_augment_stream_keeps_online_passes_and_raw_images():
    """With --gpu_augment the loader ships uint8 images plus the extras; the on-device hook turns them into views."""
    dm = _dm(online=True, mb_passes=2, return_raw=True, gpu_augment=True)
    loader_batches = list(itertools.islice(dm.train_dataloader(), 4))
    assert all(len(b) == 4 and b[1].dtype == torch.uint8 for b in loader_batches)
    out = [dm.on_after_batch_transfer(b, 0) for b in loader_batches]
    for k in (0, 2):
        a, b = out[k], out[k + 1]
        assert [int(a[3]["mb_pass"][0]), int(b[3]["mb_pass"][0])] == [0, 1]
        assert torch.equal(a[0], b[0]) and torch.equal(a[3]["raw"], b[3]["raw"])  # same minibatch, same raw images
        assert len(a[1]) == 2 and a[1][0].dtype == torch.float32 and a[1][0].shape == (16, 3, 8, 8)
        assert not torch.equal(a[1][0], b[1][0])  # fresh augmentations on every pass
    # same seed, same stream and same augmentations
    again = [_dm(online=True, mb_passes=2, return_raw=True, gpu_augment=True)]
    first = again[0].on_after_batch_transfer(next(iter(again[0].train_dataloader())), 0)
    assert torch.equal(first[1][0], out[0][1][0])


def test_replayed_samples_are_augmented_by_the_batched_augmentation(monkeypatch):
    """--gpu_augment: replayed buffer images go through BatchedAugment (one call per step), not the per-sample path."""
    from cassle.data.batched_augment import BatchedAugment
    from tests.strategies.replay_helpers import batch

    m = model("simclr", "er", gpu_augment=True)

    def per_sample(_img):
        raise AssertionError("the per-sample transform must not run with --gpu_augment")

    m.replay_transform = per_sample
    calls = []
    original = BatchedAugment.forward

    def spy(self, images):
        calls.append(tuple(images.shape))
        return original(self, images)

    monkeypatch.setattr(BatchedAugment, "forward", spy)
    m.training_step(batch(seed=0), 0)  # empty buffer: nothing replayed, the stream enters it
    assert calls == []
    out = m.training_step(batch(seed=1, start=6), 1)
    assert out["num_replayed"] == 4 and calls == [(4, 1, 8, 8)]
    assert len(out["z"][0]) == 6 + 4


@pytest.mark.slow
def test_end_to_end_online_replay_with_batched_augment(tmp_path):
    argv = (
        TINY
        + REPLAY_ARGS
        + ["--checkpoint_dir", str(tmp_path / "run"), "--online", "--mb_passes", "2", "--gpu_augment"]
    )
    assert main_continual.main(argv) == 0
    state = torch.load(tmp_path / "run" / "task1.ckpt", weights_only=True)["strategy_state"]["buffer"]
    plan = continual.prepare_run(parse_args(argv))
    n = sum(len(plan.datamodule.split.train_indices[t]) for t in range(2))
    assert state["num_seen"] == n and state["data"]["images"].dtype == torch.uint8
