"""SimSiam: contract, stop-gradient loss, constant-lr predictor."""

from __future__ import annotations

import pytest

from cassle.losses import simsiam_loss_func
from cassle.methods import SimSiam
from tests.methods.helpers import B, check_contract, check_fit, check_loss_decreases, tiny_cfg


def test_contract_and_loss_value() -> None:
    out = check_contract(SimSiam, num_classes=0)
    p1, p2 = out["p"]
    z1, z2 = out["z"]
    assert p1.shape == (B, 16)
    ref = simsiam_loss_func(p1, z2) / 2 + simsiam_loss_func(p2, z1) / 2
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-5)
    assert SimSiam.from_flat(tiny_cfg()).momentum_pairs == []


def test_predictor_has_static_lr() -> None:
    groups = {g["name"]: g for g in SimSiam.from_flat(tiny_cfg()).learnable_params}
    assert groups["predictor"].get("static_lr") is True


def test_loss_decreases() -> None:
    check_loss_decreases(SimSiam)


def test_fit() -> None:
    check_fit(SimSiam)
