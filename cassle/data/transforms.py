"""Per-sample augmentations on ``uint8`` ``C×H×W`` tensors (CPU, DataLoader workers).

The SSL view pipeline follows solo-learn / CaSSLe: random resized crop,
colour jitter (applied with a probability), random grayscale, Gaussian blur,
solarisation, horizontal flip, then conversion to float in ``[0, 1]`` and
normalisation. Grayscale (1-channel) inputs are repeated to 3 channels first,
so models always see 3 channels.

Seeding: these transforms draw from torch's RNG of the process that runs them.
With ``num_workers=0`` that is the main process' global RNG, which the task loop
seeds from ``--seed`` (``lightning.seed_everything(seed, workers=True)``); with
workers, each worker's RNG is seeded from the DataLoader's base seed, which the
:class:`~cassle.data.datamodule.ContinualDataModule` draws from a generator
seeded with ``seed + task`` (and Lightning's ``workers=True`` worker init).
So the augmentation stream is a function of the run's seed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torchvision.transforms import InterpolationMode, v2

from cassle.config import AugmentationConfig

#: Augmentation keys of the configuration; each value is a list of 1 or ``num_views`` values.
AUGMENTATION_KEYS: tuple[str, ...] = tuple(AugmentationConfig.keys())

#: The augmentation defaults (CaSSLe's CIFAR recipe), read from their home,
#: :class:`cassle.config.AugmentationConfig`: the command line's defaults and the values a missing key
#: takes. One value is shared by every view; a list gives one value per view (solarization only on the
#: second view, as BYOL).
AUGMENTATION_DEFAULTS: dict[str, tuple[float, ...]] = {
    name: getattr(AugmentationConfig, name) for name in AugmentationConfig.keys()
}


def default_augmentation(key: str, view: int = 0) -> float:
    """The default of ``key`` for view ``view`` (the last value when fewer values than views)."""
    values = AUGMENTATION_DEFAULTS[key]
    return float(values[min(view, len(values) - 1)])


#: Images at most this large (and held in memory) are resized, not centre-cropped, for evaluation.
SMALL_IMAGE_SIZE = 64


class ToThreeChannels(torch.nn.Module):
    """Repeat a 1-channel ``C×H×W`` (or ``B×C×H×W``) tensor to 3 channels; 3 channels pass through."""

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        c = img.shape[-3]
        if c == 3:
            return img
        if c == 1:
            return img.expand(*img.shape[:-3], 3, *img.shape[-2:]).contiguous()
        raise ValueError(f"expected an image with 1 or 3 channels, got {c} (shape {tuple(img.shape)})")


def gaussian_kernel_size(crop_size: int) -> int:
    """Odd Gaussian-blur kernel of about 10% of the crop size (at least 3)."""
    k = max(3, int(0.1 * crop_size))
    return k if k % 2 == 1 else k + 1


def _check_prob(name: str, p: float) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    return p


def build_view_transform(
    crop_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.2,
    hue: float = 0.1,
    color_jitter_prob: float = 0.8,
    grayscale_prob: float = 0.2,
    gaussian_prob: float = 0.0,
    solarization_prob: float = 0.0,
    horizontal_flip_prob: float = 0.5,
    min_scale: float = 0.08,
    max_scale: float = 1.0,
) -> v2.Compose:
    """The augmentation pipeline of one SSL view.

    Maps a ``uint8`` ``C×H×W`` tensor (C = 1 or 3) to a normalised
    ``float32`` ``3×crop_size×crop_size`` tensor.

    Raises:
        ValueError: a probability outside ``[0, 1]`` or a bad crop scale range.
    """
    if not 0.0 < float(min_scale) <= float(max_scale) <= 1.0:
        raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got min_scale={min_scale}, max_scale={max_scale}")
    for name, p in (
        ("color_jitter_prob", color_jitter_prob),
        ("grayscale_prob", grayscale_prob),
        ("gaussian_prob", gaussian_prob),
        ("solarization_prob", solarization_prob),
        ("horizontal_flip_prob", horizontal_flip_prob),
    ):
        _check_prob(name, p)
    steps: list[Callable[[Any], Any]] = [
        ToThreeChannels(),
        v2.RandomResizedCrop(
            crop_size,
            scale=(float(min_scale), float(max_scale)),
            interpolation=InterpolationMode.BICUBIC,
            antialias=True,
        ),
    ]
    if color_jitter_prob > 0:
        steps.append(
            v2.RandomApply([v2.ColorJitter(brightness, contrast, saturation, hue)], p=float(color_jitter_prob))
        )
    if grayscale_prob > 0:
        steps.append(v2.RandomGrayscale(p=float(grayscale_prob)))
    if gaussian_prob > 0:
        steps.append(
            v2.RandomApply([v2.GaussianBlur(gaussian_kernel_size(crop_size), sigma=(0.1, 2.0))], p=float(gaussian_prob))
        )
    if solarization_prob > 0:
        steps.append(v2.RandomSolarize(threshold=128, p=float(solarization_prob)))
    if horizontal_flip_prob > 0:
        steps.append(v2.RandomHorizontalFlip(p=float(horizontal_flip_prob)))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


class MultiViewTransform:
    """Apply each of several transforms to the same image; returns the list of views."""

    def __init__(self, transforms: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> None:
        if len(transforms) == 0:
            raise ValueError("MultiViewTransform needs at least one transform")
        self.transforms = list(transforms)

    @property
    def num_views(self) -> int:
        return len(self.transforms)

    def __call__(self, img: torch.Tensor) -> list[torch.Tensor]:
        return [t(img) for t in self.transforms]

    def __repr__(self) -> str:
        inner = ",\n".join(repr(t) for t in self.transforms)
        return f"{type(self).__name__}([\n{inner}\n])"


class TwoViewTransform(MultiViewTransform):
    """Two views, from two (possibly different) transforms; one transform is used twice."""

    def __init__(
        self,
        transform1: Callable[[torch.Tensor], torch.Tensor],
        transform2: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__([transform1, transform2 if transform2 is not None else transform1])


class ViewParams:
    """Validated augmentation parameters of one view: the keys of
    :data:`AUGMENTATION_KEYS`, missing ones taking
    :data:`AUGMENTATION_DEFAULTS` (as the per-sample path)."""

    brightness: float
    contrast: float
    saturation: float
    hue: float
    color_jitter_prob: float
    grayscale_prob: float
    gaussian_prob: float
    solarization_prob: float
    horizontal_flip_prob: float
    min_scale: float
    max_scale: float

    def __init__(self, **params: float) -> None:
        unknown = sorted(set(params) - set(AUGMENTATION_KEYS))
        if unknown:
            raise ValueError(f"unknown augmentation parameter(s) {unknown}; known: {list(AUGMENTATION_KEYS)}")
        p = {**{k: default_augmentation(k) for k in AUGMENTATION_KEYS}, **params}
        if not 0.0 < float(p["min_scale"]) <= float(p["max_scale"]) <= 1.0:
            raise ValueError(
                f"need 0 < min_scale <= max_scale <= 1, got min_scale={p['min_scale']}, max_scale={p['max_scale']}"
            )
        for name in ("brightness", "contrast", "saturation"):
            if float(p[name]) < 0:
                raise ValueError(f"{name} must be non-negative, got {p[name]}")
        if not 0.0 <= float(p["hue"]) <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {p['hue']}")
        for name in AUGMENTATION_KEYS:
            value = _check_prob(name, p[name]) if name.endswith("_prob") else float(p[name])
            setattr(self, name, value)

    def __repr__(self) -> str:
        return f"ViewParams({', '.join(f'{k}={v}' for k, v in vars(self).items())})"


def per_view_values(aug: AugmentationConfig, num_views: int) -> list[dict[str, float]]:
    """Resolve the augmentation parameters of ``aug`` into one parameter dict per view.

    Each field holds 1 value (shared by all views) or ``num_views`` values (one per view). A field at its
    default (:data:`AUGMENTATION_DEFAULTS`) takes :func:`default_augmentation` per view, so the 2-view
    default ``solarization_prob=(0.0, 0.2)`` gives ``[0.0]`` for 1 view and ``[0.0, 0.2, 0.2, 0.2]`` for 4.

    Raises:
        ValueError: a field whose length is neither 1 nor ``num_views``.
    """
    if isinstance(aug, Mapping):
        raise TypeError("per_view_values takes an AugmentationConfig: AugmentationConfig.from_flat(cfg) for a dict")
    if num_views < 1:
        raise ValueError(f"num_views must be at least 1, got {num_views}")
    views: list[dict[str, float]] = [{} for _ in range(num_views)]
    for key in AUGMENTATION_KEYS:
        values = [float(v) for v in getattr(aug, key)]
        if tuple(values) == AUGMENTATION_DEFAULTS[key]:  # the default: per view, its last value for further views
            values = [default_augmentation(key, i) for i in range(num_views)]
        if len(values) == 1:
            values = values * num_views
        elif len(values) != num_views:
            raise ValueError(
                f"augmentation option {key} has {len(values)} values {values}, but there are {num_views} views: "
                f"give 1 value (shared by all views) or {num_views} (one per view)"
            )
        for v, val in zip(views, values):
            v[key] = val
    return views


def build_multiview_transform(
    aug: AugmentationConfig, crop_size: int, num_views: int, mean: Sequence[float], std: Sequence[float]
) -> MultiViewTransform:
    """One :func:`build_view_transform` per view of ``aug`` (:func:`per_view_values`).

    ``crop_size`` is the output size; each field of ``aug`` holds one shared value or one value per view,
    e.g. ``solarization_prob=(0.0, 0.2)`` for BYOL's asymmetric views.
    """
    if crop_size is None:
        raise ValueError("the configuration has no crop_size: pass --crop_size (e.g. 32 for CIFAR, 224 for ImageNet)")
    return MultiViewTransform(
        [build_view_transform(int(crop_size), mean, std, **p) for p in per_view_values(aug, num_views)]
    )


def build_eval_transform(
    crop_size: int, mean: Sequence[float], std: Sequence[float], image_size: int | None = None
) -> v2.Compose:
    """Deterministic evaluation transform: resize (+ centre crop), float, normalise, 3 channels.

    Small in-memory images (``image_size`` ≤ 64 px, e.g. CIFAR, digits) are
    resized straight to ``crop_size`` (a no-op when they already have it);
    larger or variable-size images (``image_size`` ``None``) are resized to
    ``round(crop_size·256/224)`` on the short side and centre-cropped to ``crop_size``.
    """
    steps: list[Callable[[Any], Any]] = [ToThreeChannels()]
    if image_size is not None and image_size <= SMALL_IMAGE_SIZE:
        if image_size != crop_size:
            steps.append(v2.Resize((crop_size, crop_size), interpolation=InterpolationMode.BICUBIC, antialias=True))
    else:
        steps += [
            v2.Resize(round(crop_size * 256 / 224), interpolation=InterpolationMode.BICUBIC, antialias=True),
            v2.CenterCrop(crop_size),
        ]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)
