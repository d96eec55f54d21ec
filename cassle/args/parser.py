"""Command-line arguments of ``main_continual.py``.

The names are the ones CaSSLe and solo-learn users already type. Parsing is
two-stage: the first pass reads ``--method`` and ``--strategy``; the second adds
the arguments that the chosen method and strategy own (their published
defaults live with them, in ``add_method_args`` / ``add_strategy_args``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from cassle.args.common import DEFAULT_MAX_EPOCHS, PRECISIONS  # noqa: F401  (PRECISIONS re-exported)
from cassle.args.online import add_online_args
from cassle.data.transforms import AUGMENTATION_DEFAULTS
from cassle.errors import ArgumentError  # noqa: F401  (re-exported)


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that raises instead of exiting, so callers decide; abbreviations are typos, not flags."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ArgumentError(f"{message}\n(run `python main_continual.py --help` for the accepted arguments)")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        default="digits",
        help="digits (embedded), fashion_mnist, cifar10, cifar100, stl10, imagenet, imagenet100, domainnet, custom",
    )
    g.add_argument(
        "--data_dir", default=None, help="folder holding the dataset in its standard layout (nothing is downloaded)"
    )
    g.add_argument(
        "--no_labels", action="store_true", help="custom data without labels: no online classifier, probes skipped"
    )
    g.add_argument("--num_tasks", type=int, default=5)
    g.add_argument("--split_strategy", choices=["class", "data", "domain"], default="class")
    g.add_argument("--domain_order", nargs="+", default=None, help="domain names in task order (domain split)")
    g.add_argument(
        "--train_fraction",
        type=float,
        default=1.0,
        help="keep this seeded, class-stratified fraction of every task's training images (quick runs, benchmarks); test sets are kept whole",
    )
    g.add_argument("--num_workers", type=int, default=2)
    g.add_argument(
        "--crop_size",
        type=int,
        default=None,
        help="training resolution; default: the dataset's image size (digits: 16)",
    )
    g.add_argument(
        "--gpu_augment",
        action="store_true",
        help="in-memory datasets: augment whole batches on the device (cassle/data/batched_augment.py)",
    )
    g.add_argument(
        "--dali",
        action="store_true",
        help="folder datasets: decode and augment with NVIDIA DALI (pip install 'cassle[dali]')",
    )
    # each takes one value (shared by every view) or one per view (asymmetric: --solarization_prob 0.0 0.2)
    a = p.add_argument_group("augmentations (one value, or one per view)")
    for name, default in AUGMENTATION_DEFAULTS.items():
        a.add_argument(f"--{name}", type=float, nargs="+", default=list(default))


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--method", default="barlow_twins")
    g.add_argument("--strategy", default="finetune")
    g.add_argument("--encoder", "--backbone", dest="encoder", default="resnet18")
    g.add_argument("--base_width", type=int, default=None, help="override the encoder's first-stage width")
    g.add_argument("--proj_hidden_dim", type=int, default=2048)
    g.add_argument("--output_dim", "--proj_output_dim", dest="output_dim", type=int, default=256)


def _add_optim_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optimisation")
    g.add_argument("--max_epochs", type=int, default=DEFAULT_MAX_EPOCHS, help="epochs per task")
    g.add_argument("--batch_size", type=int, default=256, help="per device")
    g.add_argument("--lr", type=float, default=0.3, help="base lr, scaled by global batch size / 256")
    g.add_argument("--classifier_lr", type=float, default=0.1)
    g.add_argument("--optimizer", choices=["sgd", "lars", "adamw"], default="sgd")
    g.add_argument("--lars", action="store_true", help="wrap SGD in LARS (same as --optimizer lars)")
    g.add_argument("--eta_lars", type=float, default=0.02)
    g.add_argument(
        "--exclude_bias_n_norm",
        action="store_true",
        help="no LARS adaptation or weight decay on biases and norm layers",
    )
    g.add_argument("--weight_decay", type=float, default=1e-4)
    g.add_argument("--scheduler", choices=["warmup_cosine", "cosine", "step", "none"], default="warmup_cosine")
    g.add_argument("--warmup_epochs", type=float, default=10)
    g.add_argument("--warmup_start_lr", type=float, default=0.0)
    g.add_argument("--min_lr", type=float, default=0.0)


def _add_trainer_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("trainer")
    g.add_argument("--precision", default="32", help="32, 16 (16-mixed), bf16 (bf16-mixed)")
    g.add_argument("--accelerator", default="auto", help="auto, cpu, gpu")
    g.add_argument("--devices", default="1", help="number of devices, or a comma list of ids (CaSSLe's --gpus)")
    g.add_argument("--gpus", dest="devices", help=argparse.SUPPRESS)
    g.add_argument("--num_nodes", type=int, default=1)
    g.add_argument("--sync_batchnorm", action="store_true")
    g.add_argument("--check_val_every_n_epoch", type=int, default=1)
    g.add_argument("--log_every_n_steps", type=int, default=10)
    g.add_argument("--no_progress_bar", action="store_true")
    g.add_argument("--seed", type=int, default=5)


def _add_continual_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("continual run")
    g.add_argument(
        "--task_idx", type=int, default=0, help="first task to train (CaSSLe workflow, with --pretrained_model)"
    )
    g.add_argument("--pretrained_model", default=None, help="task checkpoint whose weights start --task_idx")
    g.add_argument("--name", default=None, help="run name; default <method>-<strategy>-<dataset>")
    g.add_argument(
        "--checkpoint_dir",
        default=None,
        help="run directory; default ./experiments/<name>. Rerunning the same command resumes it",
    )
    g.add_argument(
        "--save_checkpoint",
        action="store_true",
        help="accepted for CaSSLe compatibility: task checkpoints are always written",
    )
    g.add_argument("--checkpoint_frequency", type=int, default=1, help="epochs between mid-task resume checkpoints")
    e = p.add_argument_group("evaluation after each task")
    e.add_argument("--probes", nargs="+", default=["knn", "ridge"], help="knn, ridge, linear; 'none' to skip")
    e.add_argument("--knn_k", type=int, default=20)
    e.add_argument("--knn_temperature", type=float, default=0.07)
    e.add_argument("--eval_batch_size", type=int, default=256)
    e.add_argument("--no_baseline", action="store_true", help="skip the random-initialisation probes")
    w = p.add_argument_group("logging")
    w.add_argument("--wandb", action="store_true")
    w.add_argument("--project", default="cassle")
    w.add_argument("--entity", default=None)
    w.add_argument("--offline", action="store_true")
    w.add_argument("--tensorboard", action="store_true")


def build_parser(method_cls=None, strategy_cls=None) -> argparse.ArgumentParser:
    """The full parser; with classes given, their own arguments are added too."""
    p = _Parser(
        prog="main_continual.py",
        description="Continual self-supervised pretraining: every task in one process, a checkpoint and probes after each.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_data_args(p)
    _add_model_args(p)
    _add_optim_args(p)
    _add_trainer_args(p)
    _add_continual_args(p)
    add_online_args(p)
    if method_cls is not None:
        method_cls.add_method_args(p)
    if strategy_cls is not None and hasattr(strategy_cls, "add_strategy_args"):
        strategy_cls.add_strategy_args(p)
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse in two stages (method/strategy first), then validate the values."""
    from cassle.args.validate import resolve_method, resolve_strategy, validate_args

    pre = _Parser(add_help=False)
    pre.add_argument("--method", default="barlow_twins")
    pre.add_argument("--strategy", default="finetune")
    known, _ = pre.parse_known_args(argv)
    method_cls = resolve_method(known.method)
    strategy_cls = resolve_strategy(known.strategy)
    args = build_parser(method_cls, strategy_cls).parse_args(argv)
    validate_args(args)
    return args
