"""Barlow Twins: contract and loss."""

from __future__ import annotations

import pytest

from cassle.losses import barlow_loss_func
from cassle.methods import BarlowTwins
from tests.methods.helpers import check_contract, check_fit, check_loss_decreases


def test_contract_and_loss_value() -> None:
    out = check_contract(BarlowTwins, num_classes=0, lamb=0.01, scale_loss=0.5)
    ref = barlow_loss_func(*out["z"], lamb=0.01, scale_loss=0.5)
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-5)


def test_loss_decreases() -> None:
    check_loss_decreases(BarlowTwins)


def test_fit() -> None:
    check_fit(BarlowTwins)
