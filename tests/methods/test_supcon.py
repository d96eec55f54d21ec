"""SupCon: same-class rows are positives; unlabelled rows fall back to SimCLR."""

from __future__ import annotations

import pytest
import torch

from cassle.losses import simclr_loss_func
from cassle.methods import SupCon
from tests.methods.helpers import check_contract, check_fit, check_loss_decreases, make_batch, tiny_cfg


def test_uses_labels_as_positives() -> None:
    out = check_contract(SupCon, num_classes=0)
    _, _, y = make_batch()
    z = torch.cat(out["z"])
    ref = simclr_loss_func(z, torch.cat([y, y]), temperature=0.2)
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-5)
    idx = make_batch()[0]
    simclr = simclr_loss_func(z, torch.cat([idx, idx]), temperature=0.2)
    assert ref.item() != pytest.approx(simclr.item())  # labels changed the positives


def test_unlabelled_rows_are_only_positive_with_their_other_view() -> None:
    model = SupCon.from_flat(tiny_cfg(num_classes=0))
    idx, views, _ = make_batch()
    out = model.training_step((idx, views, torch.full_like(idx, -1)), 0)
    ref = simclr_loss_func(torch.cat(out["z"]), torch.cat([idx, idx]), temperature=0.2)
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-5)


def test_loss_decreases() -> None:
    check_loss_decreases(SupCon)


def test_fit() -> None:
    check_fit(SupCon)
