"""MinRed strategy: the stream enters a MinRed buffer first; the method trains on buffer samples only."""

from __future__ import annotations

import pytest
import torch

from tests.strategies.replay_helpers import batch, model, sgd_step

pytestmark = pytest.mark.usefixtures("one_thread")


def test_trains_on_buffer_samples_only(method_inputs):
    m = model("simsiam", "minred", mem_size=8)
    assert m.buffer.kind == "minred"
    sgd_step(m, batch(seed=0, start=0))
    assert len(m.buffer) == 6  # inserted before training
    for i in range(1, 4):
        sgd_step(m, batch(seed=i, start=10 * i), i)
        idx = method_inputs[-1][0]
        stored = set(m.buffer.get(m.replay_ctx["positions"])["indexes"].tolist())
        assert set(idx.tolist()) == stored
    assert len(m.buffer) == 8 and m.buffer.num_seen == 24


def test_insertion_features_are_a_no_grad_pass_of_the_plain_image():
    m = model("simsiam", "minred", mem_size=8)
    b = batch(seed=0)
    m.insert({"indexes": b[0], "views": b[1], "targets": b[2], "raw": b[3]["raw"]}, None)
    assert not m.buffer.data["feats"].requires_grad
    assert torch.allclose(m.buffer.data["feats"][:6], m.buffer_features(b[3]["raw"]))
    assert m.backbone.training  # the eval-mode pass restores the training mode


def test_duplicate_stream_sample_is_dropped_first():
    m = model("simsiam", "minred", mem_size=6)
    b = batch(seed=0)
    raw = b[3]["raw"]
    m.insert({"indexes": b[0], "views": b[1], "targets": b[2], "raw": raw}, None)
    dup = batch(seed=1, n=1, start=100)
    dup[3]["raw"][:] = raw[2]  # an exact copy of stored sample 2
    m.insert({"indexes": dup[0], "views": dup[1], "targets": dup[2], "raw": dup[3]["raw"]}, None)
    kept = set(m.buffer.data["indexes"].tolist())
    assert len(kept) == 6 and (2 in kept) != (100 in kept)
