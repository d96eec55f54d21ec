"""MoCo v2+: contract, symmetric loss against the queue, FIFO key queue, EMA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cassle.losses import mocov2plus_loss_func
from cassle.methods import MoCoV2Plus
from tests.methods.helpers import B, check_contract, check_fit, check_loss_decreases, make_batch, tiny_cfg


def test_contract_loss_and_queue_update() -> None:
    model = MoCoV2Plus.from_flat(tiny_cfg(num_classes=0, queue_size=20))
    queue_before = model.queue.rows().clone()
    assert queue_before.shape == (20, 16)
    assert torch.allclose(queue_before.norm(dim=1), torch.ones(20))
    out = model.training_step(make_batch(), 0)
    k1, k2 = out["momentum_z"]
    ref = (
        mocov2plus_loss_func(out["z"][0], k2, queue_before, 0.2)
        + mocov2plus_loss_func(out["z"][1], k1, queue_before, 0.2)
    ) / 2
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-5)
    keys = F.normalize(torch.cat([k1, k2]), dim=1)
    assert torch.allclose(model.queue.rows()[: 2 * B], keys)
    assert torch.equal(model.queue.rows()[2 * B :], queue_before[2 * B :])
    assert int(model.queue.ptr) == 2 * B
    # the second step wraps around: 16 new keys starting at 16 of a 20-slot queue
    out = model.training_step(make_batch(seed=1), 1)
    keys2 = F.normalize(torch.cat(out["momentum_z"]), dim=1)
    assert torch.allclose(model.queue.rows()[16:], keys2[:4]) and torch.allclose(model.queue.rows()[:12], keys2[4:])
    assert int(model.queue.ptr) == 12


def test_defaults_and_contract() -> None:
    check_contract(MoCoV2Plus)
    model = MoCoV2Plus.from_flat(tiny_cfg())
    assert (model.base_tau_momentum, model.final_tau_momentum) == (0.99, 0.999)
    assert len(model.momentum_pairs) == 2
    assert {"queue.queue", "queue.ptr", "queue.count"} <= set(model.state_dict())


def test_loss_decreases_against_fixed_negatives(monkeypatch: pytest.MonkeyPatch) -> None:
    # with a live queue the loss first *rises* as keys resembling the queries enter it;
    # freezing the queue isolates the learning signal
    monkeypatch.setattr(MoCoV2Plus, "enqueue", lambda self, keys: None)
    check_loss_decreases(MoCoV2Plus, queue_size=32)


def test_fit() -> None:
    check_fit(MoCoV2Plus)
