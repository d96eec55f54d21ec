"""NNSiam: SimSiam against support-set neighbours: loss on the step's own tensors, lookup, FIFO filling with the
normalised projections, the lookup as the stop-gradient, constant-lr predictor, CaSSLe."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cassle.losses.distill import DISTILL_LOSSES
from cassle.losses.simsiam import simsiam_loss_func
from cassle.methods.nnsiam import NNSiam
from cassle.methods.simsiam import SimSiam
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
    out = check_contract(NNSiam)
    assert [p.shape for p in out["p"]] == [(B, 16), (B, 16)]
    assert all(torch.allclose(z.norm(dim=1), torch.ones(B)) for z in out["z"])
    assert not any(n.requires_grad for n in out["nn"])
    assert issubclass(NNSiam, SimSiam) and (NNSiam.family, NNSiam.normalized_projection) == ("predictive", True)
    assert (NNSiam.default_proj_hidden_dim, NNSiam.default_output_dim) == (2048, 2048)
    assert {k: v[1] for k, v in NNSiam.all_method_args().items()} == {"pred_hidden_dim": 4096, "queue_size": 65536}
    model = NNSiam.from_flat(tiny_cfg(pred_hidden_dim=24))
    assert model.predictor[0].out_features == 24 and model.momentum_pairs == []
    groups = {g["name"]: g for g in model.learnable_params}
    assert groups["predictor"].get("static_lr") is True
    with pytest.raises(ValueError, match="queue_size >= 1"):
        NNSiam.from_flat(tiny_cfg(queue_size=0))


def test_loss_is_simsiam_against_neighbours_of_the_other_view() -> None:
    model = NNSiam.from_flat(tiny_cfg(num_classes=0))
    support = model.queue.rows().clone()
    out = model.training_step(make_batch(), 0)
    z1, z2 = (z.detach() for z in out["z"])
    nn1, nn2 = out["nn"]
    assert torch.equal(nn1, support[brute_force_nearest(z1, support)])
    assert torch.equal(nn2, support[brute_force_nearest(z2, support)])
    p1, p2 = out["p"]
    ref = simsiam_loss_func(p1, nn2) / 2 + simsiam_loss_func(p2, nn1) / 2
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-6)


def _paper_loss(p1: np.ndarray, p2: np.ndarray, nn1: np.ndarray, nn2: np.ndarray) -> float:
    """SimSiam's ``L = 1/2 D(p1, z2) + 1/2 D(p2, z1)``, ``D(p, z) = -p/||p|| . z/||z||`` averaged over the batch,
    with NNSiam's ``z``: the other view's neighbours. Loops over rows and features."""

    def d(p: np.ndarray, z: np.ndarray) -> float:
        total = 0.0
        for pi, zi in zip(p, z):
            np_, nz = math.sqrt(sum(v * v for v in pi)), math.sqrt(sum(v * v for v in zi))
            total += -sum(a * b for a, b in zip(pi, zi)) / (np_ * nz)
        return total / len(p)

    return d(p1, nn2) / 2 + d(p2, nn1) / 2


def test_gradient_matches_finite_differences_of_the_papers_formula() -> None:
    """float64: the gradient of the step's loss w.r.t. the predictions (the loss's only differentiable input)
    equals the central differences of the loop formula; the neighbours are constants (the stop-gradient)."""
    check_neighbour_prediction_gradient(NNSiam, _paper_loss)


def test_support_set_is_filled_fifo_with_normalised_view1_projections() -> None:
    model = NNSiam.from_flat(tiny_cfg(queue_size=12))
    batches = [make_batch(seed=s) for s in range(2)]
    written = []
    for step, batch in enumerate(batches):
        written.append(F.normalize(model.training_step(batch, step)["z"][0].detach(), dim=1))
    rows = model.queue.rows()
    assert torch.allclose(rows[8:], written[1][:4]) and torch.allclose(rows[:4], written[1][4:])
    assert torch.allclose(rows[4:8], written[0][4:])
    assert model.queue.row_labels()[:4].tolist() == batches[1][2][4:].tolist()
    assert int(model.queue.ptr) == 4


def test_the_lookup_is_the_stop_gradient() -> None:
    model = NNSiam.from_flat(tiny_cfg(num_classes=0))
    out = model.training_step(make_batch(), 0)
    # the normalised projections reach the loss only through the (non-differentiable) neighbour lookup
    assert torch.autograd.grad(out["loss"], out["z"], retain_graph=True, allow_unused=True) == (None, None)
    out["loss"].backward()
    assert model.queue.queue.grad is None
    assert all(p.grad is not None for p in model.predictor.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.projector.parameters())


def test_loss_decreases() -> None:
    check_loss_decreases(NNSiam, steps=10)


def test_fit() -> None:
    model = check_fit(NNSiam)
    assert 0.0 <= float(model.trainer.callback_metrics["train_nn_acc"]) <= 100.0


def test_cassle_predictive_distillation_on_the_normalised_projection() -> None:
    torch.manual_seed(0)
    cls = build_model_class("nnsiam", "cassle")
    model = cls.from_flat(tiny_cfg(method="nnsiam", distill_proj_hidden_dim=16))
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
