"""DeepCluster V2: contract, loss on the step's own tensors, memory bank, k-means at epoch start, resume, CaSSLe."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from cassle.callbacks import EpochCheckpoint, EpochSeeds
from cassle.config import ModelConfig
from cassle.losses.deepclusterv2 import deepclusterv2_loss_func
from cassle.losses.distill import knowledge_distill
from cassle.methods import METHODS
from cassle.methods.deepclusterv2 import BANK_BUFFERS, DeepClusterV2
from cassle.strategies import build_model_class
from tests.methods.helpers import B, check_contract, check_fit, make_batch, make_trainer, tiny_cfg, train_loader

SMALL = dict(num_prototypes=4, num_prototype_heads=2)  # few prototypes: a bank of one or two batches clusters


def _clustered(cfg: dict[str, Any] | None = None, cls: type = DeepClusterV2) -> DeepClusterV2:
    """A model whose bank holds ``make_batch()`` and which has clustered it (pseudo-labels for samples 0..7)."""
    model = cls.from_flat(cfg or tiny_cfg(**SMALL))
    model.reset_bank(B)
    model.training_step(make_batch(), 0)
    model.cluster_bank()
    return model


def _scores(model: DeepClusterV2, z: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    return [[head(F.normalize(zv, dim=1)) for zv in z] for head in model.prototype_heads]


# ------------------------------------------------------------------ contract and loss
def test_registered_family_and_contract() -> None:
    assert METHODS["deepclusterv2"] is DeepClusterV2 and DeepClusterV2.family == "knowledge"
    out = check_contract(DeepClusterV2)
    assert len(out["logits"]) == 2 and out["logits"][0].shape == (B, 20)
    assert all(z.requires_grad for z in out["z"])


def test_loss_is_the_loss_function_of_the_step_tensors() -> None:
    model = _clustered(tiny_cfg(num_classes=0, **SMALL))
    batch = make_batch()
    labels = model.pseudo_labels(batch[0])
    assert labels.shape == (2, B) and bool((labels >= 0).all())  # every sample of the bank was clustered
    out = model.training_step(batch, 1)
    expected = deepclusterv2_loss_func(_scores(model, out["z"]), list(labels), temperature=0.1)
    assert torch.allclose(out["loss"], expected, atol=1e-6) and out["loss"] > 0
    for logit, score in zip(out["logits"], _scores(model, out["z"])[0]):
        assert torch.allclose(logit, score)


def test_no_pseudo_labels_before_the_first_clustering() -> None:
    model = DeepClusterV2.from_flat(tiny_cfg(num_classes=0, **SMALL))
    out = model.training_step(make_batch(), 0)
    assert out["loss"].item() == 0.0 and out["loss"].requires_grad  # epoch 0: no SSL term yet


def test_loss_decreases() -> None:
    torch.manual_seed(0)
    model = _clustered(tiny_cfg(num_classes=0, **SMALL))
    opt = torch.optim.SGD([p for g in model.learnable_params for p in g["params"]], lr=0.05, momentum=0.9)
    losses = []
    for step in range(12):
        loss = model.training_step(make_batch(), step)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < losses[0], losses


def test_short_fit_then_bank_is_freed() -> None:
    model = check_fit(DeepClusterV2, num_prototypes=8)
    assert model.bank_index.numel() == 0 and model.bank_z.shape == (2, 0, 16) and model.labels.shape == (3, 0)


def test_prototypes_are_frozen_unit_rows_outside_the_optimizer() -> None:
    model = _clustered()
    assert model.prototypes is model.prototype_heads[0] and model.prototypes.bias is None
    assert all(not p.requires_grad for p in model.prototype_heads.parameters())
    grouped = {id(p) for g in model.learnable_params for p in g["params"]}
    assert not grouped & {id(p) for p in model.prototype_heads.parameters()}
    assert torch.allclose(model.prototypes.weight.norm(dim=1), torch.ones(4))
    model.training_step(make_batch(), 1)["loss"].backward()
    assert all(p.grad is None for p in model.prototype_heads.parameters())
    assert not any(k.startswith("prototypes.") for k in model.state_dict())  # one copy: prototype_heads.0


def test_bad_arguments_are_refused() -> None:
    for bad in (dict(num_prototypes=0), dict(num_prototype_heads=0), dict(kmeans_iters=-1), dict(temperature=0.0)):
        with pytest.raises(ValueError, match="--"):
            DeepClusterV2.check_cfg(ModelConfig(), DeepClusterV2.method_hparams(bad))
        with pytest.raises(ValueError, match="--"):
            DeepClusterV2.from_flat(tiny_cfg(**bad))


# ------------------------------------------------------------------ memory bank
def test_bank_rows_hold_the_batch_indexes_and_normalised_projections() -> None:
    model = DeepClusterV2.from_flat(tiny_cfg(**SMALL))
    model.reset_bank(12)
    idx, views, y = make_batch()
    first = (idx + 40, views, y)
    out = model.training_step(first, 0)
    assert torch.equal(model.bank_index[:8], idx + 40) and bool((model.bank_index[8:] == -1).all())
    for v in range(2):
        assert torch.allclose(model.bank_z[v, :8], F.normalize(out["z"][v].detach(), dim=1))
    assert int(model.bank_ptr) == 8
    # the next batch continues after the last row and wraps around
    out2 = model.training_step((idx + 100, views, y), 1)
    assert torch.equal(model.bank_index, torch.cat([idx[4:] + 100, idx[4:] + 40, idx[:4] + 100]))
    assert torch.allclose(model.bank_z[1, 8:], F.normalize(out2["z"][1].detach()[:4], dim=1))
    assert int(model.bank_ptr) == 4


def test_under_replay_only_the_stream_rows_enter_the_bank() -> None:
    model = DeepClusterV2.from_flat(tiny_cfg(**SMALL))
    model.reset_bank(16)
    model.replay_ctx = {"num_stream": 5, "num_replay": 3, "positions": torch.arange(3)}
    model.training_step(make_batch(), 0)
    assert torch.equal(model.bank_index[:5], torch.arange(5)) and bool((model.bank_index[5:] == -1).all())
    model.replay_ctx = {"num_stream": 0, "num_replay": 8, "positions": torch.arange(8)}  # MinRed: buffer rows only
    model.training_step(make_batch(), 1)
    assert torch.equal(model.bank_index[5:13], torch.arange(8))


def test_pseudo_labels_are_found_by_sample_index() -> None:
    model = DeepClusterV2.from_flat(tiny_cfg(**SMALL))
    model.label_index = torch.tensor([3, 7, 9])
    model.labels = torch.tensor([[0, 1, 2], [3, 2, 1]])
    got = model.pseudo_labels(torch.tensor([9, 4, 3, 12, 0]))
    assert torch.equal(got, torch.tensor([[2, -1, 0, -1, -1], [1, -1, 3, -1, -1]]))


def test_clustering_labels_every_banked_sample_and_restarts_the_bank() -> None:
    model = DeepClusterV2.from_flat(tiny_cfg(**SMALL))
    model.reset_bank(16)
    idx, views, y = make_batch()
    model.training_step((idx * 3, views, y), 0)  # indexes 0, 3, ..., 21: positions in the whole dataset
    bank = model.bank_z.clone()
    before = model.prototypes.weight.clone()
    model.cluster_bank()
    assert torch.equal(model.label_index, idx * 3)
    for h, head in enumerate(model.prototype_heads):  # each head clusters its own view; labels = nearest centroid
        assert torch.equal(model.labels[h], (bank[h % 2, :8] @ head.weight.T).argmax(dim=1))
        assert torch.allclose(head.weight.norm(dim=1), torch.ones(4))
    assert not torch.equal(model.prototypes.weight, before)
    assert bool((model.bank_index == -1).all()) and int(model.bank_ptr) == 0


class _EpochProbe(pl.Callback):
    """Records what the model holds at the end of every epoch and at the first batch of every epoch."""

    def __init__(self) -> None:
        self.end: dict[int, dict[str, torch.Tensor]] = {}
        self.start: dict[int, dict[str, torch.Tensor]] = {}

    @staticmethod
    def _snap(m: DeepClusterV2) -> dict[str, torch.Tensor]:
        state = {name: getattr(m, name).clone() for name in BANK_BUFFERS}
        state["heads"] = torch.stack([h.weight.detach().clone() for h in m.prototype_heads])
        return state

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.start[trainer.current_epoch] = self._snap(pl_module) | {
                "batch_labels": pl_module.pseudo_labels(batch[0])
            }

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.end[trainer.current_epoch] = self._snap(pl_module)


def test_fit_clusters_at_every_epoch_start_after_the_first() -> None:
    torch.manual_seed(0)
    model = DeepClusterV2.from_flat(tiny_cfg(**SMALL))
    probe = _EpochProbe()
    make_trainer(max_epochs=3, callbacks=[probe]).fit(model, train_loader(32))
    first = probe.start[0]
    assert first["bank_index"].numel() == 32 and first["label_index"].numel() == 0  # 4 batches x 8 rows
    assert bool((first["batch_labels"] == -1).all())
    for epoch in (1, 2):
        prev_end, start = probe.end[epoch - 1], probe.start[epoch]
        assert torch.equal(prev_end["bank_index"], torch.arange(32))  # the whole epoch, in loader order
        assert torch.equal(start["label_index"], torch.arange(32))  # every training sample has pseudo-labels
        for h in range(2):  # labels are the nearest new centroid (the prototypes) of last epoch's bank rows
            assert torch.equal(start["labels"][h], (prev_end["bank_z"][h % 2] @ start["heads"][h].T).argmax(1))
        assert not torch.equal(start["heads"], prev_end["heads"])  # prototypes set to the centroids
        assert torch.equal(probe.end[epoch]["heads"], start["heads"])  # ...and not trained during the epoch
        assert bool((start["bank_index"] == -1).all())  # the bank restarts for the new epoch
        assert bool((start["batch_labels"] >= 0).all())


def test_mid_task_state_dict_loads_into_a_fresh_model() -> None:
    torch.manual_seed(0)
    model = _clustered()
    model.training_step(make_batch(seed=1), 1)  # a partly filled bank of the new epoch
    fresh = DeepClusterV2.from_flat(tiny_cfg(**SMALL))
    assert fresh.bank_z.shape != model.bank_z.shape
    fresh.load_state_dict(model.state_dict())  # strict: the bank buffers take the checkpoint's sizes
    for name in BANK_BUFFERS:
        assert torch.equal(getattr(fresh, name), getattr(model, name)), name
    batch = make_batch(seed=2)
    assert torch.equal(fresh.training_step(batch, 2)["loss"], model.training_step(batch, 2)["loss"])


def _fit(epochs: int, ckpt: str | None = None, save: str | None = None) -> dict[int, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = DeepClusterV2.from_flat(tiny_cfg(**SMALL))
    probe = _EpochProbe()
    callbacks = [EpochSeeds(3, 0), probe] + ([EpochCheckpoint(save, 1)] if save else [])
    make_trainer(max_epochs=epochs, callbacks=callbacks).fit(model, train_loader(16), ckpt_path=ckpt, weights_only=True)
    return probe.start


def test_resumed_fit_clusters_the_restored_bank(tmp_path) -> None:
    """A fit resumed from the end-of-epoch checkpoint (what the task loop writes) keeps the restored bank at
    ``on_train_start`` and clusters it exactly as the uninterrupted fit does."""
    straight = _fit(2)
    _fit(1, save=str(tmp_path / "mid.ckpt"))
    resumed = _fit(2, ckpt=str(tmp_path / "mid.ckpt"))
    assert resumed[1]["label_index"].numel() == 16
    for key in ("label_index", "labels", "heads"):
        assert torch.equal(resumed[1][key], straight[1][key]), key


# ------------------------------------------------------------------ CaSSLe
def test_cassle_knowledge_distillation_on_the_first_head() -> None:
    torch.manual_seed(0)
    cls = build_model_class("deepclusterv2", "cassle")
    model = _clustered(tiny_cfg(method="deepclusterv2", distill_proj_hidden_dim=16, **SMALL), cls)
    model.log = lambda *a, **k: None  # CaSSLe logs its term directly; no trainer here
    model.on_task_start(0)
    model.on_task_start(1)
    assert model.distiller == "knowledge" and model.distilling
    assert torch.equal(model.frozen_prototypes.weight, model.prototypes.weight)  # the past task's centroids
    assert model.distill_prototypes.weight.shape == (4, 16)
    model.eval()  # deterministic BatchNorm for the reference computation
    batch = make_batch(seed=3)
    out = model.training_step(batch, 0)
    assert torch.isfinite(out["distill_loss"])
    frozen = [model.frozen_forward(v) for v in batch[1]]
    expected = (
        sum(
            knowledge_distill(
                model.distill_prototypes(F.normalize(model.distill_predictor(F.normalize(z, dim=1)), dim=1)),
                model.frozen_prototypes(F.normalize(fz, dim=1)),
                temperature=0.1,
            )
            for z, fz in zip(out["z"], frozen)
        )
        / 2
    )
    assert torch.allclose(out["distill_loss"], expected, atol=1e-6)
    out["loss"].backward()
    for module in (model.distill_predictor, model.distill_prototypes, model.backbone):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    for module in (model.frozen_backbone, model.frozen_prototypes, model.prototype_heads):
        assert all(p.grad is None for p in module.parameters())


def test_bank_buffers_are_kept_out_of_ddp_broadcast() -> None:
    model = DeepClusterV2.from_flat(tiny_cfg(**SMALL))
    names = dict(model.named_buffers())
    assert set(model._ddp_params_and_buffers_to_ignore) == set(BANK_BUFFERS) <= set(names)


# ------------------------------------------------------------------ distributed
def _ddp_fit(rank: int, world: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = DeepClusterV2.from_flat(tiny_cfg(**SMALL))
    probe = _EpochProbe()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=world,
        strategy="ddp",
        max_epochs=2,
        logger=False,
        callbacks=[probe],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, DataLoader(train_loader(32).dataset, batch_size=B, shuffle=False))
    return {"end0": probe.end[0], "start1": probe.start[1]}


def test_ddp_ranks_keep_their_shards_and_share_the_labels() -> None:
    spawn = pytest.importorskip("tests.distributed.spawn")
    r0, r1 = spawn.run_ranks(_ddp_fit)
    # each rank's bank holds its own half of the epoch (not rank 0's, broadcast)
    shard0, shard1 = r0["end0"]["bank_index"], r1["end0"]["bank_index"]
    assert shard0.numel() == shard1.numel() == 16
    assert sorted(torch.cat([shard0, shard1]).tolist()) == list(range(32))
    # after the all-reduced k-means: the same pseudo-labels for every sample and the same prototypes everywhere
    for key in ("label_index", "labels", "heads"):
        assert torch.equal(r0["start1"][key], r1["start1"][key]), key
    assert torch.equal(r0["start1"]["label_index"], torch.arange(32))
