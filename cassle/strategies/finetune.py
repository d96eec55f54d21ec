"""Fine-tuning: train each task with the plain SSL objective (the lower bound)."""

from __future__ import annotations

from cassle.strategies.base import STRATEGIES, StrategyMixin


@STRATEGIES.register("finetune")
class FinetuneMixin(StrategyMixin):
    """Adds nothing: the method's loss alone, task after task."""
