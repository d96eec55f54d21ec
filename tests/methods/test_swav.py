"""SwAV: contract, unit-norm prototypes, frozen prototypes, queue."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

from cassle.losses import sinkhorn, swav_loss_func
from cassle.methods import SwAV
from tests.methods.helpers import (
    B,
    check_contract,
    check_fit,
    check_loss_decreases,
    make_batch,
    make_trainer,
    tiny_cfg,
    train_loader,
)


def test_contract_and_loss_value() -> None:
    out = check_contract(SwAV, num_classes=0, queue_size=0)
    assert [lg.shape for lg in out["logits"]] == [(B, 20), (B, 20)]
    codes = [sinkhorn(lg.detach(), 3, 0.05) for lg in out["logits"]]
    ref = swav_loss_func(out["logits"], codes, 0.1)
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-5)


def test_prototypes_are_normalised_each_step() -> None:
    model = SwAV.from_flat(tiny_cfg())
    with torch.no_grad():
        model.prototypes.weight.mul_(3.0)
    out = model.training_step(make_batch(), 0)
    assert torch.allclose(model.prototypes.weight.norm(dim=1), torch.ones(20))
    # logits are cosine similarities between normalised z and unit prototypes
    assert out["logits"][0].abs().max() <= 1.0 + 1e-5


def test_queue_filled_with_normalised_projections_and_used_after_start() -> None:
    model = SwAV.from_flat(tiny_cfg(queue_size=24, epoch_queue_starts=0))
    out = model.training_step(make_batch(), 0)
    for v in range(2):
        assert torch.allclose(model.queue.rows(v), F.normalize(out["z"][v], dim=1).detach())
    assert model.queue.queue[:, B:].abs().sum() == 0
    assert model.use_queue()
    out2 = model.training_step(make_batch(seed=1), 1)  # now runs Sinkhorn with 8 queued rows
    # FIFO: the first step's rows stay, the second step's follow them
    assert torch.allclose(model.queue.queue[:, :B], torch.stack([F.normalize(z, dim=1) for z in out["z"]]).detach())
    second = torch.stack([F.normalize(z, dim=1) for z in out2["z"]]).detach()
    assert torch.allclose(model.queue.queue[:, B : 2 * B], second)
    assert not SwAV.from_flat(tiny_cfg(epoch_queue_starts=5)).use_queue()


def test_prototypes_frozen_during_first_epochs() -> None:
    model = SwAV.from_flat(tiny_cfg(freeze_prototypes_epochs=1))
    snapshots = []

    class Snap(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            snapshots.append(pl_module.prototypes.weight.detach().clone())

    start = model.prototypes.weight.detach().clone()
    backbone_start = next(model.backbone.parameters()).detach().clone()
    make_trainer(max_epochs=2, limit_train_batches=2, callbacks=[Snap()]).fit(model, train_loader())
    # epoch 0: frozen (re-normalising unit rows only moves the last float bit)
    assert torch.allclose(snapshots[0], start, atol=1e-6)
    assert (snapshots[1] - start).abs().max() > 1e-4  # epoch 1: learning
    assert not torch.equal(next(model.backbone.parameters()), backbone_start)


def test_loss_decreases() -> None:
    check_loss_decreases(SwAV, freeze_prototypes_epochs=0, queue_size=0)


def test_fit() -> None:
    check_fit(SwAV)
