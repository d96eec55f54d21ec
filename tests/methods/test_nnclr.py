"""NNCLR: contract, loss on the step's own tensors, support-set lookup and FIFO filling, no gradient through
the neighbour, the multi-process form, checkpoints and CaSSLe's contrastive distillation."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cassle.losses.distill import DISTILL_LOSSES
from cassle.losses.nnclr import nnclr_loss_func
from cassle.methods.nnclr import NNCLR
from cassle.strategies import build_model_class
from tests.methods.helpers import (
    B,
    brute_force_nearest,
    check_contract,
    check_fit,
    check_loss_decreases,
    make_batch,
    tiny_cfg,
)


def test_contract_defaults_and_heads() -> None:
    out = check_contract(NNCLR)
    assert [p.shape for p in out["p"]] == [(B, 16), (B, 16)]
    assert all(torch.allclose(z.norm(dim=1), torch.ones(B)) for z in out["z"])  # z is the unit-norm projection
    assert all(z.requires_grad for z in out["z"]) and not any(n.requires_grad for n in out["nn"])
    assert (NNCLR.family, NNCLR.normalized_projection) == ("contrastive", True)
    assert (NNCLR.default_proj_hidden_dim, NNCLR.default_output_dim) == (2048, 256)
    assert {k: v[1] for k, v in NNCLR.all_method_args().items()} == {
        "temperature": 0.2,
        "queue_size": 65536,
        "pred_hidden_dim": 4096,
    }
    model = NNCLR.from_flat(tiny_cfg())
    assert isinstance(model.projector[-1], nn.BatchNorm1d) and model.projector[-1].affine  # ...-Linear-BN
    assert sum(isinstance(m, nn.Linear) for m in model.projector) == 3
    assert model.queue.rows().shape == (64, 16) and model.momentum_pairs == []
    with pytest.raises(ValueError, match="queue_size >= 1"):
        NNCLR.from_flat(tiny_cfg(queue_size=0))


def test_loss_is_the_symmetric_nnclr_loss_of_the_neighbours_found_before_the_push() -> None:
    model = NNCLR.from_flat(tiny_cfg(num_classes=0, temperature=0.3))
    support = model.queue.rows().clone()
    out = model.training_step(make_batch(), 0)
    z1, z2 = (z.detach() for z in out["z"])
    nn1, nn2 = out["nn"]
    assert torch.equal(nn1, support[brute_force_nearest(z1, support)])
    assert torch.equal(nn2, support[brute_force_nearest(z2, support)])
    p1, p2 = out["p"]
    ref = (nnclr_loss_func(nn1, p2, 0.3) + nnclr_loss_func(nn2, p1, 0.3)) / 2
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-6)


def test_support_set_is_filled_fifo_with_normalised_view1_projections_and_labels() -> None:
    model = NNCLR.from_flat(tiny_cfg(queue_size=20))
    random_start = model.queue.rows().clone()
    written = []
    for step in range(3):  # 8 + 8 + 8 rows into 20: the third step wraps around
        batch = make_batch(seed=step)
        out = model.training_step(batch, step)
        written.append((F.normalize(out["z"][0].detach(), dim=1), batch[2]))
        assert torch.allclose(written[-1][0], out["z"][0].detach())  # z[0] is already normalised
    rows, labels = model.queue.rows(), model.queue.row_labels()
    (a, ya), (b, yb), (c, yc) = written
    # rows 0-7 got a, 8-15 b; c filled 16-19 and then overwrote the oldest, 0-3
    assert torch.allclose(rows[:4], c[4:]) and torch.allclose(rows[4:8], a[4:]) and torch.allclose(rows[8:16], b)
    assert torch.allclose(rows[16:], c[:4])
    assert labels.tolist() == yc[4:].tolist() + ya[4:].tolist() + yb.tolist() + yc[:4].tolist()
    assert int(model.queue.ptr) == 4
    assert not torch.equal(rows, random_start)


def test_no_gradient_flows_through_the_neighbour() -> None:
    model = NNCLR.from_flat(tiny_cfg(num_classes=0))
    out = model.training_step(make_batch(), 0)
    # the unit-norm projections reach the loss only through the (non-differentiable) lookup
    grads = torch.autograd.grad(out["loss"], out["z"], retain_graph=True, allow_unused=True)
    assert grads == (None, None)
    out["loss"].backward()
    assert model.queue.queue.grad is None and not model.queue.queue.requires_grad
    assert all(p.grad is not None for p in model.predictor.parameters())  # through the predictions
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


class _SecondOfTwoProcesses(NNCLR):
    """Rank 1 of a simulated 2-process run: ``gather`` puts a stand-in for rank 0's rows first."""

    @property
    def global_rank(self) -> int:
        return 1

    def world_size(self) -> int:
        return 2

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.roll(1, dims=0), x])


def test_multi_process_form_contrasts_against_the_gathered_batch_and_pushes_every_rank() -> None:
    model = _SecondOfTwoProcesses.from_flat(tiny_cfg(num_classes=0, queue_size=40))
    batch = make_batch()
    out = model.training_step(batch, 0)
    nn1, nn2 = out["nn"]
    p1, p2 = out["p"]
    gathered = [torch.cat([p.roll(1, dims=0), p]) for p in (p1, p2)]
    ref = (nnclr_loss_func(nn1, gathered[1], 0.2, offset=B) + nnclr_loss_func(nn2, gathered[0], 0.2, offset=B)) / 2
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-6)
    # 2 x 8 rows from both "processes", this one's at positions 8..15
    z1 = out["z"][0].detach()
    assert int(model.queue.ptr) == 2 * B
    assert torch.allclose(model.queue.rows()[B : 2 * B], z1) and torch.allclose(model.queue.rows()[:B], z1.roll(1, 0))
    assert model.queue.row_labels()[B : 2 * B].tolist() == batch[2].tolist()
    # the prediction gradient also reaches this process's rows through the other rank's copy
    out["loss"].backward()
    assert all(p.grad is not None for p in model.predictor.parameters())


def test_support_set_survives_a_weights_only_checkpoint() -> None:
    model = NNCLR.from_flat(tiny_cfg(queue_size=20))
    model.training_step(make_batch(), 0)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    resumed = NNCLR.from_flat(tiny_cfg(queue_size=20))
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert {"queue.queue", "queue.ptr", "queue.count", "queue.labels"} <= set(model.state_dict())
    assert torch.equal(resumed.queue.queue, model.queue.queue) and torch.equal(resumed.queue.labels, model.queue.labels)
    assert int(resumed.queue.ptr) == B


def test_loss_decreases() -> None:
    check_loss_decreases(NNCLR, steps=10)


def test_fit_logs_loss_and_nn_accuracy() -> None:
    model = check_fit(NNCLR)
    assert 0.0 <= float(model.trainer.callback_metrics["train_nn_acc"]) <= 100.0
    assert int(model.queue.ptr) == 4 * B  # four optimizer steps, one push of B rows each


def test_cassle_contrastive_distillation() -> None:
    torch.manual_seed(0)
    cls = build_model_class("nnclr", "cassle")
    model = cls.from_flat(tiny_cfg(method="nnclr", distill_proj_hidden_dim=16))
    assert model.distiller == "contrastive"
    model.on_task_start(1)
    model.eval()  # running BatchNorm statistics: the teacher's pass is reproducible below
    batch = make_batch()
    out = model.training_step(batch, 0)
    assert torch.isfinite(out["distill_loss"])
    frozen = [model.frozen_forward(v) for v in batch[1]]
    preds = torch.cat([model.distill_predictor(z) for z in out["z"]])
    expected = DISTILL_LOSSES["contrastive"](preds, torch.cat(frozen), temperature=0.2)
    assert out["distill_loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    out["loss"].backward()
    assert all(p.grad is None for p in model.frozen_backbone.parameters())
    assert any(p.grad is not None for p in model.distill_predictor.parameters())
