"""cassle_r: CaSSLe's frozen teacher, distilled on the replayed rows only."""

from __future__ import annotations

import pytest
import torch

from cassle.strategies import STRATEGIES
from cassle.strategies.cassle import CaSSLeMixin
from tests.strategies.replay_helpers import batch, model, sgd_step

pytestmark = pytest.mark.usefixtures("one_thread")


def test_reuses_cassle_and_distils_replayed_rows_only(method_inputs):
    assert issubclass(STRATEGIES["cassle_r"], CaSSLeMixin)
    m = model("byol", "cassle_r")
    m.on_task_start(0)
    sgd_step(m, batch(seed=0))
    m.on_task_start(1)
    assert m.distilling
    out = m.training_step(batch(seed=1, start=50), 1)
    _, views, _ = method_inputs[-1]
    rows = slice(6, 10)
    expected = m.distill_loss([z[rows] for z in out["z"]], [m.frozen_forward(v[rows]) for v in views])
    assert torch.allclose(out["distill_loss"], expected, atol=1e-6)
    every_row = m.distill_loss(list(out["z"]), [m.frozen_forward(v) for v in views])
    assert not torch.allclose(out["distill_loss"], every_row)


def test_no_replayed_rows_no_distillation():
    m = model("barlow_twins", "cassle_r")
    m.on_task_start(1)
    out = m.training_step(batch(seed=0), 0)  # empty buffer
    assert "distill_loss" not in out
