"""DINO: contract, loss on the step's tensors, centre EMA, teacher temperature, frozen last layer, EMA teacher,
checkpointed centre and CaSSLe's knowledge distillation through DINO's own prototypes."""

from __future__ import annotations

import io

import lightning.pytorch as pl
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cassle.losses.dino import dino_loss_func
from cassle.losses.distill import knowledge_distill
from cassle.methods import DINO
from cassle.strategies import build_model_class
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

K = 20  # tiny_cfg's num_prototypes


def test_contract_and_head_layout() -> None:
    out = check_contract(DINO, num_classes=0)
    model = DINO.from_flat(tiny_cfg())
    assert [lg.shape for lg in out["logits"]] == [(B, K), (B, K)]
    assert [lg.shape for lg in out["momentum_logits"]] == [(B, K), (B, K)]
    assert all(z.requires_grad for z in out["z"]) and not any(m.requires_grad for m in out["momentum_logits"])
    # GELU MLP to the bottleneck, then a weight-normalised last layer with unit magnitude (norm_last_layer)
    assert any(isinstance(m, nn.GELU) for m in model.projector) and not any(
        isinstance(m, nn.ReLU) for m in model.projector
    )
    assert model.prototypes.weight.shape == (K, 16)
    g = model.prototypes.parametrizations.weight.original0
    assert not g.requires_grad and torch.equal(g, torch.ones(K, 1))
    assert torch.allclose(model.prototypes.weight.norm(dim=1), torch.ones(K), atol=1e-6)
    assert model.center.shape == (1, K) and not model.center.any()


def test_loss_value_is_the_loss_function_on_the_steps_tensors() -> None:
    torch.manual_seed(0)
    model = DINO.from_flat(tiny_cfg(num_classes=0))
    model.training_step(make_batch(seed=1), 0)  # a non-zero centre
    center = model.center.clone()
    out = model.training_step(make_batch(), 1)
    for z, mz, lg, mlg in zip(out["z"], out["momentum_z"], out["logits"], out["momentum_logits"]):
        assert torch.allclose(lg, model.prototypes(F.normalize(z, dim=-1)))
        assert torch.allclose(mlg, model.momentum_prototypes(F.normalize(mz, dim=-1)))
    ref = dino_loss_func(out["logits"], out["momentum_logits"], center, 0.1, 0.04)  # epoch 0: warm-up 0.04
    assert center.abs().sum() > 0
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-6)


def test_centre_update_equals_the_formula() -> None:
    torch.manual_seed(0)
    model = DINO.from_flat(tiny_cfg(center_momentum=0.8))
    expected = torch.zeros(1, K)
    for step in range(3):
        out = model.training_step(make_batch(seed=step), step)
        batch_mean = torch.cat(out["momentum_logits"]).mean(dim=0, keepdim=True)
        expected = 0.8 * expected + 0.2 * batch_mean
        assert torch.allclose(model.center, expected, atol=1e-6)
    # the centre is a buffer: in the state dict, restored by a weights_only load
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    other = DINO.from_flat(tiny_cfg())
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(other.center, model.center)


def test_teacher_temperature_schedule_endpoints_in_a_fit() -> None:
    model = DINO.from_flat(tiny_cfg(warmup_teacher_temperature_epochs=3, max_epochs=4))
    seen: list[float] = []

    class Rec(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            seen.append(pl_module.teacher_temperature_now())

    make_trainer(max_epochs=4, limit_train_batches=1, callbacks=[Rec()]).fit(model, train_loader(8))
    assert seen == pytest.approx([0.04, 0.055, 0.07, 0.07])
    assert DINO.from_flat(tiny_cfg()).teacher_temperature_now() == pytest.approx(0.04)  # no trainer: epoch 0


def test_last_layer_frozen_during_the_first_epoch() -> None:
    model = DINO.from_flat(tiny_cfg(freeze_last_layer=1))
    snapshots = []

    class Snap(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            snapshots.append(pl_module.prototypes.weight.detach().clone())

    start = model.prototypes.weight.detach().clone()
    backbone_start = next(model.backbone.parameters()).detach().clone()
    make_trainer(max_epochs=2, limit_train_batches=2, callbacks=[Snap()]).fit(model, train_loader())
    assert torch.equal(snapshots[0], start)  # epoch 0: no gradient, no weight decay
    assert (snapshots[1] - start).abs().max() > 1e-5  # epoch 1: learning
    assert not torch.equal(next(model.backbone.parameters()), backbone_start)
    g = model.prototypes.parametrizations.weight.original0
    assert torch.equal(g, torch.ones(K, 1))  # the magnitude never learns


def test_teacher_is_an_ema_of_the_student_without_gradients() -> None:
    torch.manual_seed(0)
    model = DINO.from_flat(tiny_cfg(num_classes=0))
    pairs = model.momentum_pairs
    assert (model.prototypes, model.momentum_prototypes) in pairs
    assert torch.equal(model.momentum_prototypes.weight, model.prototypes.weight)  # starts as a copy
    out = model.training_step(make_batch(), 0)
    out["loss"].backward()
    for _, target in pairs:
        assert all(p.grad is None and not p.requires_grad for p in target.parameters())
    with torch.no_grad():
        for p in model.prototypes.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))
    online = [p.detach().clone() for p in model.prototypes.parameters()]
    before = [p.detach().clone() for p in model.momentum_prototypes.parameters()]
    tau = model.update_momentum(0, 10)
    assert tau == pytest.approx(0.9995)
    for o, b, a in zip(online, before, model.momentum_prototypes.parameters()):
        assert torch.allclose(a, tau * b + (1 - tau) * o)


def test_backbone_gradient_clipping() -> None:
    torch.manual_seed(0)
    model = DINO.from_flat(tiny_cfg(clip_grad=1e-3))
    model.training_step(make_batch(), 0)["loss"].backward()
    norms = [p.grad.norm().item() for p in model.backbone.parameters() if p.grad is not None]
    assert max(norms) > 1e-3  # something to clip
    model.on_after_backward()
    assert all(p.grad.norm().item() <= 1e-3 * (1 + 1e-4) for p in model.backbone.parameters() if p.grad is not None)
    assert all(p.grad is None for p in model.prototypes.parameters())  # epoch 0 < freeze_last_layer


def test_loss_decreases() -> None:
    check_loss_decreases(DINO, steps=8, freeze_last_layer=0)


def test_fit() -> None:
    check_fit(DINO)


def test_cassle_knowledge_distillation_through_dinos_prototypes() -> None:
    torch.manual_seed(0)
    cls = build_model_class("dino", "cassle")
    model = cls.from_flat(tiny_cfg(method="dino", distill_proj_hidden_dim=16))
    model.log = lambda *a, **k: None  # outside a Trainer
    assert model.distiller == "knowledge" and model.distill_temperature == 0.1
    assert model.distill_prototypes.weight.shape == (K, 16)
    model.on_task_start(1)
    assert model.distilling and model.frozen_prototypes is not None
    batch = make_batch()
    out = model.training_step(batch, 0)
    assert "distill_loss" in out and torch.isfinite(out["distill_loss"])
    # the teacher's targets are DINO's own head on the frozen network: at the first step they equal the logits
    for lg, v in zip(out["logits"], batch[1]):
        frozen_logits = model.frozen_prototypes(F.normalize(model.frozen_forward(v), dim=-1))
        assert torch.allclose(lg.detach(), frozen_logits, atol=1e-5)
    expected = (
        sum(
            knowledge_distill(
                model.distill_prototypes(F.normalize(model.distill_predictor(z), dim=-1)),
                model.frozen_prototypes(F.normalize(model.frozen_forward(v), dim=-1)),
                temperature=0.1,
            )
            for z, v in zip(out["z"], batch[1])
        )
        / 2
    )
    assert torch.allclose(out["distill_loss"], expected, atol=1e-6)
    out["loss"].backward()
    assert all(p.grad is None for p in model.frozen_backbone.parameters())
    assert all(p.grad is None for p in model.frozen_prototypes.parameters())
    for module in (model.backbone, model.distill_predictor, model.distill_prototypes):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
