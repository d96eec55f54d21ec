"""The component configs, one frozen dataclass per component (see :mod:`cassle.config`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from .base import DEFAULT_MAX_EPOCHS, _Component, _finite, _positive_int


@dataclass(frozen=True)
class DataConfig(_Component):
    """What the data module reads: dataset, task split, loaders (``num_views``/``return_raw`` are derived from
    the method and strategy at start-up)."""

    title: ClassVar[str] = "data"
    dataset: str = "digits"
    data_dir: str | None = None
    no_labels: bool = False
    num_tasks: int = 5
    split_strategy: str = "class"
    domain_order: tuple[str, ...] | None = None
    train_fraction: float = 1.0
    num_workers: int = 2
    crop_size: int | None = None
    gpu_augment: bool = False
    dali: bool = False
    batch_size: int = 256
    seed: int = 5
    num_views: int = 2
    return_raw: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        _positive_int("num_tasks", self.num_tasks)
        _positive_int("batch_size", self.batch_size)
        _positive_int("num_views", self.num_views)
        if self.split_strategy not in ("class", "data", "domain"):
            raise ValueError(f"--split_strategy must be class, data or domain, got {self.split_strategy!r}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"--train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.num_workers < 0:
            raise ValueError(f"--num_workers must be a finite value >= 0, got {self.num_workers}")
        if self.crop_size is not None and self.crop_size < 4:
            raise ValueError(f"--crop_size must be at least 4, got {self.crop_size}")
        if self.gpu_augment and self.dali:
            raise ValueError(
                "--gpu_augment and --dali are exclusive: --gpu_augment for in-memory datasets, --dali for folder "
                "datasets"
            )


@dataclass(frozen=True)
class AugmentationConfig(_Component):
    """The augmentation parameters (CaSSLe's CIFAR recipe), one value shared by every view or one per view
    (solarization only on the second view, as BYOL). The one home of these defaults."""

    title: ClassVar[str] = "augmentations (one value, or one per view)"
    brightness: tuple[float, ...] = (0.4,)
    contrast: tuple[float, ...] = (0.4,)
    saturation: tuple[float, ...] = (0.2,)
    hue: tuple[float, ...] = (0.1,)
    color_jitter_prob: tuple[float, ...] = (0.8,)
    grayscale_prob: tuple[float, ...] = (0.2,)
    horizontal_flip_prob: tuple[float, ...] = (0.5,)
    gaussian_prob: tuple[float, ...] = (0.0,)
    solarization_prob: tuple[float, ...] = (0.0, 0.2)
    min_scale: tuple[float, ...] = (0.08,)
    max_scale: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        for name in self.keys():
            values = getattr(self, name)
            if not values:
                raise ValueError(f"--{name} needs at least one value")
            for v in values:
                if not math.isfinite(v):
                    raise ValueError(f"--{name} must be finite, got {v}")
                if name.endswith("_prob") and not 0.0 <= v <= 1.0:
                    raise ValueError(f"--{name} is a probability: give values in [0, 1], got {v}")
                if name in ("brightness", "contrast", "saturation") and v < 0:
                    raise ValueError(f"--{name} must be >= 0, got {v}")
                if name == "hue" and not 0.0 <= v <= 0.5:
                    raise ValueError(f"--hue must be in [0, 0.5], got {v}")
        lo, hi = list(self.min_scale), list(self.max_scale)
        n = max(len(lo), len(hi))
        for a, b in zip(lo * n if len(lo) == 1 else lo, hi * n if len(hi) == 1 else hi):
            if not 0.0 < a <= b <= 1.0:
                raise ValueError(f"need 0 < --min_scale <= --max_scale <= 1, got min_scale {a}, max_scale {b}")


@dataclass(frozen=True)
class ModelConfig(_Component):
    """Encoder and heads. ``proj_hidden_dim`` / ``output_dim`` ``None``: the method's published sizes;
    ``crop_size`` ``None``: the dataset's image size (set at start-up)."""

    title: ClassVar[str] = "model"
    method: str = "barlow_twins"
    strategy: str = "finetune"
    encoder: str = "resnet18"
    base_width: int | None = None
    crop_size: int | None = None
    num_classes: int = 0
    proj_hidden_dim: int | None = None
    output_dim: int | None = None

    def __post_init__(self) -> None:
        _positive_int("base_width", self.base_width)
        for name in ("proj_hidden_dim", "output_dim"):  # 0: no projector (MAE); >= 1 for a projector is checked
            value = getattr(self, name)  # with the method class (cassle.args.validate.check_ranges)
            if value is not None and value < 0:
                raise ValueError(f"--{name} must be at least 1, got {value}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {self.num_classes}")


OPTIMIZERS = ("sgd", "lars", "adamw")
SCHEDULERS = ("warmup_cosine", "cosine", "step", "none")


@dataclass(frozen=True)
class OptimConfig(_Component):
    """Optimizer and learning-rate schedule of the SSL training (per task). ``lars`` is the CaSSLe spelling of
    ``optimizer='lars'``; :attr:`optimizer_name` is the one in effect."""

    title: ClassVar[str] = "optimisation"
    max_epochs: int = DEFAULT_MAX_EPOCHS
    batch_size: int = 256
    lr: float = 0.3
    classifier_lr: float = 0.1
    optimizer: str = "sgd"
    lars: bool = False
    eta_lars: float = 0.02
    grad_clip_lars: bool = False
    exclude_bias_n_norm: bool = False
    weight_decay: float = 1e-4
    momentum: float = 0.9
    scheduler: str = "warmup_cosine"
    warmup_epochs: float = 10.0
    warmup_start_lr: float = 0.0
    min_lr: float = 0.0
    lr_decay_steps: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        opt = self.optimizer.lower()
        if opt not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.lars and opt == "adamw":
            raise ValueError("lars=True wraps SGD only; it cannot be combined with adamw")
        if self.scheduler.lower() not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        _positive_int("max_epochs", self.max_epochs)
        _positive_int("batch_size", self.batch_size)
        _finite("lr", self.lr, 0.0, strict=True)
        _finite("eta_lars", self.eta_lars, 0.0, strict=True)
        for name in ("classifier_lr", "weight_decay", "warmup_epochs", "warmup_start_lr", "min_lr"):
            _finite(name, getattr(self, name), 0.0)
        if not (math.isfinite(self.momentum) and 0.0 <= self.momentum < 1.0):
            raise ValueError(f"--momentum is SGD / LARS momentum: give a value in [0, 1), got {self.momentum}")
        if self.lr_decay_steps is not None and (not self.lr_decay_steps or min(self.lr_decay_steps) < 1):
            raise ValueError(f"--lr_decay_steps must be epochs >= 1, got {list(self.lr_decay_steps)}")

    @property
    def optimizer_name(self) -> str:
        return "lars" if self.lars else self.optimizer.lower()


@dataclass(frozen=True)
class ReplayConfig(_Component):
    """Replay memory of the replay strategies and online continual learning."""

    title: ClassVar[str] = "replay and online learning"
    online: bool = False
    mb_passes: int = 1
    buffer_type: str | None = None
    mem_size: int = 2000
    replay_batch_size: int | None = None
    seed: int = 5

    def __post_init__(self) -> None:
        _positive_int("mb_passes", self.mb_passes)
        _positive_int("replay_batch_size", self.replay_batch_size)


#: ``--accelerator`` values (``cuda`` is ``gpu``; ``auto``: the GPU when one is visible, else the CPU)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda")


@dataclass(frozen=True)
class TrainerConfig(_Component):
    """The Lightning trainer of every task."""

    title: ClassVar[str] = "trainer"
    precision: str = "32"
    accelerator: str = "auto"
    devices: Any = "1"
    num_nodes: int = 1
    sync_batchnorm: bool = False
    channels_last: bool = False
    check_val_every_n_epoch: int = 1
    log_every_n_steps: int = 10
    no_progress_bar: bool = False
    seed: int = 5
    max_epochs: int = DEFAULT_MAX_EPOCHS

    def __post_init__(self) -> None:
        if self.accelerator not in ACCELERATORS:
            raise ValueError(f"--accelerator must be one of {', '.join(ACCELERATORS)}, got {self.accelerator!r}")
        for name in ("num_nodes", "check_val_every_n_epoch", "log_every_n_steps", "max_epochs"):
            _positive_int(name, getattr(self, name))
        if self.seed < 0:
            raise ValueError(f"--seed must be a finite value >= 0, got {self.seed}")


@dataclass(frozen=True)
class RunDirConfig(_Component):
    """Where the run lives and where it starts."""

    title: ClassVar[str] = "continual run"
    task_idx: int = 0
    pretrained_model: str | None = None
    name: str | None = None
    checkpoint_dir: str | None = None
    save_checkpoint: bool = False
    checkpoint_frequency: int = 1

    def __post_init__(self) -> None:
        _positive_int("checkpoint_frequency", self.checkpoint_frequency)
        if self.task_idx < 0:
            raise ValueError(f"--task_idx must be >= 0, got {self.task_idx}")


@dataclass(frozen=True)
class EvalConfig(_Component):
    """The probes fit on frozen features after every task."""

    title: ClassVar[str] = "evaluation after each task"
    probes: tuple[str, ...] = ("knn", "ridge")
    knn_k: int = 20
    knn_temperature: float = 0.07
    eval_batch_size: int = 256
    no_baseline: bool = False

    def __post_init__(self) -> None:
        _positive_int("knn_k", self.knn_k)
        _positive_int("eval_batch_size", self.eval_batch_size)
        _finite("knn_temperature", self.knn_temperature, 0.0, strict=True)


@dataclass(frozen=True)
class LoggingConfig(_Component):
    title: ClassVar[str] = "logging"
    wandb: bool = False
    project: str = "cassle"
    entity: str | None = None
    offline: bool = False
    tensorboard: bool = False


COMPONENTS: dict[str, type[_Component]] = {
    "data": DataConfig,
    "augmentation": AugmentationConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "replay": ReplayConfig,
    "trainer": TrainerConfig,
    "rundir": RunDirConfig,
    "eval": EvalConfig,
    "logging": LoggingConfig,
}
