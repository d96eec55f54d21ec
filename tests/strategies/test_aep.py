"""AEP / APRE: the EMA teacher moves by exactly the momentum formula, gets no gradient; the predictor learns;
AEP aligns every row, APRE only the replayed rows."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tests.strategies.replay_helpers import batch, model, sgd_step

pytestmark = pytest.mark.usefixtures("one_thread")


def _filled(strategy: str, **over):
    m = model("simclr", strategy, ema_momentum=0.9, **over)
    m.on_task_start(0)
    sgd_step(m, batch(seed=0))  # fills the buffer
    return m


def test_ema_teacher_update_is_the_momentum_formula():
    m = _filled("aep")
    ema_before = [p.clone() for p in list(m.ema_backbone.parameters()) + list(m.ema_projector.parameters())]
    online = [p.clone() for p in list(m.backbone.parameters()) + list(m.projector.parameters())]
    assert any(not torch.equal(a, b) for a, b in zip(ema_before, online))  # the student moved, the teacher did not
    m.update_ema_teacher()
    after = list(m.ema_backbone.parameters()) + list(m.ema_projector.parameters())
    for e, o, a in zip(ema_before, online, after):
        assert torch.allclose(a, 0.9 * e + 0.1 * o, atol=1e-7)
    for bo, be in zip(m.backbone.buffers(), m.ema_backbone.buffers()):  # BatchNorm statistics copied
        assert torch.equal(bo, be)
    assert int(m.ema_updates) == 1


def test_teacher_gets_no_gradient_predictor_does():
    m = _filled("aep")
    m.train()
    assert m.ema_backbone.training and m.ema_projector.training  # batch statistics, like the student
    out = m.training_step(batch(seed=1, start=50), 1)
    out["loss"].backward()
    assert all(not p.requires_grad and p.grad is None for p in m.ema_backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.align_predictor.parameters())
    names = [g["name"] for g in m.learnable_params]
    assert "align_predictor" in names
    ema_ids = {id(p) for p in m.ema_backbone.parameters()}
    assert not ema_ids & {id(p) for g in m.learnable_params for p in g["params"]}


def test_ema_updates_once_per_optimizer_step():
    m = _filled("aep")
    m._trainer = SimpleNamespace(global_step=0)
    m._last_ema_teacher_step = 0
    m.on_train_batch_end({}, None, 0)
    assert int(m.ema_updates) == 0  # no optimizer step happened (gradient accumulation)
    m._trainer.global_step = 1
    m.on_train_batch_end({}, None, 1)
    m.on_train_batch_end({}, None, 2)
    assert int(m.ema_updates) == 1
    m._trainer = None


@pytest.mark.parametrize("strategy, rows", [("aep", slice(0, 10)), ("apre", slice(6, 10))])
def test_alignment_rows(method_inputs, strategy, rows):
    m = _filled(strategy, omega=0.5)
    out = m.training_step(batch(seed=1, start=50), 1)
    _, views, _ = method_inputs[-1]
    assert len(views[0]) == 10
    expected = m.align_loss([z[rows] for z in out["z"]], [m.ema_forward(v[rows]) for v in views])
    assert torch.allclose(out["align_loss"], expected, atol=1e-6)
    m.omega = 0.0
    base = m.training_step(batch(seed=1, start=50), 1)
    assert torch.isfinite(base["loss"])


def test_apre_without_replay_aligns_nothing():
    m = model("simclr", "apre")
    out = m.training_step(batch(seed=0), 0)
    assert "align_loss" not in out


def test_ema_teacher_and_predictor_are_checkpointed():
    m = _filled("apre")
    m.update_ema_teacher()
    sd = m.state_dict()
    assert any(k.startswith("ema_backbone.") for k in sd) and any(k.startswith("align_predictor.") for k in sd)
    other = model("simclr", "apre")
    other.load_state_dict(sd)
    other.load_strategy_state_dict(m.strategy_state_dict())
    other.on_task_start(1)  # the restored teacher is not replaced by a copy of the student
    for a, b in zip(m.ema_backbone.parameters(), other.ema_backbone.parameters()):
        assert torch.equal(a, b)
    assert len(other.buffer) == len(m.buffer)


@pytest.mark.parametrize("strategy", ["aep", "apre"])
def test_ema_teacher_targets_equal_student_projections_at_first_step(strategy):
    """Before any EMA update the teacher is the student; with batch statistics its targets are the student's
    projections on the same training batch (an eval-mode teacher would disagree through BatchNorm)."""
    import torch.nn.functional as F

    m = model("byol", strategy)
    m.on_task_start(0)
    m.train()
    b = batch(seed=4)
    buffers = [t.clone() for t in m.ema_backbone.buffers()]
    out = m.training_step(b, 0)
    for zv, v in zip(out["z"], b[1]):
        cos = F.cosine_similarity(zv.detach(), m.ema_forward(v), dim=-1)
        assert torch.allclose(cos, torch.ones_like(cos), atol=1e-5), cos.min()
    for before, after in zip(buffers, m.ema_backbone.buffers()):  # the teacher's forward moves no statistics
        assert torch.equal(before, after)


@pytest.mark.parametrize("strategy", ["aep", "arp"])
def test_cosine_criterion_is_minus_cosine(strategy):
    """``--align_criterion cosine`` is −cos (ocl-self-supervised's scale), so a published --omega means the same."""
    m = model("simclr", strategy)
    m.eval()
    g = torch.Generator().manual_seed(0)
    z = [torch.randn(6, 8, generator=g) for _ in range(2)]
    t = [torch.randn(6, 8, generator=g) for _ in range(2)]
    got = m.align_loss(z, t)
    expected = 0.0
    for zv, tv in zip(z, t):
        p = m.align_predictor(zv)
        expected += -((p * tv).sum(1) / (p.norm(dim=1) * tv.norm(dim=1))).mean() / 2
    assert torch.allclose(got, torch.as_tensor(expected), atol=1e-6)
