"""LUMP: the method's input is λ·stream + (1 − λ)·replayed, for every view."""

from __future__ import annotations

import pytest
import torch

from tests.strategies.replay_helpers import DeterministicTransform, batch, model, sgd_step, to_float_views

pytestmark = pytest.mark.usefixtures("one_thread")


def test_method_input_is_the_lambda_mixture(method_inputs):
    m = model("barlow_twins", "lump")
    m.replay_transform = DeterministicTransform()
    sgd_step(m, batch(seed=0))
    assert torch.equal(method_inputs[0][1][0], batch(seed=0)[1][0])  # empty buffer: no mixing
    m.sample_lambda = lambda: 0.3
    b = batch(seed=1, start=50)
    sgd_step(m, b, 1)
    idx, views, targets = method_inputs[1]
    pos = m.replay_ctx["positions"]
    assert m.replay_ctx["lam"] == 0.3 and len(pos) == 6
    rep = to_float_views(m.buffer.get(pos)["images"])
    for v in range(2):
        assert torch.allclose(views[v], 0.3 * b[1][v] + 0.7 * rep[v])
    assert torch.equal(idx, b[0]) and torch.equal(targets, b[2])  # the stream's ids and labels


def test_lambda_is_beta_distributed_and_seeded():
    m = model("simclr", "lump", lump_alpha=0.4)
    lams = torch.tensor([m.sample_lambda() for _ in range(2000)])
    assert 0 <= lams.min() and lams.max() <= 1
    assert abs(lams.mean() - 0.5) < 0.03  # Beta(a, a) has mean 1/2
    assert abs(lams.var() - 0.25 / (2 * 0.4 + 1)) < 0.02  # and variance 1 / (4 (2a + 1))
    a, b = model("simclr", "lump"), model("simclr", "lump")
    assert [a.sample_lambda() for _ in range(3)] == [b.sample_lambda() for _ in range(3)]
    with pytest.raises(ValueError, match="--lump_alpha"):
        model("simclr", "lump", lump_alpha=0)
