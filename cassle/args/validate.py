"""Validation of parsed arguments: one clear error per bad value, before any work.

Every check here is cheap (no dataset is loaded); checks that need the data
(e.g. more tasks than classes) run in ``cassle.continual.prepare_run`` before
the first training step.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import math
import os

from cassle.args.common import DEFAULT_MAX_EPOCHS, PRECISIONS
from cassle.args.online import validate_online_args
from cassle.config import AugmentationConfig
from cassle.devices import parse_devices
from cassle.errors import ArgumentError
from cassle.fileio import check_writable  # noqa: F401  (re-exported)


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


def check_finite_hparams(args: argparse.Namespace, method_cls: type | None, strategy_cls: type | None) -> None:
    """Every float option the method and strategy declare is a finite number (``nan`` / ``inf`` would only show
    as a diverging loss, or a crash, after a task trained)."""
    specs: dict = {}
    for cls, getter in ((method_cls, "all_method_args"), (strategy_cls, "all_strategy_args")):
        if hasattr(cls, getter):
            specs.update(getattr(cls, getter)())
    for name, spec in specs.items():
        value = getattr(args, name, None)
        if spec[0] is float and isinstance(value, float) and not math.isfinite(value):
            raise ArgumentError(f"--{name} must be a finite number, got {value}")


@functools.lru_cache(maxsize=64)
def _encoder_failure(encoder: str, crop_size: int, base_width: int | None) -> str | None:
    """Why ``encoder`` cannot take ``crop_size`` px images (``None``: it can). Shapes are traced on the ``meta``
    device (no memory, no compute); a failure there is confirmed on the CPU before it is believed."""
    import torch

    from cassle.backbones import build_backbone

    def trace(device: str) -> None:
        with torch.device(device), torch.no_grad():
            net = build_backbone(encoder, crop_size, base_width).eval()
            net(torch.zeros(1, 3, crop_size, crop_size))

    try:
        trace("meta")
        return None
    except Exception:  # noqa: BLE001 - confirmed below with real tensors
        pass
    try:
        trace("cpu")
        return None
    except Exception as e:  # noqa: BLE001 - any failure means these images cannot go through the encoder
        return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def check_encoder_input(args: argparse.Namespace) -> None:
    """The encoder takes ``--crop_size`` images (a ResNet-9 needs at least 8 px, a ViT a multiple of its patch
    size): checked on one traced image, not after the data is loaded and a model built."""
    why = _encoder_failure(args.encoder, int(args.crop_size), getattr(args, "base_width", None))
    if why is not None:
        raise ArgumentError(
            f"--encoder {args.encoder} cannot take {args.crop_size}x{args.crop_size} images (--crop_size "
            f"{args.crop_size}): {why}. Pass another --crop_size (e.g. 8, 16 or 32) or --encoder"
        )


def check_machine(args: argparse.Namespace) -> None:
    """What this machine must offer: a GPU for ``--accelerator gpu``, and as many as ``--devices`` asks for.

    A requested GPU that is missing stops the run (one line, before anything is written) instead of falling back
    to the CPU: a cluster job that silently ran 100x slower would be worse. ``--accelerator auto`` is the choice
    that takes the GPU when there is one. The launcher skips this check when it validates a command on a login
    node (``parse_args(argv, check_machine=False)``)."""
    import torch

    if args.accelerator not in ("gpu", "cuda") and not (args.accelerator == "auto" and torch.cuda.is_available()):
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        # a published GPU bash file also asks for fp16, which the CPU cannot run: one error names both fixes
        fix = "--accelerator cpu" + (" --precision 32" if str(args.precision).startswith("16") else "")
        raise ArgumentError(
            f"--accelerator {args.accelerator}: this machine has no usable GPU (torch.cuda.is_available() is False); "
            f"pass {fix} (or --accelerator auto: the GPU where there is one; through job_launcher.py: -- {fix}), "
            "or run on a GPU node"
        )
    devices = args.devices
    wanted = max(devices) + 1 if isinstance(devices, list) and devices else (devices if isinstance(devices, int) else 0)
    if wanted > count:
        raise ArgumentError(
            f"--devices {devices if isinstance(devices, int) else ','.join(map(str, devices))} asks for more GPUs "
            f"than this machine has ({count}); pass --devices {count} or fewer"
        )


def validate_args(args: argparse.Namespace, machine: bool = True) -> None:
    """Check and normalise ``args`` in place; raise ArgumentError on the first bad value.

    ``machine=False`` skips the checks of this machine's own devices (:func:`check_machine`), for a command
    validated on one machine and run on another (a SLURM login node)."""
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

    run = check_typed(args, method_cls, strategy_cls)
    check_ranges(args, method_cls)
    check_finite_hparams(args, method_cls, strategy_cls)
    validate_online_args(args, method_cls, strategy_cls, DEFAULT_MAX_EPOCHS, run)

    views_for = getattr(method_cls, "views_for", None)
    num_views = views_for(run.method) if views_for is not None else getattr(method_cls, "num_views", 2)
    if hasattr(method_cls, "check_cfg"):
        try:
            method_cls.check_cfg(run.model, run.method)
        except ValueError as e:
            raise ArgumentError(str(e)) from None
    for name in AugmentationConfig.keys():
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
    check_encoder_input(args)

    probes = [p for p in args.probes if p != "none"]
    from cassle.eval.probes import PROBES

    for p in probes:
        if p not in PROBES:
            raise _choose("probe", p, PROBES)
    args.probes = probes

    args.devices = parse_devices(args.devices)
    if args.devices == 0 or args.devices == []:
        raise ArgumentError("--devices must name at least one device (a count >= 1, ids such as 0,1, or auto)")
    if machine:
        check_machine(args)

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
    check_writable(args.checkpoint_dir)
