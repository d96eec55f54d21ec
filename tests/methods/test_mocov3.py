"""MoCo v3: contract, loss on the step's own tensors, heads, the multi-process form, EMA, CaSSLe."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from cassle.losses.distill import contrastive_distill
from cassle.losses.mocov3 import mocov3_loss_func
from cassle.methods import MoCoV3
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


def test_contract_and_defaults() -> None:
    out = check_contract(MoCoV3)
    assert [p.shape for p in out["p"]] == [(B, 16), (B, 16)]
    assert all(z.requires_grad for z in out["z"])
    assert not any(k.requires_grad for k in out["momentum_z"])
    hp = MoCoV3.method_hparams({})  # published defaults (solo-learn's cifar/mocov3.yaml)
    assert (MoCoV3.default_proj_hidden_dim, MoCoV3.default_output_dim, hp.pred_hidden_dim) == (4096, 256, 4096)
    assert (hp.temperature, hp.base_tau_momentum, hp.final_tau_momentum) == (0.2, 0.99, 1.0)
    assert MoCoV3.family == "contrastive" and not MoCoV3.normalized_projection
    with pytest.raises(ValueError, match="temperature"):
        MoCoV3.from_flat(tiny_cfg(temperature=0.0))


def test_loss_is_summed_contrast_of_predictions_with_other_views_keys() -> None:
    model = MoCoV3.from_flat(tiny_cfg(num_classes=0, temperature=0.3))
    out = model.training_step(make_batch(), 0)
    (p1, p2), (k1, k2) = out["p"], out["momentum_z"]
    ref = mocov3_loss_func(p1, k2, 0.3) + mocov3_loss_func(p2, k1, 0.3)
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-6)
    # the predictions are the predictor applied to the returned projections
    assert torch.allclose(out["p"][0], model.predictor(out["z"][0]), atol=1e-6)


def _linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def test_resnet_heads_follow_the_reference() -> None:
    model = MoCoV3.from_flat(tiny_cfg())
    proj, pred = model.projector, model.predictor
    assert len(_linears(proj)) == 2 and len(_linears(pred)) == 2
    assert all(lin.bias is None for lin in _linears(proj) + _linears(pred))
    assert isinstance(proj[-1], nn.BatchNorm1d) and not proj[-1].affine  # SimCLR-style output BN
    assert isinstance(pred[-1], nn.Linear)  # ResNet predictor: no output BN
    assert model.momentum_projector is not proj and len(_linears(model.momentum_projector)) == 2


def test_vit_heads_have_the_papers_three_layer_projector() -> None:
    model = MoCoV3.from_flat(tiny_cfg(encoder="vit_tiny", base_width=16))
    assert len(_linears(model.projector)) == 3
    assert isinstance(model.predictor[-1], nn.BatchNorm1d) and not model.predictor[-1].affine


class _SecondOfTwoRanks(MoCoV3):
    """Pretends to be rank 1 of 2: ``gather`` prepends the keys of a fake rank 0."""

    other = torch.randn(B, 16, generator=torch.Generator().manual_seed(3))

    @property
    def global_rank(self) -> int:
        return 1

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        assert not x.requires_grad  # keys are gathered without gradients
        return torch.cat([self.other, x])


def test_keys_of_every_process_are_negatives_and_the_label_is_offset_by_rank() -> None:
    torch.manual_seed(0)
    model = _SecondOfTwoRanks.from_flat(tiny_cfg(num_classes=0))
    out = model.training_step(make_batch(), 0)
    (p1, p2), (k1, k2) = out["p"], out["momentum_z"]
    other = _SecondOfTwoRanks.other
    ref = mocov3_loss_func(p1, torch.cat([other, k2]), rank=1) + mocov3_loss_func(p2, torch.cat([other, k1]), rank=1)
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-6)
    single = mocov3_loss_func(p1, k2) + mocov3_loss_func(p2, k1)
    assert out["loss"].item() > single.item()  # more negatives in the denominator


def test_momentum_networks_get_no_gradients_and_predictor_is_not_averaged() -> None:
    model = MoCoV3.from_flat(tiny_cfg())
    model.training_step(make_batch(), 0)["loss"].backward()
    for _, target in model.momentum_pairs:
        assert all(p.grad is None and not p.requires_grad for p in target.parameters())
    assert all(p.grad is not None for p in model.predictor.parameters())
    assert all(model.predictor is not online for online, _ in model.momentum_pairs)
    assert "predictor" in [g["name"] for g in model.learnable_params]


def test_fit_moves_the_key_encoder_by_ema() -> None:
    model = MoCoV3.from_flat(tiny_cfg(warmup_epochs=0))
    start = [p.clone() for p in model.momentum_projector.parameters()]
    trainer = make_trainer(max_epochs=1, limit_train_batches=2)
    trainer.fit(model, train_loader(16))
    moved = [p for p, s in zip(model.momentum_projector.parameters(), start) if not torch.equal(p, s)]
    assert moved and "tau" in trainer.callback_metrics


def test_loss_decreases() -> None:
    check_loss_decreases(MoCoV3, steps=10)


def test_fit() -> None:
    check_fit(MoCoV3)


def test_cassle_contrastive_distillation() -> None:
    torch.manual_seed(0)
    cls = build_model_class("mocov3", "cassle")
    model = cls.from_flat(tiny_cfg(method="mocov3", distill_proj_hidden_dim=16))
    model.log = lambda *a, **k: None  # outside a Trainer
    assert model.distiller == "contrastive" and model.distill_lamb == 1.0
    model.on_task_start(1)
    model.eval()  # deterministic BN for both passes
    batch = make_batch()
    out = model.training_step(batch, 0)
    frozen = [model.frozen_forward(v) for v in batch[1]]
    preds = [model.distill_predictor(z) for z in out["z"]]  # z is not normalised for MoCo v3
    expected = contrastive_distill(torch.cat(preds), torch.cat(frozen), temperature=0.2)
    assert torch.allclose(out["distill_loss"], expected, atol=1e-6)
    out["loss"].backward()
    assert all(p.grad is None for p in model.frozen_backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.distill_predictor.parameters())
