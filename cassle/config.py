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
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

#: a declared argument: ``(type, default, help)`` or ``(type, default, help, choices)``
ArgSpec = tuple

#: ``--max_epochs`` of ``main_continual.py`` (CaSSLe's CIFAR-100 setting); ``--online`` runs use 1
DEFAULT_MAX_EPOCHS = 500

#: keys earlier versions wrote to ``args.json`` under another name (CaSSLe's spellings)
LEGACY_KEYS = {"backbone": "encoder", "gpus": "devices", "proj_output_dim": "output_dim"}


def _tuple(value: Any) -> tuple[float, ...]:
    """One value or a list of values (one per view) as a tuple of floats."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return tuple(float(v) for v in values)


def _opt(conv):
    return lambda v: None if v is None else conv(v)


def _bool(v: Any) -> bool:
    if isinstance(v, str):
        if v.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if v.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"not a boolean: {v!r}")
    return bool(v)


def _int(v: Any) -> int:
    if isinstance(v, float) and not v.is_integer():
        raise ValueError(f"not an integer: {v!r}")
    return int(v)


def _str_list(v: Any) -> tuple[str, ...] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return tuple(x for x in v.split(",") if x)
    return tuple(str(x) for x in v)


_CONVERTERS = {
    "bool": _bool,
    "int": _int,
    "float": float,
    "str": str,
    "int | None": _opt(_int),
    "float | None": _opt(float),
    "str | None": _opt(str),
    "tuple[float, ...]": _tuple,
    "tuple[str, ...] | None": _str_list,
    "tuple[str, ...]": lambda v: _str_list(v) or (),
    "tuple[int, ...] | None": lambda v: None if v is None else tuple(_int(x) for x in v),
    "tuple[float, ...] | None": lambda v: None if v is None else _tuple(v),
    "Any": lambda v: v,
}


class _Component:
    """``from_flat`` / ``to_flat`` for a component dataclass (its fields are ``--flag`` names)."""

    #: the argument group's title on the command line
    title: ClassVar[str] = ""

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]):
        """The component from a flat mapping: its keys converted to their types, missing ones at the defaults;
        other keys are ignored. A value that cannot be converted raises ``ValueError`` naming the key."""
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in flat:
                continue
            conv = _CONVERTERS[f.type] if isinstance(f.type, str) else f.type
            try:
                kwargs[f.name] = conv(flat[f.name])
            except (TypeError, ValueError) as e:
                raise ValueError(f"--{f.name}: {flat[f.name]!r} is not a valid {f.type} ({e})") from None
        return cls(**kwargs)

    def to_flat(self) -> dict[str, Any]:
        """``--flag -> value`` with tuples as lists (the JSON form of ``args.json``)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return cls().to_flat()


def _positive_int(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"--{name} must be at least 1, got {value}")


def _finite(name: str, value: float, low: float | None = None, strict: bool = False) -> None:
    ok = math.isfinite(value) and (low is None or (value > low if strict else value >= low))
    if not ok:
        sign = ">" if strict else ">="
        raise ValueError(f"--{name} must be a finite value{f' {sign} {low:g}' if low is not None else ''}, got {value}")


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
        for name in ("classifier_lr", "weight_decay", "warmup_epochs", "warmup_start_lr", "min_lr"):
            _finite(name, getattr(self, name), 0.0)

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


@dataclass(frozen=True)
class TrainerConfig(_Component):
    """The Lightning trainer of every task."""

    title: ClassVar[str] = "trainer"
    precision: str = "32"
    accelerator: str = "auto"
    devices: Any = "1"
    num_nodes: int = 1
    sync_batchnorm: bool = False
    check_val_every_n_epoch: int = 1
    log_every_n_steps: int = 10
    no_progress_bar: bool = False
    seed: int = 5
    max_epochs: int = DEFAULT_MAX_EPOCHS

    def __post_init__(self) -> None:
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
