"""Tests for cassle.backbones: shapes, widths, stems, ViT patching, errors, gradients."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from cassle.backbones import BACKBONES, build_backbone, patch_size_for
from cassle.backbones.vit import heads_for

RESNETS = [n for n in BACKBONES if "resnet" in n]
VITS = [n for n in BACKBONES if n.startswith("vit")]


def _meta_build(name: str, image_size: int = 32, base_width: int | None = None) -> nn.Module:
    """Build on the meta device: shapes and counts without allocating weights."""
    with torch.device("meta"):
        return build_backbone(name, image_size, base_width)


def _num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_registry_has_all_names() -> None:
    assert set(BACKBONES) == {
        "resnet18",
        "resnet50",
        "resnet9",
        "wide_resnet18",
        "wide_resnet9",
        "slim_resnet18",
        "slim_resnet9",
        "vit_tiny",
        "vit_small",
    }


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_maps_images_to_features(name: str) -> None:
    torch.manual_seed(0)
    model = build_backbone(name, image_size=16, base_width=4)
    x = torch.randn(2, 3, 16, 16)
    out = model(x)
    assert out.shape == (2, model.num_features)
    assert torch.isfinite(out).all()
    expected = 4 if name.startswith("vit") else 4 * 8 * (4 if name == "resnet50" else 1)
    assert model.num_features == expected
    # distinct inputs give distinct features
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize(
    ("name", "features"),
    [
        ("resnet18", 512),
        ("resnet50", 2048),
        ("resnet9", 512),
        ("wide_resnet18", 1024),
        ("wide_resnet9", 1024),
        ("slim_resnet18", 20 * 8),
        ("slim_resnet9", 21 * 8),
        ("vit_tiny", 192),
        ("vit_small", 384),
    ],
)
def test_default_num_features(name: str, features: int) -> None:
    model = _meta_build(name)
    assert model.num_features == features


def test_resnet_defaults_match_torchvision_layout() -> None:
    for name, tv_fn in (("resnet18", torchvision.models.resnet18), ("resnet50", torchvision.models.resnet50)):
        ours = _meta_build(name, image_size=224)
        with torch.device("meta"):
            tv = tv_fn(weights=None)
        tv.fc = nn.Identity()
        ours_shapes = {k: v.shape for k, v in ours.state_dict().items()}
        tv_shapes = {k: v.shape for k, v in tv.state_dict().items()}
        assert ours_shapes == tv_shapes


@pytest.mark.parametrize("name", RESNETS)
def test_cifar_stem_for_small_images(name: str) -> None:
    model = _meta_build(name, image_size=32)
    assert model.conv1.kernel_size == (3, 3)
    assert model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert not any(isinstance(m, nn.MaxPool2d) and m.kernel_size == 3 for m in model.modules())


@pytest.mark.parametrize("name", RESNETS)
def test_imagenet_stem_for_large_images(name: str) -> None:
    model = _meta_build(name, image_size=96)
    assert model.conv1.kernel_size == (7, 7)
    assert model.conv1.stride == (2, 2)
    assert isinstance(model.maxpool, nn.MaxPool2d)
    assert model.maxpool.stride == 2


@pytest.mark.parametrize("image_size", [8, 32])
def test_resnet18_cifar_stem_computes_what_the_cassle_and_solo_learn_resnet18_computes(image_size: int) -> None:
    """The references (CaSSLe's ``methods/base.py``, solo-learn) build the CIFAR ResNet-18 from torchvision's,
    with ``conv1 = Conv2d(3, 64, 3, stride 1, padding 2)``, no max-pool and no ``fc``: with the same weights ours
    gives the same features (ours padded by 1 before: a 32 px image gave a 32 x 32 map instead of 34 x 34)."""
    torch.manual_seed(0)
    ours = build_backbone("resnet18", image_size).eval()
    ref = torchvision.models.resnet18(weights=None)
    ref.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
    ref.maxpool, ref.fc = nn.Identity(), nn.Identity()
    ref.load_state_dict(ours.state_dict())
    ref.eval()
    x = torch.randn(2, 3, image_size, image_size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)
    assert ours.conv1.padding == (2, 2)
    assert build_backbone("resnet9", image_size).conv1.padding == (1, 1)  # our own encoder keeps its stem


def test_stem_threshold_is_64_pixels() -> None:
    assert _meta_build("resnet18", image_size=64).conv1.stride == (1, 1)
    assert _meta_build("resnet18", image_size=65).conv1.stride == (2, 2)


def test_resnet9_structure_and_large_image_forward() -> None:
    model = build_backbone("resnet9", image_size=72, base_width=4)
    residuals = [m for m in model.modules() if type(m).__name__ == "Residual"]
    assert len(residuals) == 2  # after stage 1 and stage 3
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] == [
        4,
        8,
        8,
        8,
        16,
        32,
        32,
        32,
    ]
    assert model(torch.randn(2, 3, 72, 72)).shape == (2, 32)


def test_base_width_scales_stages() -> None:
    model = _meta_build("resnet18", base_width=6)
    widths = [
        model.layer1[0].conv1.out_channels,
        model.layer2[0].conv1.out_channels,
        model.layer3[0].conv1.out_channels,
        model.layer4[0].conv1.out_channels,
    ]
    assert model.conv1.out_channels == 6
    assert widths == [6, 12, 24, 48]
    assert model.num_features == 48


@pytest.mark.parametrize(
    ("base", "wide", "slim"),
    [("resnet18", "wide_resnet18", "slim_resnet18"), ("resnet9", "wide_resnet9", "slim_resnet9")],
)
def test_width_variants_parameter_ratios(base: str, wide: str, slim: str) -> None:
    n_base = _num_params(_meta_build(base))
    assert _num_params(_meta_build(wide)) / n_base == pytest.approx(4.0, rel=0.25)
    assert _num_params(_meta_build(slim)) / n_base == pytest.approx(1 / 9, rel=0.25)


@pytest.mark.parametrize(
    ("image_size", "patch"),
    [(224, 16), (256, 16), (96, 8), (64, 8), (128, 8), (32, 4), (16, 4), (12, 4), (8, 2), (4, 2)],
)
def test_vit_patch_size_rule(image_size: int, patch: int) -> None:
    assert patch_size_for(image_size) == patch
    model = _meta_build("vit_tiny", image_size=image_size, base_width=6)
    assert model.patch_size == patch
    assert model.patch_embed.proj.kernel_size == (patch, patch)
    assert model.pos_embed.shape == (1, (image_size // patch) ** 2 + 1, 6)


@pytest.mark.parametrize("image_size", [100, 30, 7, 0, -32])
def test_vit_rejects_indivisible_or_bad_size(image_size: int) -> None:
    with pytest.raises(ValueError, match=str(image_size)):
        build_backbone("vit_small", image_size=image_size, base_width=4)


def test_vit_heads_divide_width() -> None:
    assert _meta_build("vit_tiny").num_heads == 3
    assert _meta_build("vit_small").num_heads == 6
    assert heads_for(4, 6) == 4 and heads_for(4, 3) == 2 and heads_for(5, 3) == 1
    model = _meta_build("vit_small", base_width=10)
    assert model.num_heads == 5 and 10 % model.num_heads == 0


def test_vit_blocks_and_patch_embed_accessible() -> None:
    model = _meta_build("vit_tiny", base_width=6)
    assert len(model.blocks) == 12
    assert isinstance(model.patch_embed.proj, nn.Conv2d)
    assert model.cls_token.shape == (1, 1, 6)


def test_vit_output_is_normalised_cls_token() -> None:
    torch.manual_seed(0)
    model = build_backbone("vit_tiny", image_size=16, base_width=8).eval()
    x = torch.randn(2, 3, 16, 16)
    tokens = model.prepare_tokens(x)
    for block in model.blocks:
        tokens = block(tokens)
    expected = model.norm(tokens)[:, 0]
    torch.testing.assert_close(model(x), expected)
    # final LayerNorm (unit weight, zero bias at init): zero mean per sample
    torch.testing.assert_close(model(x).mean(dim=1), torch.zeros(2), atol=1e-5, rtol=0)


def test_vit_accepts_other_divisible_sizes_via_interpolation() -> None:
    model = build_backbone("vit_tiny", image_size=16, base_width=4)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 4)  # multi-crop style small crop
    with pytest.raises(ValueError, match="not divisible"):
        model(torch.randn(1, 3, 10, 10))


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="resnet_1000") as info:
        build_backbone("resnet_1000", image_size=32)
    for name in BACKBONES:
        assert name in str(info.value)


@pytest.mark.parametrize("base_width", [0, -4])
def test_bad_base_width_raises(base_width: int) -> None:
    with pytest.raises(ValueError, match="base_width"):
        build_backbone("resnet18", image_size=16, base_width=base_width)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet9", "vit_tiny"])
def test_gradients_reach_first_layer(name: str) -> None:
    torch.manual_seed(0)
    model = build_backbone(name, image_size=16, base_width=4)
    model(torch.randn(2, 3, 16, 16)).pow(2).sum().backward()
    first = model.patch_embed.proj.weight if name.startswith("vit") else model.conv1.weight
    assert first.grad is not None
    assert first.grad.abs().sum() > 0
