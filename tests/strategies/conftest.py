"""Fixtures of the replay-strategy tests."""

from __future__ import annotations

import pytest

from cassle.strategies.base import StrategyMixin


@pytest.fixture
def method_inputs(monkeypatch):
    """Records every batch a method receives from the strategy chain (after composition)."""
    seen: list = []
    original = StrategyMixin.training_step

    def spy(self, batch, batch_idx):
        seen.append(batch)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(StrategyMixin, "training_step", spy)
    return seen


@pytest.fixture
def one_thread():
    """Run on one intra-op thread: tiny models gain nothing from more, and a busy 2-core machine
    makes multi-threaded ops dramatically slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
