"""ReSSL: contract, loss on the step's own tensors, weak-view teacher queue, EMA, augmentations, CaSSLe."""

from __future__ import annotations

import argparse
import io

import pytest
import torch
import torch.nn.functional as F

from cassle.losses.ressl import ressl_loss_func
from cassle.methods import ReSSL
from cassle.methods.ressl import RESSL_AUGMENTATION_DEFAULTS
from tests.methods.helpers import B, check_contract, check_fit, check_loss_decreases, make_batch, tiny_cfg


def test_contract_defaults_and_state() -> None:
    out = check_contract(ReSSL)
    assert len(out["momentum_z"]) == 2 and not out["momentum_z"][1].requires_grad
    assert all(z.requires_grad for z in out["z"])
    model = ReSSL.from_flat(tiny_cfg())
    assert (model.temperature_q, model.temperature_k) == (0.1, 0.04)
    assert (model.base_tau_momentum, model.final_tau_momentum) == (0.99, 1.0)
    assert (ReSSL.default_proj_hidden_dim, ReSSL.default_output_dim) == (4096, 256)
    assert ReSSL.family == "predictive" and ReSSL.normalized_projection
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in model.projector.modules())  # Linear-ReLU-Linear
    assert {"queue.queue", "queue.ptr", "queue.count"} <= set(model.state_dict())
    assert len(model.momentum_pairs) == 2


def test_loss_is_strong_student_vs_weak_teacher_against_the_queue() -> None:
    torch.manual_seed(0)
    model = ReSSL.from_flat(tiny_cfg(num_classes=0, queue_size=20))
    queue_before = model.queue.rows().clone()
    out = model.training_step(make_batch(), 0)
    ref = ressl_loss_func(out["z"][0], out["momentum_z"][1], queue_before, 0.1, 0.04)
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-6)
    # asymmetric: the student's weak view and the teacher's strong view play no part
    assert torch.autograd.grad(out["loss"], out["z"][1], allow_unused=True)[0] is None
    other = ressl_loss_func(out["z"][1], out["momentum_z"][0], queue_before, 0.1, 0.04)
    assert not torch.isclose(out["loss"], other)


def test_queue_receives_normalised_weak_view_teacher_keys_fifo() -> None:
    model = ReSSL.from_flat(tiny_cfg(num_classes=0, queue_size=12))
    before = model.queue.rows().clone()
    out = model.training_step(make_batch(), 0)
    keys = F.normalize(out["momentum_z"][1], dim=1)
    assert torch.allclose(model.queue.rows()[:B], keys)
    assert torch.equal(model.queue.rows()[B:], before[B:])
    assert int(model.queue.ptr) == B
    out2 = model.training_step(make_batch(seed=1), 1)  # 8 more keys in a 12-row ring: wraps after 4
    keys2 = F.normalize(out2["momentum_z"][1], dim=1)
    assert torch.allclose(model.queue.rows()[B:], keys2[:4]) and torch.allclose(model.queue.rows()[:4], keys2[4:])
    assert int(model.queue.ptr) == 4


def test_teacher_gets_no_gradient_and_follows_the_student_by_ema() -> None:
    torch.manual_seed(0)
    model = ReSSL.from_flat(tiny_cfg(num_classes=0))
    out = model.training_step(make_batch(), 0)
    out["loss"].backward()
    assert all(p.grad is None for p in model.momentum_backbone.parameters())
    assert all(p.grad is None for p in model.momentum_projector.parameters())
    with torch.no_grad():
        for p in model.projector.parameters():
            p.add_(1.0)
    online = [p.clone() for p in model.projector.parameters()]
    target = [p.clone() for p in model.momentum_projector.parameters()]
    tau = model.update_momentum(0, 10)
    assert tau == pytest.approx(0.99)
    for o, t, new in zip(online, target, model.momentum_projector.parameters()):
        assert torch.allclose(new, tau * t + (1 - tau) * o)


def test_weak_and_strong_view_augmentation_defaults() -> None:
    from cassle.args import parse_args

    args = parse_args(["--method", "ressl", "--dataset", "digits"])
    for key, values in RESSL_AUGMENTATION_DEFAULTS.items():
        assert list(getattr(args, key)) == values, key
    assert args.color_jitter_prob == [0.8, 0.0] and args.gaussian_prob == [0.5, 0.0]  # view 1 is weak
    override = parse_args(["--method", "ressl", "--dataset", "digits", "--gaussian_prob", "0.1", "0.0"])
    assert override.gaussian_prob == [0.1, 0.0]
    plain = argparse.ArgumentParser()  # a parser without augmentation options only gets the method's
    ReSSL.add_method_args(plain)
    assert "color_jitter_prob" not in vars(plain.parse_args([]))


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="temperature"):
        ReSSL.from_flat(tiny_cfg(temperature_k=0.0))
    with pytest.raises(ValueError, match="queue_size"):
        ReSSL.from_flat(tiny_cfg(queue_size=0))


def test_checkpoint_roundtrip_with_weights_only() -> None:
    model = ReSSL.from_flat(tiny_cfg())
    model.training_step(make_batch(), 0)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh = ReSSL.from_flat(tiny_cfg())
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(fresh.queue.rows(), model.queue.rows()) and int(fresh.queue.ptr) == B


def test_loss_decreases_against_a_fixed_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    # a live queue fills with keys like the current ones, which moves the target; freeze it
    monkeypatch.setattr(ReSSL, "enqueue", lambda self, keys: None)
    check_loss_decreases(ReSSL, queue_size=32)


def test_fit() -> None:
    check_fit(ReSSL)


def test_cassle_predictive_distillation() -> None:
    from cassle.losses.distill import DISTILL_LOSSES
    from cassle.strategies import build_model_class

    torch.manual_seed(0)
    cls = build_model_class("ressl", "cassle")
    model = cls.from_flat(tiny_cfg(method="ressl", distill_proj_hidden_dim=16))
    model.log = lambda *a, **k: None
    assert model.distiller == "predictive" and model.distill_lamb == 1.0
    model.on_task_start(1)
    model.eval()  # deterministic BatchNorm for the hand computation
    batch = make_batch()
    out = model.training_step(batch, 0)
    preds = [model.distill_predictor(F.normalize(z, dim=-1)) for z in out["z"]]  # normalised projections
    frozen = [model.frozen_forward(v) for v in batch[1]]
    expected = sum(DISTILL_LOSSES["predictive"](p, f) for p, f in zip(preds, frozen)) / 2
    assert torch.allclose(out["distill_loss"], expected, atol=1e-6)
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.distill_predictor.parameters())
