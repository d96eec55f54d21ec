"""ER: the method trains on stream rows followed by freshly augmented buffer rows; insertion after the step."""

from __future__ import annotations

import io

import pytest
import torch

from tests.strategies.replay_helpers import DeterministicTransform, batch, model, sgd_step, to_float_views

pytestmark = pytest.mark.usefixtures("one_thread")


def test_batch_is_stream_then_replayed_rows(method_inputs):
    m = model("simclr", "er", replay_batch_size=4)
    m.replay_transform = DeterministicTransform()
    b0 = batch(seed=0, start=0)
    out0 = sgd_step(m, b0)
    assert out0["num_replayed"] == 0 and len(method_inputs[0][0]) == 6  # empty buffer: stream only
    assert len(m.buffer) == 6  # inserted after the step
    b1 = batch(seed=1, start=100)
    out1 = sgd_step(m, b1, 1)
    idx, views, targets = method_inputs[1]
    assert out1["num_replayed"] == 4 and len(idx) == 10
    assert torch.equal(idx[:6], b1[0]) and torch.equal(views[0][:6], b1[1][0])
    rep_idx = idx[6:]
    assert set(rep_idx.tolist()) <= set(range(6))  # replayed rows come from the buffer (the first batch)
    pos = m.replay_ctx["positions"]
    stored = m.buffer.get(pos)
    assert torch.equal(stored["indexes"], rep_idx) and torch.equal(stored["targets"], targets[6:])
    expected = to_float_views(stored["images"])
    assert torch.allclose(views[0][6:], expected[0]) and torch.allclose(views[1][6:], expected[1])
    assert len(m.buffer) == 12


def test_replayed_views_use_the_stream_augmentation():
    m = model("byol", "er")
    m.on_task_start(0)
    sgd_step(m, batch(seed=0))
    _, rep = m.buffer.sample(3)
    v1 = m.augment(rep["images"])
    v2 = m.augment(rep["images"])
    assert len(v1) == 2 and v1[0].shape == (3, 3, 8, 8) and v1[0].dtype == torch.float32
    assert not torch.equal(v1[0], v2[0])  # fresh augmentations every time


def test_strategy_state_round_trip():
    m = model("simclr", "er")
    for i in range(3):
        sgd_step(m, batch(seed=i, start=6 * i), i)
    blob = io.BytesIO()
    torch.save(m.strategy_state_dict(), blob)
    blob.seek(0)
    other = model("simclr", "er")
    other.load_strategy_state_dict(torch.load(blob, weights_only=True))
    assert other.buffer.num_seen == 18 and len(other.buffer) == 16
    for k, v in m.buffer.data.items():
        assert torch.equal(v, other.buffer.data[k]), k
    assert torch.equal(m.buffer.sample(5)[0], other.buffer.sample(5)[0])


def test_same_seed_same_buffer_and_different_seed_differs():
    def run(seed):
        torch.manual_seed(0)
        m = model("simclr", "er", seed=seed, mem_size=8)
        for i in range(4):
            sgd_step(m, batch(seed=i, start=6 * i), i)
        return m.buffer.data["indexes"].clone()

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def _two_rank_checkpoint(monkeypatch) -> tuple[list, dict]:
    """Two ranks' ER models with different buffers, and the checkpoint rank 0 writes with both buffers."""
    ranks = [model("simclr", "er", seed=10 + r) for r in range(2)]
    for r, m in enumerate(ranks):
        for i in range(2):
            sgd_step(m, batch(seed=10 * r + i, start=100 * r + 6 * i), i)
    states = [m.buffer.state_dict() for m in ranks]
    monkeypatch.setattr(type(ranks[0]), "_gather_buffer_states", lambda self: states)
    ckpt: dict = {}
    ranks[0].on_save_checkpoint(ckpt)
    return ranks, ckpt


def test_each_ddp_rank_restores_its_own_buffer(monkeypatch):
    """Rank 0 writes the checkpoint with every rank's buffer; each rank loads its own entry."""
    ranks, ckpt = _two_rank_checkpoint(monkeypatch)
    assert len(ckpt["strategy_state"]["buffer_per_rank"]) == 2
    for r in range(2):
        fresh = model("simclr", "er")
        monkeypatch.setattr(type(fresh), "_rank", lambda self, r=r: r)
        fresh.load_strategy_state_dict(ckpt["strategy_state"])
        assert torch.equal(fresh.buffer.data["indexes"], ranks[r].buffer.data["indexes"])
    # a single-process checkpoint (no per-rank list) restores the one buffer on every rank
    single = ranks[1].strategy_state_dict()
    assert "buffer_per_rank" not in single
    fresh = model("simclr", "er")
    fresh.load_strategy_state_dict(single)
    assert torch.equal(fresh.buffer.data["indexes"], ranks[1].buffer.data["indexes"])


def test_a_rank_the_environment_does_not_name_takes_its_buffer_when_the_fit_starts(monkeypatch):
    """A node started by hand (``NODE_RANK=1``, no ``RANK``) loads the task checkpoint before a trainer exists,
    when it cannot know its global rank: it keeps every rank's entry and takes its own in ``on_train_start``."""
    from types import SimpleNamespace

    ranks, ckpt = _two_rank_checkpoint(monkeypatch)
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NODE_RANK", "1")
    fresh = model("simclr", "er")
    fresh.load_strategy_state_dict(ckpt["strategy_state"])  # no trainer yet: rank 0's entry for now
    assert torch.equal(fresh.buffer.data["indexes"], ranks[0].buffer.data["indexes"])
    fresh._trainer = SimpleNamespace(global_rank=1, world_size=2)
    from cassle.strategies.replay import ReplayMixin

    ReplayMixin.on_train_start(fresh)
    assert torch.equal(fresh.buffer.data["indexes"], ranks[1].buffer.data["indexes"])


@pytest.mark.parametrize("gpu_augment", [False, True])
def test_task_loop_hands_over_the_stream_augmentation(gpu_augment):
    """Replayed samples are augmented by the data module's own pipeline (handed over by the task loop,
    not fetched through the trainer): per-sample transform, and with --gpu_augment its batch augmentation."""
    from types import SimpleNamespace

    calls = []
    per_sample = DeterministicTransform()

    def on_device(images):
        calls.append(images.shape)
        return to_float_views(images)

    dm = SimpleNamespace(train_transform=lambda: per_sample, augment_on_device=on_device)
    m = model("simclr", "er", gpu_augment=gpu_augment)
    m.use_stream_augmentation(dm)
    assert m.replay_transform is per_sample
    views = m.augment(torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8))
    assert len(views) == 2 and views[0].shape == (3, 3, 8, 8)
    assert calls == ([(3, 1, 8, 8)] if gpu_augment else [])
