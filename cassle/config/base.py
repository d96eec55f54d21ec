"""The machinery under every typed config: value converters, the ``from_flat`` / ``to_flat`` base class and the
shared checks (the components themselves: :mod:`cassle.config.components`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

#: a declared argument: ``(type, default, help)`` or ``(type, default, help, choices)``
ArgSpec = tuple

#: ``--max_epochs`` of ``main_continual.py`` (CaSSLe's CIFAR-100 setting); ``--online`` runs use 1
DEFAULT_MAX_EPOCHS = 500

#: keys earlier versions wrote to ``args.json`` under another name (CaSSLe's spellings)
LEGACY_KEYS = {"backbone": "encoder", "gpus": "devices", "proj_output_dim": "output_dim"}


def declared_args(cls: type, attribute: str) -> dict[str, ArgSpec]:
    """The argument declarations ``attribute`` (``method_args`` / ``strategy_args``) of every class along
    ``cls``'s MRO, merged so that a subclass overrides its bases' defaults."""
    merged: dict[str, ArgSpec] = {}
    for klass in reversed(cls.__mro__):
        merged.update(klass.__dict__.get(attribute, {}))
    return merged


def _tuple(value: Any) -> tuple[float, ...]:
    """One value or a list of values (one per view) as a tuple of floats."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return tuple(float(v) for v in values)


def _opt(conv):
    return lambda v: None if v is None else conv(v)


def _bool(v: Any) -> bool:
    if isinstance(v, str):
        if v.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if v.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"not a boolean: {v!r}")
    return bool(v)


def _int(v: Any) -> int:
    if isinstance(v, float) and not v.is_integer():
        raise ValueError(f"not an integer: {v!r}")
    return int(v)


def _str_list(v: Any) -> tuple[str, ...] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return tuple(x for x in v.split(",") if x)
    return tuple(str(x) for x in v)


_CONVERTERS = {
    "bool": _bool,
    "int": _int,
    "float": float,
    "str": str,
    "int | None": _opt(_int),
    "float | None": _opt(float),
    "str | None": _opt(str),
    "tuple[float, ...]": _tuple,
    "tuple[str, ...] | None": _str_list,
    "tuple[str, ...]": lambda v: _str_list(v) or (),
    "tuple[int, ...] | None": lambda v: None if v is None else tuple(_int(x) for x in v),
    "tuple[float, ...] | None": lambda v: None if v is None else _tuple(v),
    "Any": lambda v: v,
}


class _Component:
    """``from_flat`` / ``to_flat`` for a component dataclass (its fields are ``--flag`` names)."""

    #: the argument group's title on the command line
    title: ClassVar[str] = ""

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]):
        """The component from a flat mapping: its keys converted to their types, missing ones at the defaults;
        other keys are ignored. A value that cannot be converted raises ``ValueError`` naming the key."""
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in flat:
                continue
            conv = _CONVERTERS[f.type] if isinstance(f.type, str) else f.type
            try:
                kwargs[f.name] = conv(flat[f.name])
            except (TypeError, ValueError) as e:
                raise ValueError(f"--{f.name}: {flat[f.name]!r} is not a valid {f.type} ({e})") from None
        return cls(**kwargs)

    def to_flat(self) -> dict[str, Any]:
        """``--flag -> value`` with tuples as lists (the JSON form of ``args.json``)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return cls().to_flat()


def _positive_int(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"--{name} must be at least 1, got {value}")


def _finite(name: str, value: float, low: float | None = None, strict: bool = False) -> None:
    ok = math.isfinite(value) and (low is None or (value > low if strict else value >= low))
    if not ok:
        sign = ">" if strict else ">="
        raise ValueError(f"--{name} must be a finite value{f' {sign} {low:g}' if low is not None else ''}, got {value}")
