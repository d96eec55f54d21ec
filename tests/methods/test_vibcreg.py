"""VIbCReg: contract, loss on the step's own tensors, the IterNorm whitening layer, CaSSLe."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn as nn

from cassle.losses.distill import predictive_mse_distill
from cassle.losses.vibcreg import vibcreg_loss_func
from cassle.methods import VIbCReg
from cassle.methods.vibcreg import IterNorm
from cassle.strategies import build_model_class
from tests.methods.helpers import check_contract, check_fit, check_loss_decreases, make_batch, tiny_cfg


def _cov(y: torch.Tensor) -> torch.Tensor:
    yc = y - y.mean(0)
    return yc.T @ yc / y.shape[0]


def _correlated(n: int = 64, d: int = 4, seed: int = 0) -> torch.Tensor:
    """Shifted, scaled, correlated samples with a well-conditioned covariance (eigenvalues 9 ... 23)."""
    g = torch.Generator().manual_seed(seed)
    rot, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    mix = rot @ torch.diag(torch.linspace(1.0, 1.6, d, dtype=torch.float64)) @ rot.T
    return 3.0 * torch.randn(n, d, generator=g, dtype=torch.float64) @ mix + 2.0


# ------------------------------------------------------------------ IterNorm
@pytest.mark.parametrize(
    ("d", "groups", "layout"), [(16, 64, (16, 1)), (2048, 64, (64, 32)), (12, 5, (4, 3)), (10, 4, (10, 1))]
)
def test_iternorm_group_layout(d: int, groups: int, layout: tuple[int, int]) -> None:
    m = IterNorm(d, num_groups=groups)
    assert (m.num_groups, m.group_size) == layout
    assert m.running_wm.shape == (layout[0], layout[1], layout[1])


def test_iternorm_whitens_a_batch_in_train_mode() -> None:
    x = _correlated()
    off = ~torch.eye(4, dtype=torch.bool)
    assert _cov(x)[off].abs().max() > 1.0 and _cov(x).diagonal().min() > 5  # far from white before
    y = IterNorm(4, num_groups=1, eps=0.0).train()(x)  # the default 5 iterations
    assert torch.allclose(y.mean(0), torch.zeros(4, dtype=x.dtype), atol=1e-10)
    assert torch.allclose(_cov(y), torch.eye(4, dtype=x.dtype), atol=0.01)
    # more Newton iterations converge to the exact whitening matrix Σ^{-1/2} (eigendecomposition)
    m = IterNorm(4, num_groups=1, iters=30, eps=0.0, affine=False)
    evals, evecs = torch.linalg.eigh(_cov(x))
    exact = evecs @ torch.diag(evals.rsqrt()) @ evecs.T
    xc = (x - x.mean(0)).T.unsqueeze(0)
    assert torch.allclose(m.whitening_matrix(xc)[0], exact, atol=1e-8)
    assert torch.allclose(_cov(m(x)), torch.eye(4, dtype=x.dtype), atol=1e-8)


def test_iternorm_whitens_each_group_only() -> None:
    x = torch.cat([_correlated(seed=1), _correlated(seed=2)], dim=1)
    x[:, 4:] += 0.5 * x[:, :4]  # correlate the two groups
    y = IterNorm(8, num_groups=2, eps=0.0)(x)
    c = _cov(y)
    for blk in (slice(0, 4), slice(4, 8)):
        assert torch.allclose(c[blk, blk], torch.eye(4, dtype=x.dtype), atol=0.05)
    assert c[:4, 4:].abs().max() > 0.1  # across groups nothing is decorrelated


def test_iternorm_running_statistics_and_eval_mode() -> None:
    x = _correlated().float()
    m = IterNorm(4, num_groups=1, momentum=1.0)
    m.eval()
    assert torch.equal(m(x), x)  # initial running mean 0, running W = I, affine identity
    m.train()
    y_train = m(x)
    m.eval()
    assert torch.allclose(m(x), y_train, atol=1e-5)  # momentum 1: the running stats are this batch's
    half = IterNorm(4, num_groups=1, momentum=0.25)
    half(x)
    assert torch.allclose(half.running_mean.view(4), 0.25 * x.mean(0), atol=1e-6)
    assert torch.allclose(half.running_wm[0], 0.75 * torch.eye(4) + 0.25 * m.running_wm[0], atol=1e-6)


def test_iternorm_frozen_copy_keeps_its_buffers() -> None:
    x = _correlated().float()
    for freeze in ("requires_grad", "track_running_stats"):
        m = IterNorm(4, num_groups=1).train()
        if freeze == "requires_grad":
            m.requires_grad_(False)  # what teacher_copy does
        else:
            m.track_running_stats = False
        before = {k: v.clone() for k, v in m.state_dict().items()}
        y = m(x)
        assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items()), freeze
        assert torch.allclose(_cov(y.double()), torch.eye(4, dtype=torch.float64), atol=0.05)  # batch statistics


def test_iternorm_gradient_matches_finite_differences() -> None:
    m = IterNorm(4, num_groups=2, iters=5).double()
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
    x = _correlated(n=6).requires_grad_(True)
    assert torch.autograd.gradcheck(m, (x,), eps=1e-6, atol=1e-6)
    m(x).pow(2).sum().backward()
    assert m.weight.grad.abs().sum() > 0 and m.bias.grad.abs().sum() > 0


def test_iternorm_mixed_precision_and_shape_check() -> None:
    m = IterNorm(4, num_groups=1)
    x = _correlated().float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x.bfloat16())
    assert y.dtype == torch.float32 and torch.allclose(_cov(y.double()), torch.eye(4, dtype=torch.float64), atol=0.1)
    with pytest.raises(ValueError, match="B x 4"):
        m(torch.randn(8, 5))
    with pytest.raises(ValueError, match=">= 1"):
        IterNorm(4, num_groups=0)


# -------------------------------------------------------------------- method
def test_contract_and_loss_value() -> None:
    out = check_contract(VIbCReg, num_classes=0, sim_loss_weight=5.0, cov_loss_weight=50.0)
    ref = vibcreg_loss_func(*out["z"], sim_loss_weight=5.0, var_loss_weight=25.0, cov_loss_weight=50.0)
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-5)


def test_projector_is_gelu_mlp_ending_in_iternorm() -> None:
    model = VIbCReg.from_flat(tiny_cfg(iternorm_groups=4))
    kinds = [type(m) for m in model.projector]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.GELU] * 2 + [nn.Linear, IterNorm]
    assert (model.projector[-1].num_groups, model.projector[-1].group_size) == (4, 4)
    assert not any(isinstance(m, nn.ReLU) for m in model.projector.modules())
    plain = VIbCReg.from_flat(tiny_cfg(no_iternorm=True))
    assert not any(isinstance(m, IterNorm) for m in plain.modules())
    hp = VIbCReg.method_hparams({})  # published defaults (solo-learn's cifar/vibcreg.yaml)
    assert (VIbCReg.default_proj_hidden_dim, VIbCReg.default_output_dim) == (2048, 2048)
    assert (hp.sim_loss_weight, hp.var_loss_weight, hp.cov_loss_weight) == (25.0, 25.0, 200.0)
    assert (hp.iternorm_groups, hp.no_iternorm) == (64, False)


def test_projections_are_whitened_per_group_and_checkpoint_loads_weights_only() -> None:
    model = VIbCReg.from_flat(tiny_cfg(num_classes=0, iternorm_groups=4, output_dim=8))
    out = model.training_step(make_batch(n=32), 0)
    c = _cov(out["z"][0].detach().double())
    for g in range(4):
        blk = slice(2 * g, 2 * g + 2)
        assert torch.allclose(c[blk, blk], torch.eye(2, dtype=torch.float64), atol=0.05)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert torch.equal(state["projector.7.running_wm"], model.projector[7].running_wm)
    assert not torch.equal(state["projector.7.running_wm"], torch.eye(2).repeat(4, 1, 1))  # it moved


def test_loss_decreases() -> None:
    # real whitening groups (2 x 4 features); the covariance term of 16 features on 8 samples is noisy
    check_loss_decreases(VIbCReg, steps=12, lr=0.01, output_dim=8, iternorm_groups=2)


def test_fit() -> None:
    check_fit(VIbCReg)


def test_cassle_predictive_mse_distillation_and_frozen_iternorm() -> None:
    torch.manual_seed(0)
    cls = build_model_class("vibcreg", "cassle")
    model = cls.from_flat(tiny_cfg(method="vibcreg", iternorm_groups=4, distill_proj_hidden_dim=16))
    model.log = lambda *a, **k: None  # outside a Trainer
    assert model.distiller == "predictive_mse" and model.distill_lamb == 25.0
    model.on_task_start(1)
    teacher = {k: v.clone() for k, v in model.frozen_projector.state_dict().items()}
    opt = torch.optim.SGD([p for g in model.learnable_params for p in g["params"]], lr=0.01)
    for step in range(2):
        out = model.training_step(make_batch(seed=step), step)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    for k, v in teacher.items():  # the teacher's IterNorm buffers do not move
        assert torch.equal(v, model.frozen_projector.state_dict()[k]), k
    assert not torch.equal(model.projector[-1].running_wm, teacher["7.running_wm"])  # the student's do
    model.eval()
    batch = make_batch(seed=5)
    out = model.training_step(batch, 0)
    frozen = [model.frozen_forward(v) for v in batch[1]]
    expected = sum(predictive_mse_distill(model.distill_predictor(z), f) for z, f in zip(out["z"], frozen)) / 2
    assert torch.allclose(out["distill_loss"], expected, atol=1e-6)
