"""The contract every strategy mixin follows.

A strategy is a mixin placed *before* a method class in the MRO
(``type(name, (Mixin, Method), {})``). It only uses the method contract of
``docs/contracts.md``: it calls ``super().training_step`` and adds its own
term to ``out["loss"]``; it never reaches into a method's private attributes.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch.nn as nn

from cassle.config import ArgSpec, declared_args, hparams_class
from cassle.registry import Registry

#: command-line name -> strategy mixin; a strategy registers itself with ``@STRATEGIES.register("name")``
STRATEGIES: Registry = Registry("strategy", attribute="strategy_name")


def split_batch(batch: Sequence[Any]) -> tuple[tuple[Any, Any, Any], dict[str, Any]]:
    """``((indexes, views, targets), extras)`` of a training batch.

    Replay and online runs carry a fourth element, a dict (``raw`` un-augmented
    ``uint8`` images, ``mb_pass``); plain batches give ``extras = {}``.
    """
    if isinstance(batch, (list, tuple)) and len(batch) == 4 and isinstance(batch[3], dict):
        return (batch[0], batch[1], batch[2]), dict(batch[3])
    return tuple(batch), {}  # type: ignore[return-value]


def teacher_copy(module: nn.Module) -> nn.Module:
    """A gradient-free copy of ``module`` that normalises with the batch's statistics.

    The teachers of CaSSLe (the frozen past network) and of AEP / APRE (the EMA
    network) are used in training mode, as in both reference implementations
    (the CaSSLe repository's distillers and ocl-self-supervised's strategies):
    on the first step of a task the teacher's targets equal the student's
    projections. Its normalisation layers stop tracking (BatchNorm and any layer with a
    ``track_running_stats`` switch, e.g. VIbCReg's IterNorm), so a forward pass neither
    reads nor moves the running statistics it was copied with (nothing else
    reads them while training; a checkpoint therefore resumes exactly). It
    follows the module's ``train()`` / ``eval()`` like any submodule.
    """
    teacher = copy.deepcopy(module)
    teacher.requires_grad_(False)
    for m in teacher.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) or hasattr(m, "track_running_stats"):
            m.track_running_stats = False
    return teacher


class StrategyMixin:
    """Base of all strategy mixins: hooks the task loop calls, with no-op defaults."""

    #: registry name (set by ``@STRATEGIES.register``; unregistered bases keep a descriptive one)
    strategy_name: str = "base"
    #: method families this strategy can wrap (None: every method)
    supported_families: tuple[str, ...] | None = None
    #: whether the strategy keeps a replay buffer (``--mem_size`` must then be >= 1)
    uses_buffer: bool = False
    #: whether training batches must carry the raw ``uint8`` images (``cfg["return_raw"]``)
    needs_raw_images: bool = False

    #: the strategy's own arguments ``name -> (type, default, help[, choices])``, merged along the MRO
    #: (a composed strategy has its parts' arguments); typed as :attr:`strategy_cfg`
    strategy_args: ClassVar[dict[str, ArgSpec]] = {}
    #: the argument group's title in ``--help`` (per declaring class)
    strategy_args_title: ClassVar[str] = ""

    #: the :class:`~cassle.config.RunConfig` part this layer takes (see ``BaseMethod.config_parts``)
    config_parts: ClassVar[tuple[str, ...]] = ("strategy",)

    def __init__(self, *, strategy: Any = None, **parts: Any) -> None:
        super().__init__(**parts)  # type: ignore[call-arg]
        #: the strategy's hyperparameters, typed (a dataclass of :meth:`all_strategy_args`)
        self.strategy_cfg = type(self)._own_hparams(strategy, "strategy_hparams", "all_strategy_args")
        type(self).check_config(type(self), self.strategy_cfg)

    @classmethod
    def all_strategy_args(cls) -> dict[str, ArgSpec]:
        """The strategy's arguments, merged along the MRO (a composed strategy has its parts')."""
        return declared_args(cls, "strategy_args")

    @classmethod
    def strategy_hparams(cls, cfg: Mapping[str, Any]) -> Any:
        """The typed hyperparameters of this strategy from a flat configuration (defaults for missing keys;
        ``ValueError`` naming the key for a value of the wrong type or outside its choices)."""
        return hparams_class(f"{cls.__name__}Hparams", cls.all_strategy_args()).from_flat(cfg)

    @classmethod
    def add_strategy_args(cls, parser: argparse.ArgumentParser) -> None:
        """Add the strategy's own arguments (:attr:`strategy_args` along the MRO) with their defaults,
        one group per declaring class."""
        existing = {a.dest for a in parser._actions}
        for klass in reversed(cls.__mro__):
            specs = klass.__dict__.get("strategy_args", {})
            todo = {k: v for k, v in specs.items() if k not in existing}
            if not todo:
                continue
            group = parser.add_argument_group(klass.__dict__.get("strategy_args_title") or klass.__name__)
            for name, spec in todo.items():
                typ, default, help_ = spec[:3]
                choices = spec[3] if len(spec) > 3 else None
                if typ is bool:
                    group.add_argument(f"--{name}", action="store_true", default=bool(default), help=help_)
                else:
                    group.add_argument(f"--{name}", type=typ, default=default, help=help_, choices=choices)
                existing.add(name)

    @classmethod
    def check_compatible(cls, method_cls: type) -> None:
        """Raise ValueError, naming the fix, if this strategy cannot wrap ``method_cls``."""
        fam = getattr(method_cls, "family", None)
        if cls.supported_families is not None and fam not in cls.supported_families:
            raise ValueError(
                f"strategy '{cls.strategy_name}' cannot wrap method family '{fam}'; "
                f"it supports {sorted(cls.supported_families)}"
            )

    @classmethod
    def check_config(cls, method_cls: type, hp: Any) -> None:
        """Raise ValueError, naming the fix, if the strategy's hyperparameters ``hp`` (:meth:`strategy_hparams`)
        are bad for ``method_cls``.

        Called by argument validation (before any file is written) and by the strategy's ``__init__``.
        """

    def on_task_start(self, task_idx: int) -> None:
        """Called by the task loop before the task's ``fit`` (teacher snapshots go here)."""
        self.current_task_idx = task_idx

    def use_stream_augmentation(self, datamodule: Any) -> None:
        """Called by the task loop with the run's data module; strategies that augment samples of their own
        (replay) take the stream's augmentation from it. Default: nothing to take."""

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> Any:
        """Hand the method the plain ``(indexes, views, targets)`` batch (extras stripped)."""
        plain, _ = split_batch(batch)
        return super().training_step(plain, batch_idx)  # type: ignore[misc]

    def strategy_state_dict(self) -> dict[str, Any]:
        """Extra state that is not in ``state_dict()`` (e.g. buffers kept as plain tensors)."""
        return {"current_task_idx": getattr(self, "current_task_idx", 0)}

    def load_strategy_state_dict(self, state: dict[str, Any]) -> None:
        self.current_task_idx = int(state.get("current_task_idx", 0))

    # Lightning hooks: the mid-task resume checkpoint carries the strategy state too.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]
        checkpoint["strategy_state"] = self.strategy_state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]
        if "strategy_state" in checkpoint:
            self.load_strategy_state_dict(checkpoint["strategy_state"])
