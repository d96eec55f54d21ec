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
