"""VICReg: contract and loss."""

from __future__ import annotations

import pytest

from cassle.losses import vicreg_loss_func
from cassle.methods import VICReg
from tests.methods.helpers import check_contract, check_fit, check_loss_decreases


def test_contract_and_loss_value() -> None:
    out = check_contract(VICReg, num_classes=0, sim_loss_weight=5.0, cov_loss_weight=2.0)
    ref = vicreg_loss_func(*out["z"], sim_loss_weight=5.0, var_loss_weight=25.0, cov_loss_weight=2.0)
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-5)


def test_loss_decreases() -> None:
    check_loss_decreases(VICReg, lr=0.01)


def test_fit() -> None:
    check_fit(VICReg)
