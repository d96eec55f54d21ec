"""Typed configuration: one frozen dataclass per component, built once from the command line.

The command line (``cassle/args``) takes its defaults from these classes, so a
default has one home; ``args.json`` stays the flat ``--flag -> value`` mapping
users read, and :meth:`RunConfig.from_flat` turns such a mapping (a parsed
command line, an ``args.json`` of any earlier version, a sweep entry) into the
typed objects. Each component receives its own object:

============================  =====================================================
:class:`DataConfig`           the data module: dataset, split, loaders
:class:`AugmentationConfig`   the views' augmentations (one value or one per view)
:class:`ModelConfig`          encoder and projector sizes of the method
:class:`OptimConfig`          optimizer, schedule, epochs (the method's optimisation)
:class:`ReplayConfig`         replay memory and online learning (replay strategies)
:class:`TrainerConfig`        Lightning trainer settings
:class:`RunDirConfig`         run name, directory, resume checkpoints, start task
:class:`EvalConfig`           the probes after every task
:class:`LoggingConfig`        WandB / TensorBoard
method / strategy hparams     a dataclass made from the class's declared arguments
                              (:func:`hparams_class`: ``method_args`` / ``strategy_args``)
============================  =====================================================

Validation that needs no data lives with the value (``__post_init__``); checks
that need the dataset or the method class run in ``cassle.args.validate``.

Layout: :mod:`~cassle.config.base` (converters, the ``from_flat``/``to_flat`` base),
:mod:`~cassle.config.components` (the component classes), :mod:`~cassle.config.run`
(:class:`RunConfig`, :func:`hparams_class`, :func:`upgrade_flat`). Import from
``cassle.config``.
"""

from .base import DEFAULT_MAX_EPOCHS, LEGACY_KEYS, ArgSpec, declared_args
from .components import (
    ACCELERATORS,
    COMPONENTS,
    OPTIMIZERS,
    SCHEDULERS,
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
from .run import RunConfig, hparams_class, upgrade_flat

__all__ = [
    "ACCELERATORS",
    "COMPONENTS",
    "DEFAULT_MAX_EPOCHS",
    "LEGACY_KEYS",
    "OPTIMIZERS",
    "SCHEDULERS",
    "ArgSpec",
    "AugmentationConfig",
    "DataConfig",
    "EvalConfig",
    "LoggingConfig",
    "ModelConfig",
    "OptimConfig",
    "ReplayConfig",
    "RunConfig",
    "RunDirConfig",
    "TrainerConfig",
    "declared_args",
    "hparams_class",
    "upgrade_flat",
]
