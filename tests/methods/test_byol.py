"""BYOL: contract, learning, and the EMA target network."""

from __future__ import annotations

import pytest
import torch

from cassle.methods import BYOL
from cassle.methods.momentum import cosine_tau, ema_update
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


def test_contract() -> None:
    out = check_contract(BYOL)
    assert [p.shape for p in out["p"]] == [(B, 16), (B, 16)]
    assert [z.shape for z in out["momentum_z"]] == [(B, 16), (B, 16)]
    assert not any(z.requires_grad for z in out["momentum_z"] + out["momentum_feats"])


def test_loss_value_is_symmetric_byol_against_momentum_projections() -> None:
    from cassle.losses import byol_loss_func

    model = BYOL.from_flat(tiny_cfg(num_classes=0))
    out = model.training_step(make_batch(), 0)
    p1, p2 = out["p"]
    m1, m2 = out["momentum_z"]
    ref = byol_loss_func(p1, m2) + byol_loss_func(p2, m1)
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-5)


def test_loss_decreases() -> None:
    check_loss_decreases(BYOL)


def test_momentum_networks_get_no_gradients() -> None:
    model = BYOL.from_flat(tiny_cfg())
    model.training_step(make_batch(), 0)["loss"].backward()
    for online, target in model.momentum_pairs:
        assert all(p.grad is None and not p.requires_grad for p in target.parameters())
    assert any(p.grad is not None for p in model.backbone.parameters())


def test_ema_formula_and_shape_check() -> None:
    model = BYOL.from_flat(tiny_cfg())
    before = [p.clone() for p in model.momentum_projector.parameters()]
    with torch.no_grad():
        for p in model.projector.parameters():
            p.add_(1.0)
    tau = model.update_momentum(0, 10)
    assert tau == pytest.approx(0.99)
    for b, o, t in zip(before, model.projector.parameters(), model.momentum_projector.parameters()):
        assert torch.allclose(t, 0.99 * b + 0.01 * o)
    with pytest.raises(ValueError):
        ema_update(model.projector, model.predictor[:1], 0.5)


def test_tau_schedule_endpoints() -> None:
    assert cosine_tau(0, 100, 0.99, 1.0) == pytest.approx(0.99)
    assert cosine_tau(50, 100, 0.99, 1.0) == pytest.approx(0.995)
    assert cosine_tau(100, 100, 0.99, 1.0) == pytest.approx(1.0)


def test_fit_moves_target_by_ema_once_per_optimizer_step() -> None:
    model = BYOL.from_flat(tiny_cfg())
    start = [p.clone() for p in model.momentum_backbone.parameters()]
    calls = []
    original = model.update_momentum
    model.update_momentum = lambda step, k: calls.append((step, k)) or original(step, k)
    trainer = make_trainer(max_epochs=1, accumulate_grad_batches=2)
    trainer.fit(model, train_loader(32))  # 4 batches -> 2 optimizer steps
    assert calls == [(0, 2), (1, 2)]
    assert model.current_tau == pytest.approx(cosine_tau(1, 2, 0.99, 1.0))
    moved = [p for p, s in zip(model.momentum_backbone.parameters(), start) if not torch.equal(p, s)]
    assert moved
    assert "tau" in trainer.callback_metrics


def test_fit() -> None:
    check_fit(BYOL)
