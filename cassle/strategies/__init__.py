"""Continual-learning strategies as mixins over any SSL method.

``build_model_class(method, strategy)`` composes ``STRATEGIES[strategy]`` with
``METHODS[method]``; a method never imports a strategy. A strategy registers
itself (``@STRATEGIES.register("name")`` in its own module); importing this
package imports every module here.
"""

from __future__ import annotations

from cassle.registry import import_submodules
from cassle.strategies.base import STRATEGIES, StrategyMixin

import_submodules(__name__, __path__)


def get_strategy(name: str) -> type[StrategyMixin]:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy '{name}'; choose one of: {', '.join(sorted(STRATEGIES))}") from None


def build_model_class(method: str, strategy: str) -> type:
    """The LightningModule class ``Strategy(Method)`` for the two registry names."""
    from cassle.methods import METHODS

    if method not in METHODS:
        raise ValueError(f"unknown method '{method}'; choose one of: {', '.join(sorted(METHODS))}")
    method_cls = METHODS[method]
    mixin = get_strategy(strategy)
    mixin.check_compatible(method_cls)
    return type(f"{mixin.__name__.replace('Mixin', '')}{method_cls.__name__}", (mixin, method_cls), {})


__all__ = ["STRATEGIES", "StrategyMixin", "build_model_class", "get_strategy"]
