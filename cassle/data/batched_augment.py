"""Batched SSL view augmentation on the device (``--gpu_augment``).

:class:`BatchedAugment` maps a ``uint8`` batch ``B×C×H×W`` (C = 1 or 3, on any
device) to ``num_views`` normalised ``float32`` views ``B×3×S×S``, transforming
the whole batch at once with per-sample random parameters — no per-sample
Python loop. It follows the per-sample path of
:func:`cassle.data.transforms.build_view_transform` (same family, same
probabilities, same parameter ranges, asymmetric per-view parameters):

1. **random resized crop** — torchvision's algorithm (area fraction uniform in
   ``[min_scale, max_scale]``, log-uniform aspect ratio in ``[3/4, 4/3]``, 10
   attempts, then a centre-crop fallback), vectorised over the batch, and
   resampled with one ``grid_sample`` call (bilinear, border padding) through
   per-sample affine grids. The horizontal flip is folded into the same grid.
   (The per-sample path uses antialiased bicubic resizing; bilinear without
   antialiasing differs slightly when a crop is shrunk by a large factor.)
2. **colour jitter** with probability ``color_jitter_prob``: brightness,
   contrast, saturation and hue with per-sample factors drawn like
   torchvision's ``ColorJitter``, applied **in a random order per sample** (as
   torchvision does): at each of the 4 positions, each operation is applied to
   the samples whose permutation puts it there (index-select, not a loop over
   samples).
3. **grayscale** with probability ``grayscale_prob`` (ITU-R 601-2 luma).
4. **gaussian blur** with probability ``gaussian_prob``: per-sample sigma
   uniform in ``[0.1, 2.0]``, kernel size
   :func:`~cassle.data.transforms.gaussian_kernel_size`, reflect padding, as one
   grouped separable convolution.
5. **solarisation** with probability ``solarization_prob`` (pixels ≥ 128/255
   are inverted, the uint8 threshold of the per-sample path).
6. **horizontal flip** with probability ``horizontal_flip_prob`` (in step 1).
7. **normalisation** with the dataset's mean and std.

Randomness: every parameter is drawn on the CPU from one ``torch.Generator``
(seeded from the run's seed by the DataModule), then moved to the batch's
device, so the same seed gives the same augmentations on any device and the
device needs no generator of its own. The drawn tensors are ``B``-sized, so
drawing them on the CPU costs nothing next to the image work.

Replay strategies can call the same object on buffer samples (``uint8``
``B×C×H×W``) to augment replayed images like the current batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from cassle.config import AugmentationConfig
from cassle.data.transforms import ViewParams, gaussian_kernel_size, per_view_values

#: Colour-jitter operation ids, in the order their factors are stored.
_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = 0, 1, 2, 3
#: Sigma range of the Gaussian blur (as the per-sample path).
BLUR_SIGMA: tuple[float, float] = (0.1, 2.0)
#: Aspect-ratio range of the random resized crop (torchvision's default).
CROP_RATIO: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
#: Random resized crop attempts before the centre-crop fallback (torchvision's).
CROP_ATTEMPTS = 10


def _uniform(n: int, low: float | torch.Tensor, high: float | torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def _bernoulli(n: int, p: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) < p


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma ``B×1×…`` of an RGB batch ``B×3×…`` (torchvision's ITU-R 601-2 weights)."""
    return 0.2989 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def _shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of ``B×3×P`` in ``[0, 1]`` by per-sample ``shift`` (B,) turns (torchvision's hue).

    RGB → (hue ``h`` in sixths of a turn, ``min``, ``delta = max − min``), then
    back with the closed form ``channel = min + delta·clamp(2 − d, 0, 1)``,
    ``d`` the circular distance of ``h + s`` to 3 (period 6) with ``s = 3, 1, 5`` for R, G, B: saturation and value
    are kept, and every operation is elementwise on ``B×P`` planes (no gather,
    no per-sample loop; the 3-step loop is over colour channels).
    """
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    delta = maxc - minc
    # sector masks as floats (arithmetic blends vectorise better than torch.where on the CPU)
    m_r = (maxc == r).to(x.dtype)
    m_g = (maxc == g).to(x.dtype) * (1.0 - m_r)
    m_b = 1.0 - m_r - m_g
    num = m_r * (g - b) + m_g * (b - r) + m_b * (r - g)
    offset = 2.0 * m_g + 4.0 * m_b
    h6 = torch.addcdiv(offset, num, delta.clamp_min(1e-8)) + 6.0 * shift.view(-1, 1)  # in [-4, 8)
    h6 = h6 - 6.0 * torch.floor(h6 / 6.0)  # in [0, 6)
    out = torch.empty_like(x)
    for channel, s in enumerate((3.0, 1.0, 5.0)):
        u = h6 + s  # in [1, 11): circular distance to 3 is min(|u - 3|, |u - 9|)
        dist = torch.minimum((u - 3.0).abs_(), (u - 9.0).abs_())
        t = (2.0 - dist).clamp_(0.0, 1.0)
        torch.addcmul(minc, delta, t, out=out[:, channel])
    return out


def _adjust(x: torch.Tensor, op: int, factor: torch.Tensor) -> torch.Tensor:
    """One colour-jitter operation on ``B×3×H×W`` in ``[0, 1]`` with per-sample ``factor`` (B,).

    Works on the flattened ``B×3×(H·W)`` view: per-sample scalars broadcast
    over one trailing dimension, which vectorises far better on the CPU.
    """
    shape = x.shape
    n = shape[0]
    flat = x.reshape(n, 3, -1)
    if op == _BRIGHTNESS:
        out = flat * factor.view(n, 1, 1)
    elif op == _CONTRAST:
        mean = _gray(flat).mean(dim=(1, 2))
        out = torch.addcmul(((1.0 - factor) * mean).view(n, 1, 1), flat, factor.view(n, 1, 1))
    elif op == _SATURATION:
        gray = _gray(flat)
        out = torch.addcmul(gray, flat - gray, factor.view(n, 1, 1))
    else:
        return _shift_hue(flat, factor).view(shape)
    return out.clamp_(0.0, 1.0).view(shape)


class BatchedAugment(torch.nn.Module):
    """Multi-view SSL augmentation of a whole ``uint8`` batch at once, on the batch's device.

    Args:
        crop_size: output side length ``S``.
        mean, std: per-channel normalisation (3 values each).
        views: one parameter dict per view (keys of
            :data:`cassle.data.transforms.AUGMENTATION_KEYS`; missing keys take
            the per-sample path's defaults).
        seed: seed of the generator every random parameter is drawn from.

    Call it on a ``uint8`` tensor ``B×C×H×W`` (C = 1 or 3); it returns a list of
    ``len(views)`` ``float32`` tensors ``B×3×S×S`` on the input's device.
    """

    def __init__(
        self,
        crop_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        views: Sequence[Mapping[str, float]],
        seed: int = 0,
    ) -> None:
        super().__init__()
        if int(crop_size) < 1:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        if len(views) == 0:
            raise ValueError("BatchedAugment needs at least one view")
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need 3 values each (models see RGB), got {list(mean)} and {list(std)}")
        if any(float(s) <= 0 for s in std):
            raise ValueError(f"std values must be positive, got {list(std)}")
        self.crop_size = int(crop_size)
        self.views = [ViewParams(**dict(v)) for v in views]
        self.kernel_size = gaussian_kernel_size(self.crop_size)
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([float(s) for s in std]).view(1, 3, 1, 1), persistent=False)
        self.generator = torch.Generator()
        self.reseed(seed)

    @classmethod
    def from_config(
        cls,
        aug: AugmentationConfig,
        crop_size: int,
        num_views: int,
        mean: Sequence[float],
        std: Sequence[float],
        seed: int,
    ) -> BatchedAugment:
        """Build from the run's augmentation config, like :func:`~cassle.data.transforms.build_multiview_transform`."""
        if crop_size is None:
            raise ValueError("the configuration has no crop_size: pass --crop_size (e.g. 32 for CIFAR)")
        return cls(int(crop_size), mean, std, per_view_values(aug, num_views), seed=seed)

    @property
    def num_views(self) -> int:
        return len(self.views)

    def reseed(self, seed: int) -> None:
        """Restart the random stream from ``seed``."""
        self.seed = int(seed)
        self.generator.manual_seed(self.seed)

    # ------------------------------------------------------------ parameters
    def _crop_boxes(self, n: int, h: int, w: int, p: ViewParams) -> torch.Tensor:
        """Per-sample crop boxes ``(n, 4)`` = ``(top, left, height, width)`` in pixels (torchvision's algorithm)."""
        g = self.generator
        area = float(h * w)
        k = CROP_ATTEMPTS
        target = area * _uniform(n * k, p.min_scale, p.max_scale, g).view(n, k)
        log_r = _uniform(n * k, math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), g).view(n, k)
        ratio = torch.exp(log_r)
        cw = torch.round(torch.sqrt(target * ratio))
        ch = torch.round(torch.sqrt(target / ratio))
        ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
        first = torch.argmax(ok.to(torch.int8), dim=1, keepdim=True)  # first valid attempt (0 when none)
        any_ok = ok.any(dim=1)
        cw = cw.gather(1, first).squeeze(1)
        ch = ch.gather(1, first).squeeze(1)
        # fallback: the largest centre crop with the ratio clamped to the range
        in_ratio = w / h
        if in_ratio < CROP_RATIO[0]:
            fw, fh = float(w), float(round(w / CROP_RATIO[0]))
        elif in_ratio > CROP_RATIO[1]:
            fw, fh = float(round(h * CROP_RATIO[1])), float(h)
        else:
            fw, fh = float(w), float(h)
        cw = torch.where(any_ok, cw, torch.full_like(cw, fw))
        ch = torch.where(any_ok, ch, torch.full_like(ch, fh))
        u = torch.rand(n, 2, generator=g)
        top = torch.floor(u[:, 0] * (h - ch + 1))
        left = torch.floor(u[:, 1] * (w - cw + 1))
        top = torch.where(any_ok, top, torch.round((h - ch) / 2))
        left = torch.where(any_ok, left, torch.round((w - cw) / 2))
        return torch.stack((top, left, ch, cw), 1)

    def sample_params(self, n: int, h: int, w: int, view: int) -> dict[str, torch.Tensor]:
        """Draw the per-sample parameters of ``view`` for ``n`` images of ``h×w`` (CPU tensors).

        Keys: ``box`` (n, 4: top, left, height, width), ``flip``, ``jitter``,
        ``factors`` (n, 4: brightness, contrast, saturation, hue), ``order``
        (n, 4: a permutation of the 4 jitter operations), ``gray``, ``blur``,
        ``sigma``, ``solarize``.
        """
        p, g = self.views[view], self.generator
        box = self._crop_boxes(n, h, w, p)
        jitter = _bernoulli(n, p.color_jitter_prob, g)
        factors = torch.stack(
            (
                _uniform(n, max(0.0, 1 - p.brightness), 1 + p.brightness, g),
                _uniform(n, max(0.0, 1 - p.contrast), 1 + p.contrast, g),
                _uniform(n, max(0.0, 1 - p.saturation), 1 + p.saturation, g),
                _uniform(n, -p.hue, p.hue, g),
            ),
            1,
        )
        order = torch.argsort(torch.rand(n, 4, generator=g), dim=1)
        gray = _bernoulli(n, p.grayscale_prob, g)
        blur = _bernoulli(n, p.gaussian_prob, g)
        sigma = _uniform(n, BLUR_SIGMA[0], BLUR_SIGMA[1], g)
        solarize = _bernoulli(n, p.solarization_prob, g)
        flip = _bernoulli(n, p.horizontal_flip_prob, g)
        return dict(
            box=box,
            flip=flip,
            jitter=jitter,
            factors=factors,
            order=order,
            gray=gray,
            blur=blur,
            sigma=sigma,
            solarize=solarize,
        )

    # ------------------------------------------------------------ image ops
    def _crop_flip(self, x: torch.Tensor, box: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Resample each crop box to ``S×S`` (bilinear) with one affine grid; flipped boxes mirror x."""
        n, _, h, w = x.shape
        top, left, ch, cw = box.unbind(1)
        sx = cw / w
        sy = ch / h
        cx = (left + cw / 2) / w * 2 - 1
        cy = (top + ch / 2) / h * 2 - 1
        sx = torch.where(flip.to(sx.device), -sx, sx)  # the grid parameters are built on the CPU
        zeros = torch.zeros_like(sx)
        theta = torch.stack((torch.stack((sx, zeros, cx), 1), torch.stack((zeros, sy, cy), 1)), 1)
        theta = theta.to(device=x.device, dtype=x.dtype)
        grid = F.affine_grid(theta, [n, 3, self.crop_size, self.crop_size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    @staticmethod
    def _jitter(x: torch.Tensor, jitter: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """Colour jitter on the samples where ``jitter`` is set, each in its own operation order."""
        for pos in range(4):
            for op in range(4):
                idx = torch.nonzero(jitter & (order[:, pos] == op)).squeeze(1)
                if idx.numel() == 0:
                    continue
                idx_d = idx.to(x.device)
                x[idx_d] = _adjust(x.index_select(0, idx_d), op, factors[idx, op].to(x.device, x.dtype))
        return x

    def _blur(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Per-sample separable Gaussian blur (reflect padding) as one grouped convolution per axis."""
        n, c, h, w = x.shape
        k = self.kernel_size
        half = k // 2
        t = torch.arange(k, dtype=x.dtype, device=x.device) - half
        s = sigma.to(x.device, x.dtype).view(n, 1)
        kernel = torch.exp(-0.5 * (t.view(1, k) / s) ** 2)
        kernel = kernel / kernel.sum(1, keepdim=True)  # n×k
        kernel = kernel.repeat_interleave(c, 0)  # (n·c)×k
        y = x.reshape(1, n * c, h, w)
        pad_w = min(half, w - 1)
        pad_h = min(half, h - 1)
        if pad_w < half or pad_h < half:  # tiny images: reflect padding needs pad < size
            y = F.pad(y, (half, half, half, half), mode="replicate")
        else:
            y = F.pad(y, (half, half, half, half), mode="reflect")
        y = F.conv2d(y, kernel.view(n * c, 1, 1, k), groups=n * c)
        y = F.conv2d(y, kernel.view(n * c, 1, k, 1), groups=n * c)
        return y.view(n, c, h, w)

    def augment_view(
        self, images: torch.Tensor, view: int, params: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """One augmented view ``B×3×S×S`` (float32, normalised) of a ``uint8`` batch.

        ``images`` may also be the batch already converted to ``float32`` in ``[0, 1]``
        (what :meth:`forward` passes, to convert once for all views).
        """
        x = images if images.dtype == torch.float32 else self._check(images).float().div_(255.0)
        n, _, h, w = x.shape
        prm = params if params is not None else self.sample_params(n, h, w, view)
        dev = x.device
        if x.shape[1] == 1:
            x = x.expand(n, 3, h, w)
        x = self._crop_flip(x, prm["box"], prm["flip"]).clamp_(0.0, 1.0)
        if bool(prm["jitter"].any()):
            x = self._jitter(x, prm["jitter"], prm["factors"], prm["order"])
        gray = prm["gray"].to(dev).view(n, 1, 1, 1)
        if bool(prm["gray"].any()):
            x = torch.where(gray, _gray(x).expand_as(x), x)
        if bool(prm["blur"].any()):
            idx = torch.nonzero(prm["blur"]).squeeze(1).to(dev)
            x[idx] = self._blur(x.index_select(0, idx), prm["sigma"].to(dev).index_select(0, idx))
        if bool(prm["solarize"].any()):
            sol = prm["solarize"].to(dev).view(n, 1, 1, 1)
            x = torch.where(sol & (x >= 128.0 / 255.0), 1.0 - x, x)
        mean = self.mean.to(dev)
        std = self.std.to(dev)
        return (x - mean) / std

    @staticmethod
    def _check(images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"BatchedAugment expects a uint8 B×C×H×W tensor (raw images), got {got}")
        if images.shape[1] not in (1, 3):
            raise ValueError(
                f"BatchedAugment expects 1 or 3 channels, got {images.shape[1]} (shape {tuple(images.shape)})"
            )
        return images

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``num_views`` augmented views of ``images`` (uint8 ``B×C×H×W``), each ``float32`` ``B×3×S×S``."""
        x = self._check(images).float().div_(255.0)
        return [self.augment_view(x, v) for v in range(self.num_views)]

    def extra_repr(self) -> str:
        return f"crop_size={self.crop_size}, seed={self.seed}, views={self.views}"
