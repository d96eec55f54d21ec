"""``ConfiguredMixin``: how a method class meets its configuration before and while it is built.

The class-level half of :class:`~cassle.methods.base.BaseMethod`: its declared arguments
(``method_args`` merged along the MRO), the typed hyperparameters made from them, the
command-line arguments they add, the checks that run before a model exists (``views_for``,
``check_cfg``) and the two ways to build a model from a configuration: :meth:`from_config`
(a :class:`~cassle.config.RunConfig`, each layer receiving only the parts it declares in
``config_parts``) and :meth:`from_flat` (a flat ``--flag -> value`` mapping).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from cassle.config import ArgSpec, ModelConfig, RunConfig, declared_args, hparams_class

__all__ = ["ConfiguredMixin"]


class ConfiguredMixin:
    """Class methods of every method (and, through the MRO, of every composed method x strategy class)."""

    @classmethod
    def all_method_args(cls) -> dict[str, ArgSpec]:
        """The method's arguments, merged along the MRO (subclasses override defaults)."""
        return declared_args(cls, "method_args")

    @classmethod
    def config_part_names(cls) -> tuple[str, ...]:
        """The :class:`~cassle.config.RunConfig` parts every layer of this class takes (its MRO's
        :attr:`config_parts`, in order)."""
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            for name in klass.__dict__.get("config_parts", ()):
                if name not in names:
                    names.append(name)
        return tuple(names)

    @classmethod
    def _own_hparams(cls, given: Any, builder: str, declared: str) -> Any:
        """``given`` if it is a hyperparameter object with exactly this class's declared fields, else one
        built from its values (or the defaults): a ``RunConfig`` made for another class still fits."""
        specs = getattr(cls, declared)()
        if given is not None and set(getattr(given, "specs", {})) == set(specs):
            return given
        flat = given.to_flat() if hasattr(given, "to_flat") else dict(given or {})
        return getattr(cls, builder)(flat)

    @classmethod
    def from_config(cls, run: RunConfig) -> Any:
        """Build the model from a run's typed configuration: each layer (method, strategy mixins) receives
        only the parts it declares in :attr:`config_parts`, plus the run's seed."""
        parts = {name: getattr(run, name) for name in cls.config_part_names()}
        return cls(**parts, seed=run.trainer.seed)

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> Any:
        """Build the model from a flat ``--flag -> value`` mapping (a parsed command line, an ``args.json`` of
        any version, a test's dict): :meth:`cassle.config.RunConfig.from_flat` with this class's declared
        arguments, then :meth:`from_config`. Keys no component claims are ignored."""
        strategy_args = cls.all_strategy_args() if hasattr(cls, "all_strategy_args") else None
        return cls.from_config(RunConfig.from_flat(flat, cls.all_method_args(), strategy_args))

    @classmethod
    def method_hparams(cls, cfg: Mapping[str, Any]) -> Any:
        """The typed method arguments of a flat configuration (defaults for missing keys; ``ValueError`` naming
        the key for a value of the wrong type)."""
        return hparams_class(f"{cls.__name__}Hparams", cls.all_method_args()).from_flat(cfg)

    @classmethod
    def add_method_args(cls, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Add the method's own arguments with their published CIFAR defaults.

        Also sets the defaults of the common ``--proj_hidden_dim`` /
        ``--output_dim`` to the method's published sizes (call it after the
        common arguments are added). An argument already present in
        ``parser`` only gets its default updated.
        """
        existing = {a.dest for a in parser._actions}
        group = parser.add_argument_group(cls.__name__) if cls.all_method_args() else parser
        for name, (typ, default, help_) in cls.all_method_args().items():
            if name in existing:
                parser.set_defaults(**{name: default})
                continue
            if typ is bool:
                group.add_argument(f"--{name}", action="store_true", default=bool(default), help=help_)
            else:
                group.add_argument(f"--{name}", type=typ, default=default, help=help_)
        parser.set_defaults(proj_hidden_dim=cls.default_proj_hidden_dim, output_dim=cls.default_output_dim)
        return parser

    @classmethod
    def views_for(cls, hp: Any = None) -> int:
        """Views per sample the data module must produce with the method hyperparameters ``hp``
        (:meth:`method_hparams`; ``None``: the defaults).

        The class attribute :attr:`num_views` by default; methods whose view
        count is an argument (EMP-SSL's ``num_crops``) override it.
        """
        return int(cls.num_views)

    @classmethod
    def check_cfg(cls, model: ModelConfig, hp: Any) -> None:
        """Raise ``ValueError`` naming the fix if the model config and the method hyperparameters ``hp``
        (:meth:`method_hparams`) cannot work with this method.

        Called by argument validation before any run starts and by ``__init__`` (no-op by default).
        """
