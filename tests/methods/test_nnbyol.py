"""NNBYOL: BYOL against support-set neighbours of the EMA target's projections: loss on the step's own tensors,
lookup, FIFO filling with the normalised target projections, no gradient into target or neighbour, EMA, CaSSLe."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cassle.losses.byol import byol_loss_func
from cassle.losses.distill import DISTILL_LOSSES
from cassle.methods.byol import BYOL
from cassle.methods.nnbyol import NNBYOL
from cassle.strategies import build_model_class
from tests.methods.helpers import (
    B,
    brute_force_nearest,
    check_contract,
    check_fit,
    check_loss_decreases,
    check_neighbour_prediction_gradient,
    make_batch,
    tiny_cfg,
)


def test_contract_and_defaults() -> None:
    out = check_contract(NNBYOL)
    assert [p.shape for p in out["p"]] == [(B, 16), (B, 16)]
    assert not any(t.requires_grad for t in out["nn"] + out["momentum_z"])
    assert issubclass(NNBYOL, BYOL) and (NNBYOL.family, NNBYOL.normalized_projection) == ("predictive", False)
    assert (NNBYOL.default_proj_hidden_dim, NNBYOL.default_output_dim) == (4096, 256)
    assert {k: v[1] for k, v in NNBYOL.all_method_args().items()} == {
        "pred_hidden_dim": 4096,
        "base_tau_momentum": 0.99,
        "final_tau_momentum": 1.0,
        "queue_size": 65536,
    }
    model = NNBYOL.from_flat(tiny_cfg())
    assert len(model.momentum_pairs) == 2 and model.queue.rows().shape == (64, 16)
    with pytest.raises(ValueError, match="queue_size >= 1"):
        NNBYOL.from_flat(tiny_cfg(queue_size=0))


def test_loss_is_byol_against_neighbours_of_the_other_views_target() -> None:
    model = NNBYOL.from_flat(tiny_cfg(num_classes=0))
    support = model.queue.rows().clone()
    out = model.training_step(make_batch(), 0)
    m1, m2 = out["momentum_z"]
    nn1, nn2 = out["nn"]
    assert torch.equal(nn1, support[brute_force_nearest(m1, support)])
    assert torch.equal(nn2, support[brute_force_nearest(m2, support)])
    p1, p2 = out["p"]
    ref = byol_loss_func(p1, nn2) + byol_loss_func(p2, nn1)
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-6)
    # the plain BYOL loss would be different: the neighbours, not the targets, are regressed
    assert out["loss"].item() != pytest.approx((byol_loss_func(p1, m2) + byol_loss_func(p2, m1)).item(), rel=1e-3)


def _paper_loss(p1: np.ndarray, p2: np.ndarray, nn1: np.ndarray, nn2: np.ndarray) -> float:
    """BYOL's Eq. 2 symmetrised (``L + L~``), per sample ``||q/||q|| - y/||y||||^2`` averaged over the batch, with
    NNBYOL's targets: the other view's neighbours. Loops over rows and features."""

    def term(q: np.ndarray, y: np.ndarray) -> float:
        total = 0.0
        for qi, yi in zip(q, y):
            nq, ny = math.sqrt(sum(v * v for v in qi)), math.sqrt(sum(v * v for v in yi))
            total += sum((a / nq - b / ny) ** 2 for a, b in zip(qi, yi))
        return total / len(q)

    return term(p1, nn2) + term(p2, nn1)


def test_gradient_matches_finite_differences_of_the_papers_formula() -> None:
    """float64: the gradient of the step's loss w.r.t. the predictions (the loss's only differentiable input)
    equals the central differences of the loop formula; the neighbours and targets are constants."""
    out = check_neighbour_prediction_gradient(NNBYOL, _paper_loss)
    assert not any(t.requires_grad for t in out["momentum_z"])


def test_support_set_is_filled_fifo_with_normalised_target_projections_of_view1() -> None:
    model = NNBYOL.from_flat(tiny_cfg(queue_size=12))
    batches = [make_batch(seed=s) for s in range(2)]
    keys = []
    for step, batch in enumerate(batches):
        out = model.training_step(batch, step)
        keys.append(F.normalize(out["momentum_z"][0], dim=1))
    rows = model.queue.rows()
    # 8 rows, then 8 more into 12 slots: rows 8-11 and 0-3 hold the second batch
    assert torch.allclose(rows[8:], keys[1][:4]) and torch.allclose(rows[:4], keys[1][4:])
    assert torch.allclose(rows[4:8], keys[0][4:])
    assert torch.allclose(rows.norm(dim=1), torch.ones(12))
    assert model.queue.row_labels()[4:8].tolist() == batches[0][2][4:].tolist()
    assert int(model.queue.ptr) == 4


def test_no_gradient_reaches_the_target_network_or_the_neighbours() -> None:
    model = NNBYOL.from_flat(tiny_cfg(num_classes=0))
    out = model.training_step(make_batch(), 0)
    out["loss"].backward()
    for _, target in model.momentum_pairs:
        assert all(p.grad is None and not p.requires_grad for p in target.parameters())
    assert model.queue.queue.grad is None
    assert all(p.grad is not None for p in model.predictor.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


def test_ema_moves_the_target_after_an_update() -> None:
    model = NNBYOL.from_flat(tiny_cfg())
    before = [p.clone() for p in model.momentum_projector.parameters()]
    with torch.no_grad():
        for p in model.projector.parameters():
            p.add_(1.0)
    assert model.update_momentum(0, 10) == pytest.approx(0.99)
    for b, o, t in zip(before, model.projector.parameters(), model.momentum_projector.parameters()):
        assert torch.allclose(t, 0.99 * b + 0.01 * o)


def test_loss_decreases() -> None:
    check_loss_decreases(NNBYOL, steps=10)


def test_fit() -> None:
    model = check_fit(NNBYOL)
    metrics = model.trainer.callback_metrics
    assert "tau" in metrics and 0.0 <= float(metrics["train_nn_acc"]) <= 100.0
    assert int(model.queue.ptr) == 4 * B


def test_cassle_predictive_distillation() -> None:
    torch.manual_seed(0)
    cls = build_model_class("nnbyol", "cassle")
    model = cls.from_flat(tiny_cfg(method="nnbyol", distill_proj_hidden_dim=16))
    assert model.distiller == "predictive"
    model.on_task_start(1)
    model.eval()
    batch = make_batch()
    out = model.training_step(batch, 0)
    frozen = [model.frozen_forward(v) for v in batch[1]]
    expected = sum(DISTILL_LOSSES["predictive"](model.distill_predictor(z), f) for z, f in zip(out["z"], frozen)) / 2
    assert out["distill_loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    out["loss"].backward()
    assert all(p.grad is None for p in model.frozen_backbone.parameters())
    assert any(p.grad is not None for p in model.distill_predictor.parameters())
