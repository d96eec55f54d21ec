"""Self-supervised methods: one LightningModule per method on ``BaseMethod``.

``METHODS`` maps the command-line name to the class. A method registers itself
(``@METHODS.register("name")`` in its own module); importing this package
imports every module here, so a new method file needs no edit of this one.
Strategies wrap these classes through the contract in ``docs/contracts.md``.
"""

from __future__ import annotations

from cassle.methods.base import METHODS, BaseMethod
from cassle.methods.momentum import BaseMomentumMethod, cosine_tau, ema_update
from cassle.methods.optim import LARS, build_optimizer, build_scheduler
from cassle.registry import import_submodules

import_submodules(__name__, __path__)

# every registered class is importable by its name: ``from cassle.methods import BYOL``
globals().update({cls.__name__: cls for cls in METHODS.values()})

__all__ = [
    "LARS",
    "METHODS",
    "BaseMethod",
    "BaseMomentumMethod",
    "build_optimizer",
    "build_scheduler",
    "cosine_tau",
    "ema_update",
]
__all__ += sorted(cls.__name__ for cls in METHODS.values())
