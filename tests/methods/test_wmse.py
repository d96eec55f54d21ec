"""W-MSE: contract, loss on the step's own tensors, rank-independent partitions, gathered whitening, CaSSLe."""

from __future__ import annotations

import warnings

import pytest
import torch

from cassle.losses.wmse import subbatch_partition, wmse_loss_func
from cassle.methods import WMSE
from tests.methods.helpers import B, check_contract, check_fit, check_loss_decreases, make_batch, tiny_cfg

#: small sizes with full-rank whitening: sub-batches of 4 rows for 2-d projections
SMALL = dict(output_dim=2, whitening_size=4)


def test_contract_and_defaults() -> None:
    out = check_contract(WMSE, **SMALL)
    assert all(z.requires_grad for z in out["z"])
    model = WMSE.from_flat(tiny_cfg())
    assert (model.whitening_size, model.whitening_iters, model.whitening_eps) == (128, 1, 0.0)
    assert (WMSE.default_proj_hidden_dim, WMSE.default_output_dim) == (1024, 64)
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.projector.modules())


def test_loss_equals_the_loss_function_on_the_step_tensors() -> None:
    torch.manual_seed(0)
    model = WMSE.from_flat(tiny_cfg(num_classes=0, **SMALL))
    out = model.training_step(make_batch(), 0)
    ref = wmse_loss_func(out["z"], 4, 1, 0.0, generator=model.whitening_generator())
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-6)
    # two sub-batches of 4: whitening the whole batch at once gives another value
    whole = wmse_loss_func(out["z"], B, generator=model.whitening_generator())
    assert not torch.isclose(out["loss"], whole)
    out["loss"].backward()
    assert all(p.grad is not None for p in model.projector.parameters())


def test_partition_depends_on_seed_task_and_step_only() -> None:
    a, b = WMSE.from_flat(tiny_cfg(seed=3, **SMALL)), WMSE.from_flat(tiny_cfg(seed=3, **SMALL))
    parts = [subbatch_partition(B, 4, m.whitening_generator()) for m in (a, b)]
    assert all(torch.equal(x, y) for x, y in zip(*parts))  # two "ranks" draw the same sub-batches
    torch.manual_seed(123)  # the global RNG (rank-specific in a run) plays no part
    again = subbatch_partition(B, 4, a.whitening_generator())
    assert all(torch.equal(x, y) for x, y in zip(parts[0], again))
    a.current_task_idx = 1
    other_task = subbatch_partition(64, 4, a.whitening_generator())
    same_task = subbatch_partition(64, 4, b.whitening_generator())
    assert not all(torch.equal(x, y) for x, y in zip(other_task, same_task))


def test_whitening_uses_the_gathered_global_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under DDP ``gather`` concatenates every rank's projections; the loss whitens sub-batches of that."""
    torch.manual_seed(0)
    model = WMSE.from_flat(tiny_cfg(num_classes=0, output_dim=2, whitening_size=8))
    g = torch.Generator().manual_seed(5)
    other_rank = [torch.randn(B, 2, generator=g) for _ in range(2)]
    gathered = iter(other_rank)
    monkeypatch.setattr(model, "gather", lambda x: torch.cat([x, next(gathered)]))
    out = model.training_step(make_batch(), 0)
    views = [torch.cat([z, o]) for z, o in zip(out["z"], other_rank)]
    ref = wmse_loss_func(views, 8, generator=model.whitening_generator())  # 16 global rows, 2 sub-batches
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-6)
    local = wmse_loss_func(out["z"], 8, generator=model.whitening_generator())
    assert not torch.isclose(out["loss"], local)


def test_sub_batch_is_capped_at_the_batch_and_small_batches_shrink() -> None:
    model = WMSE.from_flat(tiny_cfg(num_classes=0, output_dim=2))  # whitening_size 128 > batch 8
    assert model.whitening_plan(B) == (B, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.training_step(make_batch(), 0)  # full rank: no warning
    small = WMSE.from_flat(tiny_cfg(num_classes=0))  # 8 rows for 16-d projections: rank-deficient
    with pytest.warns(UserWarning, match="full-rank"):
        out = small.training_step(make_batch(), 0)
    assert torch.isfinite(out["loss"])
    assert small.whitening_plan(B) == (B, 1e-2)
    ref = wmse_loss_func(out["z"], B, 1, 1e-2, generator=small.whitening_generator())
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-6)


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="whitening_size"):
        WMSE.from_flat(tiny_cfg(whitening_size=1))
    with pytest.raises(ValueError, match="whitening_iters"):
        WMSE.from_flat(tiny_cfg(whitening_iters=0))
    with pytest.raises(ValueError, match="whitening_eps"):
        WMSE.from_flat(tiny_cfg(whitening_eps=1.5))


def test_loss_decreases() -> None:
    check_loss_decreases(WMSE, **SMALL)


def test_fit() -> None:
    check_fit(WMSE, **SMALL)


def test_cassle_distillation_family() -> None:
    from cassle.losses.distill import DISTILL_LOSSES
    from cassle.strategies import build_model_class

    torch.manual_seed(0)
    cls = build_model_class("wmse", "cassle")
    model = cls.from_flat(tiny_cfg(method="wmse", distill_proj_hidden_dim=16, **SMALL))
    model.log = lambda *a, **k: None
    assert WMSE.family == "decorrelative" and model.distiller == "decorrelative"
    assert (model.distill_lamb, model.distill_barlow_lamb, model.distill_scale_loss) == (1.0, 5e-3, 0.1)
    model.on_task_start(1)
    model.eval()  # deterministic BatchNorm for the hand computation
    batch = make_batch()
    out = model.training_step(batch, 0)
    frozen = [model.frozen_forward(v) for v in batch[1]]
    loss_fn = DISTILL_LOSSES["decorrelative"]
    expected = (
        sum(loss_fn(model.distill_predictor(z), f, lamb=5e-3, scale_loss=0.1) for z, f in zip(out["z"], frozen)) / 2
    )
    assert torch.allclose(out["distill_loss"], expected, atol=1e-6)
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.distill_predictor.parameters())
