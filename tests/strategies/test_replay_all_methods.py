"""Every method × every replay strategy trains on a tiny batch (or is refused with a clear error)."""

from __future__ import annotations

import pytest
import torch

from cassle.methods import METHODS
from cassle.strategies import STRATEGIES
from cassle.strategies.cassle import DISTILL_LOSSES
from tests.strategies.replay_helpers import batch, model

pytestmark = pytest.mark.usefixtures("one_thread")

REPLAY = ["er", "lump", "minred", "aep", "arp", "apre", "cassle_r"]


@pytest.mark.parametrize("strategy", REPLAY)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_one_step_with_replay(method, strategy):
    torch.manual_seed(0)
    if strategy == "cassle_r" and METHODS[method].family not in DISTILL_LOSSES:  # MAE: nothing to distil
        with pytest.raises(ValueError, match="cannot"):
            model(method, strategy)
        return
    m = model(method, strategy)
    m.on_task_start(0)
    m.on_task_start(1) if strategy == "cassle_r" else None
    m.train()
    params = [p for g in m.learnable_params for p in g["params"]]
    opt = torch.optim.SGD(params, lr=0.01)
    for i in range(2):  # the first step fills the buffer, the second replays
        out = m.training_step(batch(seed=i, start=6 * i, num_views=m.num_views), i)
        assert torch.isfinite(out["loss"])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert len(m.buffer) == 12
    if strategy == "lump":
        assert m.replay_ctx["lam"] is not None  # the second step mixed with replayed views
    else:
        assert out["num_replayed"] > 0
    assert m.buffer.data["images"].dtype == torch.uint8


@pytest.mark.parametrize("strategy", ["aep", "arp", "apre"])
def test_ssl_alignment_refused_for_prototype_methods(strategy):
    with pytest.raises(ValueError, match="--align_criterion ssl .*use --align_criterion cosine or mse"):
        model("swav", strategy, align_criterion="ssl")
    assert model("barlow_twins", strategy, align_criterion="ssl").align_criterion == "ssl"


def test_registry_and_bad_buffer_input():
    assert set(REPLAY) <= set(STRATEGIES)
    with pytest.raises(ValueError, match="--mem_size must be at least 1"):
        model("simclr", "er", mem_size=0)
    with pytest.raises(ValueError, match="needs --buffer_type minred"):
        model("simclr", "minred", buffer_type="fifo")
    m = model("simclr", "er")
    with pytest.raises(ValueError, match="raw uint8 images"):
        m.training_step(batch()[:3], 0)
