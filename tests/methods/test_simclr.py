"""SimCLR: contract and NT-Xent over both views."""

from __future__ import annotations

import pytest
import torch

from cassle.losses import simclr_loss_func
from cassle.methods import SimCLR
from tests.methods.helpers import check_contract, check_fit, check_loss_decreases, make_batch


def test_contract_and_loss_value() -> None:
    out = check_contract(SimCLR, num_classes=0, temperature=0.5)
    idx = make_batch()[0]
    ref = simclr_loss_func(torch.cat(out["z"]), torch.cat([idx, idx]), temperature=0.5)
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-5)


def test_loss_decreases() -> None:
    check_loss_decreases(SimCLR)


def test_fit() -> None:
    check_fit(SimCLR)
