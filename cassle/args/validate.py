"""Validation of parsed arguments: one clear error per bad value, before any work.

Every check here is cheap (no dataset is loaded); checks that need the data
(e.g. more tasks than classes) run in ``cassle.continual.prepare_run`` before
the first training step.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os

from cassle.args.common import DEFAULT_MAX_EPOCHS, PRECISIONS
from cassle.args.online import validate_online_args
from cassle.data.transforms import AUGMENTATION_DEFAULTS
from cassle.devices import parse_devices
from cassle.errors import ArgumentError


def _choose(kind: str, name: str, valid) -> ArgumentError:
    return ArgumentError(f"unknown {kind} '{name}'; choose one of: {', '.join(sorted(valid))}")


def resolve_method(name: str):
    from cassle.methods import METHODS

    if name not in METHODS:
        raise _choose("--method", name, METHODS)
    return METHODS[name]


def resolve_strategy(name: str):
    from cassle.strategies import STRATEGIES

    if name not in STRATEGIES:
        raise _choose("--strategy", name, STRATEGIES)
    return STRATEGIES[name]


def default_run_name(args: argparse.Namespace) -> str:
    return f"{args.method}-{args.strategy}-{args.dataset}"


#: options of the methods and strategies that must be at least 1 (the components' own options are checked by
#: their typed configs, cassle.config; None = not given / not this method's)
AT_LEAST_ONE = (
    "output_dim", "proj_hidden_dim", "pred_hidden_dim", "distill_proj_hidden_dim", "align_hidden_dim",
    "num_prototypes",
)  # fmt: skip
#: method options that must be >= 0
NON_NEGATIVE = ("queue_size",)
#: method / strategy float options that must be finite and > 0
POSITIVE = ("temperature", "distill_temperature")


def check_typed(args: argparse.Namespace, method_cls: type | None = None, strategy_cls: type | None = None):
    """Build the run's typed configuration (:class:`cassle.config.RunConfig`), which checks every component's
    values; its first complaint becomes one :class:`ArgumentError`. Returns the configuration."""
    from cassle.config import RunConfig

    method_args = method_cls.all_method_args() if hasattr(method_cls, "all_method_args") else None
    strategy_args = strategy_cls.all_strategy_args() if hasattr(strategy_cls, "all_strategy_args") else None
    try:
        return RunConfig.from_flat(vars(args), method_args, strategy_args)
    except ValueError as e:
        raise ArgumentError(str(e)) from None


def check_ranges(args: argparse.Namespace, method_cls: type | None = None) -> None:
    """The method's and strategy's numeric options inside their valid range, or one clear error.

    A method without a projector (MAE) has no projector widths to check."""
    no_projector = method_cls is not None and not getattr(method_cls, "has_projector", True)
    for name in AT_LEAST_ONE:
        if no_projector and name in ("output_dim", "proj_hidden_dim"):
            continue
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ArgumentError(f"--{name} must be at least 1, got {value}")
    for name in NON_NEGATIVE:
        value = getattr(args, name, None)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ArgumentError(f"--{name} must be a finite value >= 0, got {value}")
    for name in POSITIVE:
        value = getattr(args, name, None)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ArgumentError(f"--{name} must be a finite value > 0, got {value}")


def validate_args(args: argparse.Namespace) -> None:
    """Check and normalise ``args`` in place; raise ArgumentError on the first bad value."""
    from cassle.backbones import BACKBONES
    from cassle.data.datasets import DATASETS

    method_cls = resolve_method(args.method)
    strategy_cls = resolve_strategy(args.strategy)
    try:
        strategy_cls.check_compatible(method_cls)
    except ValueError as e:
        raise ArgumentError(str(e)) from None

    if args.encoder not in BACKBONES:
        raise _choose("--encoder", args.encoder, BACKBONES)
    for flag, module, extra in (("tensorboard", "tensorboard", "tensorboard"), ("wandb", "wandb", "wandb")):
        if getattr(args, flag, False) and importlib.util.find_spec(module) is None:
            raise ArgumentError(
                f"--{flag} needs the {module} package: pip install 'cassle[{extra}]' (or drop --{flag})"
            )
    if args.dataset not in DATASETS:
        raise _choose("--dataset", args.dataset, DATASETS)
    info = DATASETS[args.dataset]

    if str(args.precision) not in PRECISIONS:
        raise _choose("--precision", str(args.precision), PRECISIONS)
    args.precision = PRECISIONS[str(args.precision)]
    if args.lars:
        args.optimizer = "lars"

    if not 0.0 < getattr(args, "train_fraction", 1.0) <= 1.0:
        raise ArgumentError(f"--train_fraction must be in (0, 1], got {args.train_fraction}")
    if args.num_tasks < 1:
        raise ArgumentError(f"--num_tasks must be at least 1, got {args.num_tasks}")
    if not 0 <= args.task_idx < args.num_tasks:
        raise ArgumentError(
            f"--task_idx {args.task_idx} is outside 0..{args.num_tasks - 1} (--num_tasks {args.num_tasks})"
        )
    if args.task_idx > 0 and args.pretrained_model is None:
        raise ArgumentError(
            f"--task_idx {args.task_idx} starts mid-sequence: pass --pretrained_model with the checkpoint of task {args.task_idx - 1}"
        )
    if args.pretrained_model is not None and not os.path.isfile(args.pretrained_model):
        raise ArgumentError(
            f"--pretrained_model {args.pretrained_model} does not exist; pass the path of a task checkpoint (taskK.ckpt)"
        )
    if args.split_strategy == "domain" and args.dataset != "domainnet":
        raise ArgumentError(f"--split_strategy domain needs a dataset with domains (domainnet), not '{args.dataset}'")

    check_typed(args, method_cls, strategy_cls)
    check_ranges(args, method_cls)
    validate_online_args(args, method_cls, strategy_cls, DEFAULT_MAX_EPOCHS)

    views_for = getattr(method_cls, "views_for", None)
    num_views = views_for(vars(args)) if views_for is not None else getattr(method_cls, "num_views", 2)
    if hasattr(method_cls, "check_cfg"):
        try:
            method_cls.check_cfg(vars(args))
        except ValueError as e:
            raise ArgumentError(str(e)) from None
    for name in AUGMENTATION_DEFAULTS:
        values = getattr(args, name)
        if len(values) not in (1, num_views):
            raise ArgumentError(
                f"--{name} got {len(values)} values; give one (shared by all views) or {num_views} (one per view)"
            )

    if getattr(args, "gpu_augment", False) and getattr(args, "dali", False):
        raise ArgumentError(
            "--gpu_augment and --dali are exclusive: --gpu_augment for in-memory datasets, --dali for folder datasets"
        )
    if getattr(args, "gpu_augment", False) and not info.in_memory:
        raise ArgumentError(
            f"--gpu_augment needs an in-memory dataset, but '{args.dataset}' is read from image files: use --dali"
        )
    if getattr(args, "dali", False) and info.in_memory:
        raise ArgumentError(f"--dali reads image files, but '{args.dataset}' is held in memory: use --gpu_augment")
    if getattr(args, "dali", False) and (
        getattr(args, "online", False) or getattr(resolve_strategy(args.strategy), "needs_raw_images", False)
    ):
        what = (
            "--online"
            if getattr(args, "online", False)
            else f"--strategy {args.strategy} (replay needs raw images in the batch)"
        )
        raise ArgumentError(f"--dali does not support {what} yet: drop --dali to use the torch loaders")

    if args.crop_size is None:
        args.crop_size = 16 if args.dataset == "digits" else (info.image_size or 224)
    if args.crop_size < 4:
        raise ArgumentError(f"--crop_size must be at least 4, got {args.crop_size}")

    probes = [p for p in args.probes if p != "none"]
    from cassle.eval.probes import PROBES

    for p in probes:
        if p not in PROBES:
            raise _choose("probe", p, PROBES)
    args.probes = probes

    args.devices = parse_devices(args.devices)

    if args.name is not None and (args.name in ("", ".", "..") or "/" in args.name or os.sep in args.name):
        raise ArgumentError(
            f"--name {args.name!r} must be a plain folder name (no '/'); use --checkpoint_dir for a path"
        )
    if args.name is None:
        args.name = default_run_name(args)
    if args.checkpoint_dir is None:
        args.checkpoint_dir = os.path.join("experiments", args.name)
    if os.path.exists(args.checkpoint_dir) and not os.path.isdir(args.checkpoint_dir):
        raise ArgumentError(
            f"--checkpoint_dir {args.checkpoint_dir} is a file, not a run directory: pass a folder path (or a new --name)"
        )
