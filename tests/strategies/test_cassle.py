"""CaSSLe mechanism: what is frozen, what moves, which loss is added, what a resume restores."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cassle.losses.distill import DISTILL_LOSSES
from cassle.methods import METHODS
from cassle.strategies import STRATEGIES, build_model_class
from cassle.strategies.cassle import resolve_distiller
from tests.helpers import PUBLISHED_FAMILIES

CFG = dict(
    encoder="resnet9",
    base_width=4,
    crop_size=8,
    num_classes=4,
    proj_hidden_dim=16,
    output_dim=8,
    pred_hidden_dim=16,
    distill_proj_hidden_dim=16,
    num_prototypes=6,
    queue_size=32,
    batch_size=8,
    lr=0.05,
    max_epochs=1,
    optimizer="sgd",
    weight_decay=0.0,
)

EXPECTED_FAMILY = PUBLISHED_FAMILIES
#: every registered two-view method CaSSLe can wrap (the test batches have two views): the mechanism tests run on all
DISTILLABLE = sorted(
    m for m, cls in METHODS.items() if cls.family in DISTILL_LOSSES and cls.views_for(cls.method_hparams(CFG)) == 2
)


def _batch(n: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    views = [torch.randn(n, 3, 8, 8, generator=g) for _ in range(2)]
    return torch.arange(n), views, torch.randint(0, 4, (n,), generator=g)


def _model(method: str, **over):
    cls = build_model_class(method, "cassle")
    return cls.from_flat({**CFG, "method": method, **over})


def _sgd_steps(model, steps: int = 3):
    opt = torch.optim.SGD([p for g in model.learnable_params for p in g["params"]], lr=0.05)
    model.train()
    out = None
    for i in range(steps):
        out = model.training_step(_batch(seed=i), i)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    return out


def _no_log(model):
    model.log = lambda *a, **k: None  # outside a Trainer
    return model


@pytest.mark.parametrize("method", DISTILLABLE)
def test_family_matches_method(method):
    assert _model(method).distiller == METHODS[method].family
    if method in EXPECTED_FAMILY:
        assert METHODS[method].family == EXPECTED_FAMILY[method]


def test_the_shipped_methods_are_all_distillable():
    # every method with a distillation family (all but MAE's reconstructive one) that takes two views
    distillable = {
        m
        for m, f in EXPECTED_FAMILY.items()
        if f in DISTILL_LOSSES and METHODS[m].views_for(METHODS[m].method_hparams(CFG)) == 2
    }
    assert distillable == set(DISTILLABLE) & set(EXPECTED_FAMILY)
    assert distillable >= {"barlow_twins", "byol", "mocov2plus", "simclr", "swav", "vicreg"}


def test_distiller_override_and_aliases():
    assert resolve_distiller("predictive_distill", "decorrelative") == "predictive"
    assert resolve_distiller(None, "contrastive") == "contrastive"
    with pytest.raises(ValueError, match="unknown --distiller"):
        resolve_distiller("nope", "predictive")
    m = _model("barlow_twins", distiller="predictive_mse")
    assert m.distiller == "predictive_mse" and m.distill_lamb == 25.0
    with pytest.raises(ValueError, match="prototypes"):
        _model("byol", distiller="knowledge")


@pytest.mark.parametrize("method", ["barlow_twins", "byol"])
def test_task0_adds_no_distillation(method):
    torch.manual_seed(0)
    m = _no_log(_model(method))
    m.on_task_start(0)
    assert not m.distilling
    assert all(not p.requires_grad for p in m.distill_predictor.parameters())
    torch.manual_seed(0)
    plain = _no_log(build_model_class(method, "finetune").from_flat({**CFG, "method": method}))
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if k in plain.state_dict()})
    batch = _batch()
    m.eval(), plain.eval()
    out, ref = m.training_step(batch, 0), plain.training_step(batch, 0)
    assert "distill_loss" not in out
    assert torch.allclose(out["loss"], ref["loss"])


@pytest.mark.parametrize("method", DISTILLABLE)
def test_teacher_frozen_student_moves_predictor_learns(method):
    torch.manual_seed(0)
    m = _no_log(_model(method))
    m.on_task_start(0)
    _sgd_steps(m, 1)
    m.on_task_start(1)
    assert m.distilling
    # the teacher starts as an exact copy of the weights the previous task ended with
    for (k, a), b in zip(m.frozen_backbone.state_dict().items(), m.backbone.state_dict().values()):
        assert torch.equal(a, b), k
    teacher = {k: v.clone() for k, v in m.frozen_backbone.state_dict().items()}
    teacher.update({f"proj.{k}": v.clone() for k, v in m.frozen_projector.state_dict().items()})
    student = {k: v.detach().clone() for k, v in m.backbone.named_parameters()}  # weights (BN statistics move anyway)
    pred = [p.clone() for p in m.distill_predictor.parameters()]

    m.train()
    assert m.frozen_backbone.training and m.frozen_projector.training  # batch statistics, like the student
    out = m.training_step(_batch(), 0)
    assert "distill_loss" in out and torch.isfinite(out["distill_loss"])
    out["loss"].backward()
    assert all(p.grad is None for p in m.frozen_backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.distill_predictor.parameters())
    m.zero_grad()
    _sgd_steps(m, 2)

    after = dict(m.frozen_backbone.state_dict())
    after.update({f"proj.{k}": v for k, v in m.frozen_projector.state_dict().items()})
    for k, v in teacher.items():  # parameters AND BatchNorm buffers unchanged
        assert torch.equal(v, after[k]), k
    now = dict(m.backbone.named_parameters())
    assert any(not torch.equal(v, now[k]) for k, v in student.items())
    assert any(not torch.equal(a, b) for a, b in zip(pred, m.distill_predictor.parameters()))


def test_distillation_term_is_lamb_times_family_loss():
    torch.manual_seed(0)
    m = _no_log(_model("byol", distill_lamb=3.0))
    m.on_task_start(1)
    m.eval()  # deterministic BN for both passes
    batch = _batch()
    out = m.training_step(batch, 0)
    z = out["z"]
    frozen = [m.frozen_projector(m.frozen_backbone(v)) for v in batch[1]]
    expected = sum(DISTILL_LOSSES["predictive"](m.distill_predictor(zv), fz) for zv, fz in zip(z, frozen)) / 2
    assert torch.allclose(out["distill_loss"], expected, atol=1e-6)
    m.frozen_backbone = None  # same model without a teacher: the difference is lamb × distill
    base = m.training_step(batch, 0)
    assert torch.allclose(out["loss"] - base["loss"], 3.0 * expected, atol=1e-5)


@pytest.mark.parametrize("method", DISTILLABLE)
def test_teacher_targets_equal_student_projections_at_first_step(method):
    """At the first step of task 1 teacher and student have the same weights; the teacher normalises with the
    batch's statistics (as both reference implementations do), so its targets are the student's projections."""
    torch.manual_seed(0)
    m = _no_log(_model(method))
    m.on_task_start(0)
    _sgd_steps(m, 2)  # running statistics now differ from any single batch's statistics
    m.on_task_start(1)
    m.train()
    batch = _batch(seed=7)
    out = m.training_step(batch, 0)
    for zv, v in zip(out["z"], batch[1]):
        target = m.frozen_forward(v)
        cos = F.cosine_similarity(zv.detach(), target, dim=-1)
        assert torch.allclose(cos, torch.ones_like(cos), atol=1e-5), cos.min()


def test_teacher_running_statistics_frozen_and_resume_exact():
    """The teacher's forward never moves its BatchNorm buffers; a resumed model gives the same step."""
    torch.manual_seed(0)
    m = _no_log(_model("byol"))
    m.on_task_start(0)
    _sgd_steps(m, 1)
    m.on_task_start(1)
    buffers = {k: v.clone() for k, v in m.frozen_backbone.state_dict().items()}
    _sgd_steps(m, 2)
    for k, v in m.frozen_backbone.state_dict().items():
        assert torch.equal(v, buffers[k]), k
    saved = {k: v.clone() for k, v in m.state_dict().items()}
    resumed = _no_log(_model("byol"))
    resumed.on_task_start(1)
    resumed.load_state_dict(saved)
    m.train(), resumed.train()
    a, b = m.training_step(_batch(seed=5), 0), resumed.training_step(_batch(seed=5), 0)
    assert torch.equal(a["distill_loss"], b["distill_loss"]) and torch.equal(a["loss"], b["loss"])


def test_mocov2plus_predictor_sees_the_normalised_query():
    """CaSSLe's MoCo v2+ returns the L2-normalised queries as ``z``: its predictor is fed those."""
    torch.manual_seed(0)
    m = _no_log(_model("mocov2plus"))
    m.on_task_start(1)
    m.eval()  # deterministic BatchNorm for the hand computation
    batch = _batch()
    out = m.training_step(batch, 0)
    preds = [m.distill_predictor(F.normalize(zv, dim=-1)) for zv in out["z"]]
    frozen = [m.frozen_forward(v) for v in batch[1]]
    expected = DISTILL_LOSSES["contrastive"](torch.cat(preds), torch.cat(frozen), temperature=0.2)
    assert torch.allclose(out["distill_loss"], expected, atol=1e-6)
    raw = DISTILL_LOSSES["contrastive"](
        torch.cat([m.distill_predictor(zv) for zv in out["z"]]), torch.cat(frozen), temperature=0.2
    )
    assert not torch.allclose(out["distill_loss"], raw, atol=1e-4)  # the projections are not unit-norm


def test_knowledge_distiller_prototypes_are_weight_normalised():
    """``distill_prototypes`` is ``g · v / ||v||`` per prototype (SwAV's weight norm), with g and v learnt."""
    torch.manual_seed(0)
    m = _no_log(_model("swav"))
    layer = m.distill_prototypes
    names = {n for n, _ in layer.named_parameters()}
    assert len(names) == 2, names  # magnitude g and direction v
    g = next(p for n, p in layer.named_parameters() if n.endswith("original0"))
    v = next(p for n, p in layer.named_parameters() if n.endswith("original1"))
    x = torch.randn(5, v.shape[1])
    expected = x @ (g * v / v.norm(dim=1, keepdim=True)).T
    assert torch.allclose(layer(x), expected, atol=1e-6)
    m.on_task_start(1)
    m.train()
    out = m.training_step(_batch(), 0)
    out["loss"].backward()
    assert g.grad is not None and v.grad is not None and g.grad.abs().sum() > 0
    params = {id(p) for grp in m.learnable_params for p in grp["params"]}
    assert id(g) in params and id(v) in params


@pytest.mark.parametrize(
    "method, lamb, factor",
    [("byol", 0.25, 4.0), ("byol", 1.0, 1.0), ("byol", 3.0, 1.0), ("simsiam", 0.5, 2.0), ("barlow_twins", 0.5, 1.0)],
)
def test_predictor_lr_scaled_by_inverse_lamb_for_predictive_distiller(method, lamb, factor):
    """The predictive distiller trains its predictor at lr / λ when λ < 1 (CaSSLe's rule; other families keep lr)."""
    m = _model(method, distill_lamb=lamb, lr=0.05)
    group = next(g for g in m.learnable_params if g["name"] == "distill_predictor")
    assert group.get("lr", m.lr) == pytest.approx(0.05 * factor)


def test_predictor_and_teacher_in_learnable_params_and_checkpoint():
    m = _model("barlow_twins")
    names = [g["name"] for g in m.learnable_params]
    assert "distill_predictor" in names
    m.on_task_start(1)
    frozen_ids = {id(p) for p in m.frozen_backbone.parameters()}
    assert not frozen_ids & {id(p) for g in m.learnable_params for p in g["params"]}
    sd = m.state_dict()
    assert any(k.startswith("frozen_backbone.") for k in sd) and any(k.startswith("distill_predictor.") for k in sd)


def test_resumed_task_uses_saved_teacher():
    """A mid-task resume restores the teacher saved in the checkpoint, not a copy of the half-trained student."""
    torch.manual_seed(0)
    m = _no_log(_model("byol"))
    m.on_task_start(1)
    _sgd_steps(m, 2)  # the student drifts away from the teacher
    saved = m.state_dict()
    resumed = _model("byol")
    resumed.load_state_dict({k: v for k, v in saved.items() if not k.startswith("frozen_")}, strict=False)
    resumed.on_task_start(1)  # teacher snapshot of the (half-trained) student...
    resumed.load_state_dict(saved)  # ...replaced by the checkpoint's teacher, as Lightning's resume does
    for k, v in m.frozen_backbone.state_dict().items():
        assert torch.equal(v, resumed.frozen_backbone.state_dict()[k])
    assert any(
        not torch.equal(v, resumed.backbone.state_dict()[k])
        for k, v in resumed.frozen_backbone.state_dict().items()
        if v.is_floating_point()
    )


def test_registry():
    assert {"finetune", "cassle"} <= set(STRATEGIES)
    cls = build_model_class("simclr", "cassle")
    assert issubclass(cls, METHODS["simclr"]) and issubclass(cls, STRATEGIES["cassle"])
