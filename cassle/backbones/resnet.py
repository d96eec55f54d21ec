"""ResNet encoders with a controllable width.

Two families live here:

* :class:`ResNet` — the torchvision ResNet layout (``conv1``/``bn1``/``relu``/
  ``maxpool``/``layer1..4``/``avgpool``), built from torchvision's own
  ``BasicBlock`` and ``Bottleneck`` but with the stage widths derived from a
  ``base_width`` (``base_width * 2**i`` for stage ``i``). With the default width
  of 64 and the ImageNet stem its parameters have exactly the names and shapes
  of ``torchvision.models.resnet18/50(weights=None)`` without ``fc``.
* :class:`ResNet9` — the compact "ResNet-9" popularised by David Page's
  DAWNBench CIFAR-10 entry: a conv-bn-relu prep layer, then three stages of
  conv-bn-relu + 2×2 max-pool, the first and the last followed by a residual
  pair of conv-bn-relu layers.

Both pick their stem from the image size: images of at most
:data:`SMALL_IMAGE_MAX` pixels get the CIFAR stem (3×3 conv, stride 1, no
max-pool, ``maxpool`` is an ``nn.Identity``; :class:`ResNet` pads that conv by
2 pixels as the CaSSLe repository and solo-learn do, :class:`ResNet9` by 1);
larger images get the ImageNet stem (7×7 conv, stride 2, then a 3×3 stride-2
max-pool).

Every encoder maps ``B×3×S×S`` float images to ``B×num_features`` after global
average pooling and exposes ``.num_features``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

#: Largest image side (pixels) that still gets the CIFAR stem.
SMALL_IMAGE_MAX = 64

#: Block types understood by :class:`ResNet`, by name.
BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
}


def _check_positive_int(name: str, value: int) -> None:
    """Raise ``ValueError`` unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


#: zero padding of the CIFAR stem's 3×3 ``conv1`` in :class:`ResNet`: 2, as the CaSSLe repository and solo-learn
#: build their CIFAR ResNet-18/50 (a 32 px image gives a 34×34 first map); :class:`ResNet9` keeps 1
RESNET_CIFAR_PADDING = 2


def _make_stem(out_channels: int, image_size: int, cifar_padding: int = 1) -> tuple[nn.Conv2d, nn.Module]:
    """Return ``(conv1, maxpool)`` for the stem chosen by ``image_size``.

    Small images (``image_size <= SMALL_IMAGE_MAX``) get a 3×3 stride-1
    convolution (zero padding ``cifar_padding``) and no pooling; larger ones a
    7×7 stride-2 convolution followed by a 3×3 stride-2 max-pool (the ImageNet
    stem).
    """
    if image_size <= SMALL_IMAGE_MAX:
        conv = nn.Conv2d(3, out_channels, kernel_size=3, stride=1, padding=cifar_padding, bias=False)
        pool: nn.Module = nn.Identity()
    else:
        conv = nn.Conv2d(3, out_channels, kernel_size=7, stride=2, padding=3, bias=False)
        pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    return conv, pool


def _init_weights(module: nn.Module) -> None:
    """Kaiming-normal convolutions (fan-out, ReLU), BatchNorm weight 1 / bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class ResNet(nn.Module):
    """A torchvision-layout ResNet whose stage widths follow ``base_width``.

    Args:
        block: ``"basic"`` (ResNet-18/34) or ``"bottleneck"`` (ResNet-50/101).
        layers: number of blocks in each of the four stages, e.g. ``(2, 2, 2, 2)``.
        image_size: side of the (square) input images; selects the stem.
        base_width: channels of the stem and the first stage; stage ``i`` has
            ``base_width * 2**i`` planes (times 4 for bottleneck outputs).

    Attributes:
        num_features: size of the output feature vector
            (``8 * base_width * block.expansion``).
    """

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        image_size: int,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; valid choices: {sorted(BLOCKS)}")
        if len(layers) != 4 or any(isinstance(n, bool) or not isinstance(n, int) or n <= 0 for n in layers):
            raise ValueError(f"layers must be four positive integers, got {tuple(layers)!r}")
        _check_positive_int("image_size", image_size)
        _check_positive_int("base_width", base_width)

        block_cls = BLOCKS[block]
        self.base_width = base_width
        self.image_size = image_size
        self.inplanes = base_width

        self.conv1, self.maxpool = _make_stem(base_width, image_size, RESNET_CIFAR_PADDING)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block_cls, base_width, layers[0], stride=1)
        self.layer2 = self._make_layer(block_cls, base_width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block_cls, base_width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block_cls, base_width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features: int = base_width * 8 * block_cls.expansion
        _init_weights(self)

    def _make_layer(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        planes: int,
        blocks: int,
        stride: int,
    ) -> nn.Sequential:
        """Build one stage of ``blocks`` residual blocks with ``planes`` planes."""
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        # torchvision's Bottleneck computes its inner width as planes * base_width / 64,
        # so passing base_width=64 keeps the inner width equal to ``planes``.
        modules = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = out_channels
        modules.extend(block(self.inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``B×3×S×S`` images to ``B×num_features`` pooled features."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3×3 convolution (no bias), BatchNorm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Residual(nn.Module):
    """``x + f(x)`` with ``f`` two conv-bn-relu layers keeping the channel count."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.res1 = _conv_bn_relu(channels, channels)
        self.res2 = _conv_bn_relu(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x + res2(res1(x))``."""
        return x + self.res2(self.res1(x))


class ResNet9(nn.Module):
    """The DAWNBench-style ResNet-9 (prep, 3 stages, residuals after stages 1 and 3).

    Widths are ``base_width`` for the prep layer and ``2×, 4×, 8×`` for the three
    stages (64/128/256/512 by default). Each stage is conv-bn-relu followed by a
    2×2 max-pool; stages 1 and 3 add a :class:`Residual`. Features are globally
    average-pooled.

    The prep layer is ``conv1``/``bn1``/``relu``/``maxpool`` like :class:`ResNet`:
    a 3×3 stride-1 conv with no pooling for small images, a 7×7 stride-2 conv and
    a 3×3 stride-2 max-pool for large ones.

    Args:
        image_size: side of the (square) input images; selects the stem.
        base_width: width of the prep layer; stages are ``2×, 4×, 8×`` that.
    """

    def __init__(self, image_size: int, base_width: int = 64) -> None:
        super().__init__()
        _check_positive_int("image_size", image_size)
        _check_positive_int("base_width", base_width)
        self.base_width = base_width
        self.image_size = image_size
        w = base_width

        self.conv1, self.maxpool = _make_stem(w, image_size)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(_conv_bn_relu(w, 2 * w), nn.MaxPool2d(2), Residual(2 * w))
        self.layer2 = nn.Sequential(_conv_bn_relu(2 * w, 4 * w), nn.MaxPool2d(2))
        self.layer3 = nn.Sequential(_conv_bn_relu(4 * w, 8 * w), nn.MaxPool2d(2), Residual(8 * w))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features: int = 8 * w
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``B×3×S×S`` images to ``B×num_features`` pooled features."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.avgpool(x), 1)


def resnet18(image_size: int, base_width: int = 64) -> ResNet:
    """ResNet-18 (basic blocks, 2-2-2-2)."""
    return ResNet("basic", (2, 2, 2, 2), image_size, base_width)


def resnet50(image_size: int, base_width: int = 64) -> ResNet:
    """ResNet-50 (bottleneck blocks, 3-4-6-3)."""
    return ResNet("bottleneck", (3, 4, 6, 3), image_size, base_width)


def resnet9(image_size: int, base_width: int = 64) -> ResNet9:
    """DAWNBench-style ResNet-9."""
    return ResNet9(image_size, base_width)
