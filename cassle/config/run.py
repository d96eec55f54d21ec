"""A run's whole configuration: the components, the method's and strategy's declared hyperparameters
(:func:`hparams_class`) and the upgrade of older ``args.json`` files."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .base import LEGACY_KEYS, ArgSpec, _bool
from .components import (
    COMPONENTS,
    AugmentationConfig,
    DataConfig,
    EvalConfig,
    LoggingConfig,
    ModelConfig,
    OptimConfig,
    ReplayConfig,
    RunDirConfig,
    TrainerConfig,
)

_HPARAMS_CACHE: dict[tuple, type] = {}


def hparams_class(name: str, specs: Mapping[str, ArgSpec]) -> type:
    """A frozen dataclass ``<name>`` with one field per declared argument ``name -> (type, default, help[,
    choices])``; ``from_flat`` converts each value with its declared type (``None`` stays ``None``) and refuses a
    value outside ``choices``."""
    key = (name, tuple((k, s[0], s[1], tuple(s[3]) if len(s) > 3 and s[3] else None) for k, s in specs.items()))
    if key in _HPARAMS_CACHE:
        return _HPARAMS_CACHE[key]
    fields_ = [(k, Any, field(default=s[1])) for k, s in specs.items()]
    frozen_specs = dict(specs)

    def from_flat(cls, flat: Mapping[str, Any]):
        kwargs = {}
        for k, spec in frozen_specs.items():
            value = flat.get(k, spec[1])
            if value is not None:
                try:
                    value = _bool(value) if spec[0] is bool else spec[0](value)
                except (TypeError, ValueError) as e:
                    raise ValueError(f"--{k}: {value!r} is not a valid {spec[0].__name__} ({e})") from None
                choices = spec[3] if len(spec) > 3 else None
                if choices and value not in choices:
                    raise ValueError(f"--{k} must be one of {', '.join(map(str, choices))}, got {value!r}")
            kwargs[k] = value
        return cls(**kwargs)

    cls = dataclasses.make_dataclass(
        name,
        fields_,
        frozen=True,
        namespace={
            "from_flat": classmethod(from_flat),
            "to_flat": lambda self: dataclasses.asdict(self),
            "specs": frozen_specs,
        },
    )
    _HPARAMS_CACHE[key] = cls
    return cls


def upgrade_flat(flat: Mapping[str, Any]) -> dict[str, Any]:
    """An ``args.json`` (or any flat mapping) of an earlier version in today's form: CaSSLe's key names mapped
    to ours (:data:`LEGACY_KEYS`), scalar augmentation values made one-element lists, ``precision`` spelt as
    Lightning's. Keys it does not know are kept."""
    out = dict(flat)
    for old, new in LEGACY_KEYS.items():
        if old in out:
            value = out.pop(old)
            out.setdefault(new, value)
    for key in AugmentationConfig.keys():
        if key in out and out[key] is not None and not isinstance(out[key], (list, tuple)):
            out[key] = [out[key]]
    return out


@dataclass(frozen=True)
class RunConfig:
    """Every component's config of one run, and the method's and strategy's own hyperparameters.

    ``extra`` keeps the keys no component claims (a newer version's, a derived value), so
    :meth:`to_flat` gives back what :meth:`from_flat` got."""

    data: DataConfig
    augmentation: AugmentationConfig
    model: ModelConfig
    optim: OptimConfig
    replay: ReplayConfig
    trainer: TrainerConfig
    rundir: RunDirConfig
    eval: EvalConfig
    logging: LoggingConfig
    method: Any = None
    strategy: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_flat(
        cls,
        flat: Mapping[str, Any],
        method_args: Mapping[str, ArgSpec] | None = None,
        strategy_args: Mapping[str, ArgSpec] | None = None,
    ) -> RunConfig:
        """Build every component from a flat ``--flag -> value`` mapping (upgraded by :func:`upgrade_flat`);
        ``method_args`` / ``strategy_args``: the declared arguments of the run's method / strategy."""
        flat = upgrade_flat(flat)
        parts = {name: comp.from_flat(flat) for name, comp in COMPONENTS.items()}
        claimed = {k for comp in COMPONENTS.values() for k in comp.keys()}
        method = hparams_class("MethodHparams", method_args or {}).from_flat(flat)
        strategy = hparams_class("StrategyHparams", strategy_args or {}).from_flat(flat)
        claimed |= set(method_args or {}) | set(strategy_args or {})
        extra = {k: v for k, v in flat.items() if k not in claimed}
        return cls(**parts, method=method, strategy=strategy, extra=extra)

    def to_flat(self) -> dict[str, Any]:
        """The flat form (``args.json``): every component's keys, the hyperparameters and ``extra``."""
        out: dict[str, Any] = {}
        for name in COMPONENTS:
            out.update(getattr(self, name).to_flat())
        for hp in (self.method, self.strategy):
            if hp is not None:
                out.update(hp.to_flat())
        out.update(self.extra)
        return out
