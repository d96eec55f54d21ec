"""Encoders: ResNets (standard, wide, slim), ResNet-9 and ViTs.

``build_backbone(name, image_size, base_width=None)`` returns an ``nn.Module``
that maps ``B×3×S×S`` images to ``B×num_features`` and has ``.num_features``.
``BACKBONES`` maps each name to a factory ``(image_size, base_width) -> nn.Module``.

Width variants differ only in their default ``base_width`` (the first-stage
width of ResNets, the embedding width of ViTs):

==================  ==========  ============
name                base width  num_features
==================  ==========  ============
resnet18            64          512
resnet50            64          2048
resnet9             64          512
wide_resnet18       128         1024
wide_resnet9        128         1024
slim_resnet18       20          160
slim_resnet9        21          168
vit_tiny            192         192
vit_small           384         384
==================  ==========  ============

An explicit ``base_width`` replaces the default (tests use 4–16).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from cassle.backbones.resnet import ResNet, ResNet9, resnet9, resnet18, resnet50
from cassle.backbones.vit import VisionTransformer, patch_size_for, vit_small, vit_tiny

#: Default first-stage width of each ResNet variant.
WIDE_BASE_WIDTH = 128
SLIM_RESNET18_BASE_WIDTH = 20
SLIM_RESNET9_BASE_WIDTH = 21

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "resnet9": resnet9,
    "wide_resnet18": partial(resnet18, base_width=WIDE_BASE_WIDTH),
    "wide_resnet9": partial(resnet9, base_width=WIDE_BASE_WIDTH),
    "slim_resnet18": partial(resnet18, base_width=SLIM_RESNET18_BASE_WIDTH),
    "slim_resnet9": partial(resnet9, base_width=SLIM_RESNET9_BASE_WIDTH),
    "vit_tiny": vit_tiny,
    "vit_small": vit_small,
}


def build_backbone(name: str, image_size: int, base_width: int | None = None) -> nn.Module:
    """Build the encoder ``name`` for square images of side ``image_size``.

    Args:
        name: a key of :data:`BACKBONES`.
        image_size: input side in pixels; picks the ResNet stem (CIFAR stem for
            ``<= 64`` px) or the ViT patch size.
        base_width: overrides the first-stage width (ResNets; later stages double)
            or the embedding width (ViTs); ``None`` keeps the variant's default.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names), or an
            invalid ``image_size`` / ``base_width``.
    """
    if name not in BACKBONES:
        valid = ", ".join(sorted(BACKBONES))
        raise ValueError(f"unknown backbone {name!r}; valid choices: {valid}")
    factory = BACKBONES[name]
    if base_width is None:
        return factory(image_size=image_size)
    return factory(image_size=image_size, base_width=base_width)


__all__ = [
    "BACKBONES",
    "ResNet",
    "ResNet9",
    "VisionTransformer",
    "build_backbone",
    "patch_size_for",
]
