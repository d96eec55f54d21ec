"""Registries that fill themselves: a class registers with a decorator in its own module, and the package
imports its modules on first use, so adding a method or a strategy touches no list elsewhere.

    METHODS = Registry("method", attribute="method_name")

    @METHODS.register("byol")
    class BYOL(BaseMomentumMethod): ...
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T", bound=type)


class Registry(dict):
    """``command-line name -> class``; :meth:`register` adds a class and stores its name on it."""

    def __init__(self, kind: str, attribute: str) -> None:
        super().__init__()
        self.kind = kind
        self.attribute = attribute

    def register(self, name: str) -> Callable[[T], T]:
        def deco(cls: T) -> T:
            if name in self and self[name] is not cls:
                raise ValueError(f"{self.kind} name {name!r} is taken by {self[name].__qualname__}")
            setattr(cls, self.attribute, name)
            self[name] = cls
            return cls

        return deco


def import_submodules(package: str, path: Iterable[str], skip: Iterable[str] = ()) -> None:
    """Import every module of ``package`` (its ``__path__``), so that their ``@register`` decorators run."""
    skip = set(skip)
    for info in sorted(pkgutil.iter_modules(list(path)), key=lambda m: m.name):
        if not info.name.startswith("_") and info.name not in skip:
            importlib.import_module(f"{package}.{info.name}")
