"""ARP: replayed rows are aligned to their stored representations, which then move by the EMA."""

from __future__ import annotations

import pytest
import torch

from tests.strategies.replay_helpers import batch, model, sgd_step

pytestmark = pytest.mark.usefixtures("one_thread")


def test_insertion_stores_the_mean_projection():
    m = model("vicreg", "arp")
    out = m.training_step(batch(seed=0), 0)
    expected = torch.stack([z.detach() for z in out["z"]]).mean(0)
    assert torch.allclose(m.buffer.data["reps"][:6], expected)
    assert "align_loss" not in out  # nothing replayed yet


def test_aligns_replayed_rows_to_stored_reps_and_refreshes_them():
    m = model("vicreg", "arp", buffer_feature_ema=0.25, omega=2.0)
    sgd_step(m, batch(seed=0))
    old = m.buffer.data["reps"].clone()
    out = m.training_step(batch(seed=1, start=50), 1)
    pos = m.replay_ctx["positions"]
    rows = slice(6, 6 + len(pos))
    assert len(pos) == 4
    expected = m.align_loss([z[rows] for z in out["z"]], [old[pos], old[pos]])
    assert torch.allclose(out["align_loss"], expected, atol=1e-6)
    z_now = torch.stack([z[rows].detach() for z in out["z"]]).mean(0)
    new = m.buffer.data["reps"]
    assert torch.allclose(new[pos], 0.25 * old[pos] + 0.75 * z_now, atol=1e-6)
    untouched = torch.ones(len(old), dtype=torch.bool)
    untouched[pos] = False
    untouched[6:] = False  # slots 6..11 were just filled by the stream
    assert torch.equal(new[untouched], old[untouched])
    # the loss flows into the student's replayed rows and the predictor, not into the stored targets
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.align_predictor.parameters())
    assert not m.buffer.data["reps"].requires_grad
