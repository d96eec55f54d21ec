"""cassle: continual self-supervised learning on PyTorch Lightning.

The names a notebook needs import from here on first use::

    from cassle import parse_args, ContinualDataModule, build_model_class, evaluate_after_task

``parse_args(argv)`` gives every option of ``main_continual.py`` with its default; ``vars()`` of it is the
flat configuration (``args.json``) from which ``ContinualDataModule.from_flat(cfg)`` and
``build_model_class(method, strategy).from_flat(cfg)`` build their typed config objects (:mod:`cassle.config`);
``METHODS`` / ``STRATEGIES`` are the registries. README.md ("From Python") has a complete example.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "parse_args": "cassle.args",
    "ContinualDataModule": "cassle.data.datamodule",
    "load_dataset": "cassle.data.datasets",
    "METHODS": "cassle.methods",
    "STRATEGIES": "cassle.strategies",
    "build_model_class": "cassle.strategies",
    "build_backbone": "cassle.backbones",
    "evaluate_after_task": "cassle.eval",
    "format_table": "cassle.eval",
    "load_task_checkpoint": "cassle.checkpoint",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cassle' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
