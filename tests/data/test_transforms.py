"""SSL view augmentations and the evaluation transform."""

from __future__ import annotations

import pytest
import torch

from cassle.config import AugmentationConfig
from cassle.data.transforms import (
    AUGMENTATION_DEFAULTS,
    MultiViewTransform,
    TwoViewTransform,
    build_eval_transform,
    build_multiview_transform,
    build_view_transform,
    gaussian_kernel_size,
    per_view_values,
)

HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
ID = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
NO_COLOUR = dict(color_jitter_prob=0.0, grayscale_prob=0.0)


def _ramp(size: int = 64) -> torch.Tensor:
    """3×size×size uint8 image: channel 0 = 4·x, channel 1 = 4·y, channel 2 = 0."""
    x = torch.arange(size).repeat(size, 1) * 4
    return torch.stack([x, x.T, torch.zeros_like(x)]).to(torch.uint8)


def test_output_shape_dtype_and_range() -> None:
    torch.manual_seed(0)
    t = build_view_transform(8, *HALF, gaussian_prob=0.5, solarization_prob=0.5)
    img = torch.randint(0, 256, (3, 12, 12), dtype=torch.uint8)
    for _ in range(20):
        out = t(img)
        assert out.shape == (3, 8, 8) and out.dtype == torch.float32
        assert out.min() >= -1.0 - 1e-6 and out.max() <= 1.0 + 1e-6
    assert img.dtype == torch.uint8 and img.shape == (3, 12, 12)  # input untouched


def test_grayscale_input_becomes_three_equal_channels() -> None:
    torch.manual_seed(0)
    img = torch.randint(0, 256, (1, 12, 12), dtype=torch.uint8)
    out = build_view_transform(10, *ID, **NO_COLOUR)(img)
    assert out.shape == (3, 10, 10)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    assert build_view_transform(10, *ID)(img).shape == (3, 10, 10)  # with colour jitter too


def test_asymmetric_solarization_on_constant_image() -> None:
    torch.manual_seed(0)
    aug = AugmentationConfig(solarization_prob=(0.0, 1.0), **{k: (v,) for k, v in NO_COLOUR.items()})
    t = build_multiview_transform(aug, 6, 2, *ID)
    img = torch.full((3, 12, 12), 200, dtype=torch.uint8)
    for _ in range(10):
        v1, v2 = t(img)
        assert torch.allclose(v1, torch.full_like(v1, 200 / 255))
        assert torch.allclose(v2, torch.full_like(v2, 55 / 255))  # 255 - 200: always solarized


def test_per_view_values_shared_per_view_and_errors() -> None:
    vals = per_view_values(AugmentationConfig.from_flat({"brightness": [0.8], "min_scale": [0.2, 0.5], "hue": 0.05}), 2)
    assert [v["brightness"] for v in vals] == [0.8, 0.8]
    assert [v["min_scale"] for v in vals] == [0.2, 0.5]
    assert [v["hue"] for v in vals] == [0.05, 0.05]
    # a missing key takes the one set of defaults, per view (solarization on the second view only)
    assert [v["solarization_prob"] for v in vals] == list(AUGMENTATION_DEFAULTS["solarization_prob"]) == [0.0, 0.2]
    with pytest.raises(ValueError, match=r"solarization_prob has 3 values.*2 views"):
        per_view_values(AugmentationConfig(solarization_prob=(0.0, 0.1, 0.2)), 2)
    with pytest.raises(ValueError, match="crop_size"):
        build_multiview_transform(AugmentationConfig(), None, 2, *ID)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="AugmentationConfig"):
        per_view_values({"brightness": [0.8]}, 2)  # type: ignore[arg-type]  (the old flat-dict call)
    with pytest.raises(ValueError, match="min_scale"):
        build_view_transform(8, *ID, min_scale=0.9, max_scale=0.5)
    with pytest.raises(ValueError, match="grayscale_prob"):
        build_view_transform(8, *ID, grayscale_prob=1.5)


def test_per_view_values_default_solarization_for_any_view_count() -> None:
    """The 2-view default ``solarization_prob=(0.0, 0.2)``: the first view's value, then the last one."""
    for n, expected in ((1, [0.0]), (2, [0.0, 0.2]), (4, [0.0, 0.2, 0.2, 0.2])):
        assert [v["solarization_prob"] for v in per_view_values(AugmentationConfig(), n)] == expected
    with pytest.raises(ValueError, match=r"solarization_prob has 2 values.*3 views"):
        per_view_values(AugmentationConfig(solarization_prob=(0.1, 0.2)), 3)  # not the default: one per view


def test_multiview_returns_list_of_views() -> None:
    mv = build_multiview_transform(AugmentationConfig(), 8, 3, *ID)
    assert isinstance(mv, MultiViewTransform) and mv.num_views == 3
    views = mv(torch.randint(0, 256, (3, 12, 12), dtype=torch.uint8))
    assert isinstance(views, list) and len(views) == 3 and all(v.shape == (3, 8, 8) for v in views)
    two = TwoViewTransform(lambda x: x + 1)
    assert two(torch.zeros(1)) == [torch.ones(1), torch.ones(1)]


def test_flip_rate_is_about_half() -> None:
    torch.manual_seed(1)
    t = build_view_transform(16, *ID, min_scale=1.0, max_scale=1.0, **NO_COLOUR)
    img = _ramp()
    flipped = 0
    n = 400
    for _ in range(n):
        x = t(img)[0]
        flipped += int(x[:, 0].mean() > x[:, -1].mean())
    assert 0.42 < flipped / n < 0.58


def _crop_area(out: torch.Tensor, size: int = 64, crop: int = 16) -> float:
    """Estimate the crop's area fraction from the slope of the coordinate ramps."""
    o = out * 255 / 4
    w = (o[0][:, 11] - o[0][:, 4]).mean() / 7 * crop
    h = (o[1][11, :] - o[1][4, :]).mean() / 7 * crop
    return float(w * h) / size**2


def test_crop_area_follows_scale() -> None:
    torch.manual_seed(2)
    img = _ramp()
    fixed = build_view_transform(16, *ID, min_scale=0.25, max_scale=0.25, horizontal_flip_prob=0.0, **NO_COLOUR)
    a = torch.tensor([_crop_area(fixed(img)) for _ in range(100)])
    assert (a - 0.25).abs().max() < 0.03
    ranged = build_view_transform(16, *ID, min_scale=0.2, max_scale=0.6, horizontal_flip_prob=0.0, **NO_COLOUR)
    a = torch.tensor([_crop_area(ranged(img)) for _ in range(200)])
    assert a.min() > 0.2 - 0.03 and a.max() < 0.6 + 0.03
    assert a.std() > 0.05  # spread over the range, not a fixed crop


def test_augmentation_is_seeded_by_global_rng() -> None:
    t = build_view_transform(8, *ID, gaussian_prob=0.5, solarization_prob=0.5)
    img = torch.randint(0, 256, (3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(11)
    a = [t(img) for _ in range(3)]
    torch.manual_seed(11)
    b = [t(img) for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], a[1])


def test_gaussian_kernel_size_odd_ten_percent() -> None:
    assert gaussian_kernel_size(224) == 23
    assert gaussian_kernel_size(32) == 3
    assert all(gaussian_kernel_size(s) % 2 == 1 for s in range(8, 300, 7))


def test_eval_transform_small_and_large() -> None:
    small = torch.randint(0, 256, (1, 12, 12), dtype=torch.uint8)
    t = build_eval_transform(16, *HALF, image_size=12)
    out = t(small)
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    assert torch.equal(out, t(small))  # deterministic
    same = build_eval_transform(12, *ID, image_size=12)(small)
    assert torch.allclose(same[0], small[0].float() / 255)  # no resize when already crop size
    big = torch.randint(0, 256, (3, 80, 100), dtype=torch.uint8)
    t = build_eval_transform(32, *ID, image_size=None)
    out = t(big)
    assert out.shape == (3, 32, 32)
    # Resize(37) keeps the aspect ratio, then centre crop: a centred constant patch survives
    big2 = torch.zeros(3, 80, 80, dtype=torch.uint8)
    big2[:, 20:60, 20:60] = 255
    out = build_eval_transform(32, *ID, image_size=80)(big2)
    assert out[:, 12:20, 12:20].min() > 0.95 and out[:, 0, 0].max() < 0.05
