"""Command-line arguments of ``main_linear.py`` (linear evaluation of a task checkpoint).

The names follow CaSSLe / solo-learn's ``main_linear.py``. Arguments that
describe the pretraining run (``--dataset``, ``--data_dir``, ``--encoder``,
``--base_width``, ``--crop_size``, ``--num_tasks``, ``--split_strategy``) default
to ``None`` here and are filled from the checkpoint's saved arguments by
:func:`cassle.eval.linear.prepare_linear`; a value given on the command line
overrides the saved one.

:func:`parse_linear_args` only does the checks that need neither the
checkpoint nor the data (ranges, choices); everything else is checked by
``prepare_linear`` before any training step.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

from cassle.args.common import PRECISIONS, HelpFormatter
from cassle.devices import parse_devices
from cassle.errors import ArgumentError

#: Optimizers and schedules of the linear classifier.
LINEAR_OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")
LINEAR_SCHEDULERS: tuple[str, ...] = ("warmup_cosine", "cosine", "step", "none")


class _LinearParser(argparse.ArgumentParser):
    """ArgumentParser that raises :class:`ArgumentError` instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ArgumentError(f"{message}\n(run `python main_linear.py --help` for the accepted arguments)")


def build_linear_parser() -> argparse.ArgumentParser:
    """The parser of ``main_linear.py``."""
    p = _LinearParser(
        prog="main_linear.py",
        allow_abbrev=False,
        description=(
            "Linear evaluation of a continual SSL checkpoint: frozen backbone, a linear classifier "
            "trained on all classes, accuracy overall and per task of the pretraining split."
        ),
        formatter_class=HelpFormatter,
    )
    m = p.add_argument_group("pretrained model")
    m.add_argument(
        "--pretrained_model",
        "--pretrained_feature_extractor",
        dest="pretrained_model",
        required=True,
        help="task checkpoint (taskK.ckpt) written by main_continual.py, or a solo-learn / CaSSLe checkpoint "
        "(its backbone; then --encoder and --dataset are required)",
    )
    m.add_argument(
        "--encoder",
        "--backbone",
        dest="encoder",
        default=None,
        help="must match the checkpoint's encoder; default: the checkpoint's (a foreign checkpoint records none)",
    )
    m.add_argument("--base_width", type=int, default=None, help="default: the checkpoint's")

    d = p.add_argument_group("data (defaults: the checkpoint's run arguments)")
    d.add_argument("--dataset", default=None, help="default: the pretraining run's (required for a foreign checkpoint)")
    d.add_argument("--data_dir", default=None, help="folder holding the dataset (nothing is downloaded)")
    d.add_argument("--crop_size", type=int, default=None, help="image side fed to the backbone; default: the run's")
    d.add_argument("--num_tasks", type=int, default=None, help="tasks of the split the per-task accuracies use")
    d.add_argument(
        "--split_strategy",
        choices=["class", "data", "domain"],
        default=None,
        help="split of the per-task columns; default: the run's",
    )
    d.add_argument("--domain", default=None, help="DomainNet: train the classifier on this domain's samples only")
    d.add_argument(
        "--data_fraction",
        type=float,
        default=1.0,
        help="keep this class-stratified fraction of the training samples (semi-supervised evaluation)",
    )
    d.add_argument("--num_workers", type=int, default=2, help="data loader worker processes")

    o = p.add_argument_group("optimisation of the linear classifier")
    o.add_argument(
        "--feature_norm",
        choices=["bn", "none"],
        default="bn",
        help="bn: standardise the frozen features with a non-affine BatchNorm1d before the linear layer "
        "(MAE's linear probe; converges on every encoder); none: raw features, the CaSSLe paper's protocol",
    )
    o.add_argument(
        "--augment",
        action="store_true",
        help="random-resized-crop + flip the training images every epoch, through the frozen backbone (the CaSSLe "
        "paper's protocol, slow); default: the backbone runs once over un-augmented images and the classifier "
        "trains on the stored features",
    )
    o.add_argument(
        "--precompute_features",
        action="store_true",
        help="the default (stored un-augmented features); accepted for clarity, refused together with --augment",
    )
    o.add_argument("--max_epochs", type=int, default=100, help="epochs of the linear classifier")
    o.add_argument("--batch_size", type=int, default=256, help="per device")
    o.add_argument("--lr", type=float, default=0.1, help="learning rate of the linear classifier")
    o.add_argument("--optimizer", choices=list(LINEAR_OPTIMIZERS), default="sgd", help="optimizer of the classifier")
    o.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    o.add_argument("--weight_decay", type=float, default=0.0, help="weight decay of the classifier")
    o.add_argument(
        "--scheduler",
        choices=list(LINEAR_SCHEDULERS),
        default="step",
        help="lr schedule (step: x0.1 at --lr_decay_steps)",
    )
    o.add_argument(
        "--lr_decay_steps",
        type=int,
        nargs="+",
        default=[60, 80],
        help="epochs at which --scheduler step divides the lr by 10",
    )
    o.add_argument("--warmup_epochs", type=float, default=0.0, help="--scheduler warmup_cosine only")

    t = p.add_argument_group("trainer")
    t.add_argument("--precision", default="32", help="32, 16 (16-mixed), bf16 (bf16-mixed)")
    t.add_argument(
        "--accelerator",
        default="auto",
        help="auto (the GPU where there is one, else the CPU), cpu or gpu (gpu on a machine without one stops at once: no silent CPU run)",
    )
    t.add_argument("--devices", default="1", help="number of devices, or a comma list of ids")
    t.add_argument("--gpus", dest="devices", help=argparse.SUPPRESS)
    t.add_argument(
        "--seed",
        type=int,
        default=5,
        help="seeds the classifier's initialisation, the augmentations and --data_fraction "
        "(the task split always uses the pretraining seed)",
    )
    t.add_argument("--no_progress_bar", action="store_true", help="no progress bar (SLURM logs)")
    t.add_argument("--log_every_n_steps", type=int, default=10, help="training steps between logged rows")

    r = p.add_argument_group("output")
    r.add_argument("--name", default=None, help="default: the checkpoint's stem (e.g. task4)")
    r.add_argument("--checkpoint_dir", default=None, help="output folder; default <checkpoint folder>/linear/<name>")
    return p


def _choose(kind: str, name: str, valid: Sequence[str]) -> ArgumentError:
    return ArgumentError(f"unknown {kind} '{name}'; choose one of: {', '.join(sorted(valid))}")


def validate_linear_args(args: argparse.Namespace) -> None:
    """Check and normalise ``args`` in place; raise :class:`ArgumentError` on the first bad value."""
    from cassle.backbones import BACKBONES
    from cassle.data.datasets import DATASETS

    if args.encoder is not None and args.encoder not in BACKBONES:
        raise _choose("--encoder", args.encoder, list(BACKBONES))
    if args.dataset is not None and args.dataset not in DATASETS:
        raise _choose("--dataset", args.dataset, list(DATASETS))
    if str(args.precision) not in PRECISIONS:
        raise _choose("--precision", str(args.precision), list(PRECISIONS))
    args.precision = PRECISIONS[str(args.precision)]
    if args.augment and args.precompute_features:
        raise ArgumentError(
            "--augment and --precompute_features exclude each other: augmenting needs the images every epoch"
        )
    args.precompute_features = not args.augment
    if not (math.isfinite(args.momentum) and 0.0 <= args.momentum < 1.0):
        raise ArgumentError(f"--momentum is SGD's momentum: give a value in [0, 1), got {args.momentum}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise ArgumentError(f"--lr must be a finite value > 0, got {args.lr}")

    if not (math.isfinite(args.data_fraction) and 0.0 < args.data_fraction <= 1.0):
        raise ArgumentError(
            f"--data_fraction must be in (0, 1] (e.g. 0.1 keeps 10% of each class), got {args.data_fraction}"
        )
    for name in ("max_epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise ArgumentError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.num_workers < 0:
        raise ArgumentError(f"--num_workers must be 0 or more, got {args.num_workers}")
    if not args.lr > 0:
        raise ArgumentError(f"--lr must be positive, got {args.lr}")
    if args.weight_decay < 0:
        raise ArgumentError(f"--weight_decay must be 0 or more, got {args.weight_decay}")
    if args.warmup_epochs < 0:
        raise ArgumentError(f"--warmup_epochs must be 0 or more, got {args.warmup_epochs}")
    if args.scheduler == "step" and any(s < 1 for s in args.lr_decay_steps):
        raise ArgumentError(f"--lr_decay_steps must be positive epochs, got {args.lr_decay_steps}")
    if args.num_tasks is not None and args.num_tasks < 1:
        raise ArgumentError(f"--num_tasks must be at least 1, got {args.num_tasks}")
    if args.crop_size is not None and args.crop_size < 4:
        raise ArgumentError(f"--crop_size must be at least 4, got {args.crop_size}")
    if args.base_width is not None and args.base_width < 1:
        raise ArgumentError(f"--base_width must be at least 1, got {args.base_width}")
    if args.name is not None and (args.name in ("", ".", "..") or "/" in args.name):
        raise ArgumentError(
            f"--name {args.name!r} must be a plain folder name (no '/'); use --checkpoint_dir for a path"
        )

    from cassle.args.validate import check_machine
    from cassle.config import ACCELERATORS

    if args.accelerator not in ACCELERATORS:
        raise _choose("--accelerator", args.accelerator, ACCELERATORS)
    args.devices = parse_devices(args.devices)
    if args.devices == 0 or args.devices == []:
        raise ArgumentError("--devices must name at least one device (a count >= 1, ids such as 0,1, or auto)")
    check_machine(args)


def parse_linear_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and validate the arguments of ``main_linear.py`` (no file is read)."""
    args = build_linear_parser().parse_args(argv)
    validate_linear_args(args)
    return args


__all__ = ["LINEAR_OPTIMIZERS", "LINEAR_SCHEDULERS", "build_linear_parser", "parse_linear_args", "validate_linear_args"]
