"""Command-line arguments of ``main_continual.py``.

The names are the ones CaSSLe and solo-learn users already type. Parsing is
two-stage: the first pass reads ``--method`` and ``--strategy``; the second adds
the arguments that the chosen method and strategy own (their published
defaults live with them, in ``add_method_args`` / ``add_strategy_args``).
Every other default is read from the typed configs of :mod:`cassle.config`,
the one home of each default.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from cassle.args.common import PRECISIONS, HelpFormatter  # noqa: F401  (PRECISIONS re-exported)
from cassle.args.online import add_online_args
from cassle.config import (
    AugmentationConfig,
    DataConfig,
    EvalConfig,
    LoggingConfig,
    ModelConfig,
    OptimConfig,
    RunDirConfig,
    TrainerConfig,
)
from cassle.errors import ArgumentError  # noqa: F401  (re-exported)


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that raises instead of exiting, so callers decide; abbreviations are typos, not flags."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ArgumentError(f"{message}\n(run `python main_continual.py --help` for the accepted arguments)")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    D = DataConfig
    g = p.add_argument_group(D.title)
    g.add_argument(
        "--dataset",
        default=D.dataset,
        help="digits (embedded), fashion_mnist, cifar10, cifar100, stl10, imagenet, imagenet100, domainnet, custom",
    )
    g.add_argument(
        "--data_dir",
        default=D.data_dir,
        help="folder holding the dataset in its standard layout (nothing is downloaded)",
    )
    g.add_argument(
        "--no_labels", action="store_true", help="custom data without labels: no online classifier, probes skipped"
    )
    g.add_argument("--num_tasks", type=int, default=D.num_tasks, help="tasks the training set is split into")
    g.add_argument(
        "--split_strategy",
        choices=["class", "data", "domain"],
        default=D.split_strategy,
        help="class-incremental (disjoint classes), data-incremental (disjoint images) or domain-incremental",
    )
    g.add_argument(
        "--domain_order", nargs="+", default=D.domain_order, help="domain names in task order (domain split)"
    )
    g.add_argument(
        "--train_fraction",
        type=float,
        default=D.train_fraction,
        help="keep this seeded, class-stratified fraction of every task's training images (quick runs, benchmarks); test sets are kept whole",
    )
    g.add_argument("--num_workers", type=int, default=D.num_workers, help="DataLoader worker processes")
    g.add_argument(
        "--crop_size",
        type=int,
        default=D.crop_size,
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
    a = p.add_argument_group(AugmentationConfig.title)
    for name, default in AugmentationConfig.defaults().items():
        a.add_argument(f"--{name}", type=float, nargs="+", default=default, help=AUGMENTATION_HELP[name])


#: one line per augmentation option (each takes one value for every view or one per view)
AUGMENTATION_HELP = {
    "brightness": "colour jitter: brightness strength",
    "contrast": "colour jitter: contrast strength",
    "saturation": "colour jitter: saturation strength",
    "hue": "colour jitter: hue strength",
    "color_jitter_prob": "probability of the colour jitter",
    "grayscale_prob": "probability of converting to grayscale",
    "horizontal_flip_prob": "probability of a horizontal flip",
    "gaussian_prob": "probability of a Gaussian blur",
    "solarization_prob": "probability of solarisation",
    "min_scale": "smallest area fraction of the random resized crop",
    "max_scale": "largest area fraction of the random resized crop",
}


def _add_model_args(p: argparse.ArgumentParser) -> None:
    M = ModelConfig
    g = p.add_argument_group(M.title)
    g.add_argument(
        "--method", default=M.method, help="SSL method (--list_methods lists them); --method X --help shows its options"
    )
    g.add_argument(
        "--list_methods", action="store_true", help="print every method with its CaSSLe distillation family and exit"
    )
    g.add_argument("--strategy", default=M.strategy, help="continual strategy; --strategy X --help shows its options")
    g.add_argument("--encoder", "--backbone", dest="encoder", default=M.encoder, help="backbone network")
    g.add_argument("--base_width", type=int, default=M.base_width, help="override the encoder's first-stage width")
    g.add_argument(
        "--proj_hidden_dim", type=int, default=M.proj_hidden_dim, help="projector hidden width (default: the method's)"
    )
    g.add_argument(
        "--output_dim",
        "--proj_output_dim",
        dest="output_dim",
        type=int,
        default=M.output_dim,
        help="projector output width (default: the method's)",
    )


def _add_optim_args(p: argparse.ArgumentParser) -> None:
    O = OptimConfig
    g = p.add_argument_group(O.title)
    g.add_argument("--max_epochs", type=int, default=O.max_epochs, help="epochs per task")
    g.add_argument("--batch_size", type=int, default=O.batch_size, help="per device")
    g.add_argument("--lr", type=float, default=O.lr, help="base lr, scaled by global batch size / 256")
    g.add_argument("--classifier_lr", type=float, default=O.classifier_lr, help="lr of the online classifier")
    g.add_argument("--optimizer", choices=["sgd", "lars", "adamw"], default=O.optimizer, help="optimizer")
    g.add_argument("--lars", action="store_true", help="wrap SGD in LARS (same as --optimizer lars)")
    g.add_argument("--eta_lars", type=float, default=O.eta_lars, help="LARS trust coefficient")
    g.add_argument("--grad_clip_lars", action="store_true", help="LARS: clip the trust ratio at 1 (CaSSLe's flag)")
    g.add_argument("--momentum", type=float, default=O.momentum, help="SGD / LARS momentum")
    g.add_argument(
        "--exclude_bias_n_norm",
        action="store_true",
        help="no LARS adaptation or weight decay on biases and norm layers",
    )
    g.add_argument("--weight_decay", type=float, default=O.weight_decay, help="weight decay")
    g.add_argument(
        "--scheduler",
        choices=["warmup_cosine", "cosine", "step", "none"],
        default=O.scheduler,
        help="learning-rate schedule, per optimizer step, restarted every task",
    )
    g.add_argument("--warmup_epochs", type=float, default=O.warmup_epochs, help="linear warm-up (epochs)")
    g.add_argument("--warmup_start_lr", type=float, default=O.warmup_start_lr, help="lr at the start of the warm-up")
    g.add_argument("--min_lr", type=float, default=O.min_lr, help="lr at the end of the cosine")
    g.add_argument(
        "--lr_decay_steps",
        type=int,
        nargs="+",
        default=O.lr_decay_steps,
        help="--scheduler step: epochs where the lr drops 10x (default: 60%% and 80%% of --max_epochs)",
    )


def _add_trainer_args(p: argparse.ArgumentParser) -> None:
    T = TrainerConfig
    g = p.add_argument_group(T.title)
    g.add_argument("--precision", default=T.precision, help="32, 16 (16-mixed), bf16 (bf16-mixed)")
    g.add_argument(
        "--accelerator",
        default=T.accelerator,
        help="auto (the GPU where there is one, else the CPU), cpu or gpu (gpu on a machine without one stops at once: no silent CPU run)",
    )
    g.add_argument("--devices", default=T.devices, help="number of devices, or a comma list of ids (CaSSLe's --gpus)")
    g.add_argument("--gpus", dest="devices", help=argparse.SUPPRESS)
    g.add_argument("--num_nodes", type=int, default=T.num_nodes, help="machines (DDP)")
    g.add_argument("--sync_batchnorm", action="store_true", help="BatchNorm statistics over all devices")
    g.add_argument(
        "--channels_last",
        action="store_true",
        help="the network's weights in NHWC memory format (channels_last): faster convolutions with mixed precision "
        "on GPUs; on the CPU measured 0.85x the step time when idle, 1.00x when loaded (bench/README.md)",
    )
    g.add_argument(
        "--check_val_every_n_epoch", type=int, default=T.check_val_every_n_epoch, help="online-classifier validation"
    )
    g.add_argument("--log_every_n_steps", type=int, default=T.log_every_n_steps, help="logging interval in steps")
    g.add_argument("--no_progress_bar", action="store_true", help="no progress bar (batch jobs)")
    g.add_argument("--seed", type=int, default=T.seed, help="seeds the split, the weights and every augmentation")


def _add_continual_args(p: argparse.ArgumentParser) -> None:
    R = RunDirConfig
    g = p.add_argument_group(R.title)
    g.add_argument(
        "--task_idx",
        type=int,
        default=R.task_idx,
        help="first task to train (CaSSLe workflow, with --pretrained_model)",
    )
    g.add_argument(
        "--pretrained_model",
        default=R.pretrained_model,
        help="task checkpoint whose weights start --task_idx (a solo-learn / CaSSLe checkpoint: its backbone, "
        "which must fit --encoder)",
    )
    g.add_argument("--name", default=R.name, help="run name; default <method>-<strategy>-<dataset>")
    g.add_argument(
        "--checkpoint_dir",
        default=R.checkpoint_dir,
        help="run directory; default ./experiments/<name>. Rerunning the same command resumes it",
    )
    g.add_argument(
        "--save_checkpoint",
        action="store_true",
        help="accepted for CaSSLe compatibility: task checkpoints are always written",
    )
    g.add_argument(
        "--checkpoint_frequency",
        type=int,
        default=R.checkpoint_frequency,
        help="epochs between mid-task resume checkpoints",
    )
    E = EvalConfig
    e = p.add_argument_group(E.title)
    e.add_argument("--probes", nargs="+", default=list(E.probes), help="knn, ridge, linear; 'none' to skip")
    e.add_argument("--knn_k", type=int, default=E.knn_k, help="neighbours of the kNN probe")
    e.add_argument("--knn_temperature", type=float, default=E.knn_temperature, help="kNN vote temperature")
    e.add_argument("--eval_batch_size", type=int, default=E.eval_batch_size, help="batch size of feature extraction")
    e.add_argument("--no_baseline", action="store_true", help="skip the random-initialisation probes")
    L = LoggingConfig
    w = p.add_argument_group(L.title)
    w.add_argument("--wandb", action="store_true", help="log to Weights & Biases")
    w.add_argument("--project", default=L.project, help="WandB project")
    w.add_argument("--entity", default=L.entity, help="WandB entity")
    w.add_argument("--offline", action="store_true", help="WandB offline mode")
    w.add_argument("--tensorboard", action="store_true", help="also log to TensorBoard")


def build_parser(method_cls=None, strategy_cls=None) -> argparse.ArgumentParser:
    """The full parser; with classes given, their own arguments are added too."""
    p = _Parser(
        prog="main_continual.py",
        description="Continual self-supervised pretraining: every task in one process, a checkpoint and probes after each.",
        epilog=(
            "A method's or strategy's own options are listed only when it is named: "
            "main_continual.py --method X --strategy Y --help. --list_methods prints every method with its CaSSLe "
            "distillation family. With no arguments at all, main_continual.py runs the embedded demo (the README's "
            "first command)."
        ),
        formatter_class=HelpFormatter,
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


def parse_args(argv: Sequence[str] | None = None, check_machine: bool = True) -> argparse.Namespace:
    """Parse in two stages (method/strategy first), then validate the values.

    ``check_machine=False`` leaves out the checks of this machine's devices (a GPU for ``--accelerator gpu``), for
    a command validated here but run elsewhere (``job_launcher.py --mode slurm`` on a login node)."""
    from cassle.args.validate import resolve_method, resolve_strategy, validate_args

    pre = _Parser(add_help=False)
    pre.add_argument("--method", default="barlow_twins")
    pre.add_argument("--strategy", default="finetune")
    pre.add_argument("--list_methods", action="store_true")
    known, _ = pre.parse_known_args(argv)
    if known.list_methods:
        from cassle.methods.catalog import format_catalog

        print(format_catalog())
        raise SystemExit(0)
    method_cls = resolve_method(known.method)
    strategy_cls = resolve_strategy(known.strategy)
    args = build_parser(method_cls, strategy_cls).parse_args(argv)
    validate_args(args, machine=check_machine)
    return args
