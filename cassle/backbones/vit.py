"""A compact Vision Transformer (Dosovitskiy et al., ICLR 2021).

Pre-norm transformer blocks over non-overlapping patches plus a CLS token with
learned position embeddings. The output is the CLS token after the final
LayerNorm. The pieces MAE-style methods need are plain attributes:
``patch_embed`` (a strided convolution), ``cls_token``, ``pos_embed``,
``blocks`` (an ``nn.ModuleList``) and ``norm``.

The patch size follows the image size (:func:`patch_size_for`); inputs of another
size than the one the model was built for (e.g. multi-crop's small crops) are
accepted when divisible by the patch size: position embeddings are then
bicubically interpolated.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def patch_size_for(image_size: int) -> int:
    """Patch size for square images of side ``image_size``.

    16 for ``image_size >= 224``, 8 for ``>= 64``, 2 for ``<= 8`` and 4 otherwise
    (e.g. 32 px). Raises ``ValueError`` if ``image_size`` is not a positive integer
    or is not divisible by the chosen patch size.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    if image_size >= 224:
        patch = 16
    elif image_size >= 64:
        patch = 8
    elif image_size <= 8:
        patch = 2
    else:
        patch = 4
    if image_size % patch:
        raise ValueError(
            f"image_size {image_size} is not divisible by the ViT patch size {patch} "
            "(patch size is 16 for >= 224 px, 8 for >= 64 px, 4 for 9-63 px, 2 for <= 8 px)"
        )
    return patch


def heads_for(embed_dim: int, max_heads: int) -> int:
    """The largest head count ``<= max_heads`` that divides ``embed_dim``."""
    for heads in range(min(max_heads, embed_dim), 0, -1):
        if embed_dim % heads == 0:
            return heads
    raise ValueError(f"embed_dim must be a positive integer, got {embed_dim!r}")


class PatchEmbed(nn.Module):
    """Split an image into ``patch_size`` patches and project each to ``embed_dim``."""

    def __init__(self, patch_size: int, embed_dim: int, in_channels: int = 3) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B×C×H×W`` -> ``B×N×D`` with ``N = (H/p)·(W/p)``."""
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads {num_heads} must divide the embedding width {dim}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B×N×D`` -> ``B×N×D``."""
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B×N×D`` -> ``B×N×D``."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT encoder returning the normalised CLS token.

    Args:
        image_size: side of the square images the model is built for; fixes the
            patch size (:func:`patch_size_for`) and the position-embedding grid.
        embed_dim: token width.
        depth: number of transformer blocks.
        num_heads: attention heads; must divide ``embed_dim``.
        mlp_ratio: MLP hidden width as a multiple of ``embed_dim``.

    Attributes:
        num_features: ``embed_dim``.
        patch_size: side of a patch in pixels.
        num_patches: patches per image at ``image_size``.
    """

    def __init__(
        self,
        image_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        for name, value in (("embed_dim", embed_dim), ("depth", depth), ("num_heads", num_heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.image_size = image_size
        self.patch_size = patch_size_for(image_size)
        self.grid_size = image_size // self.patch_size
        self.num_patches = self.grid_size**2
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_features: int = embed_dim

        self.patch_embed = PatchEmbed(self.patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        """Truncated-normal (std 0.02) tokens and linears, zero biases, unit LayerNorms."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def interpolate_pos_embed(self, height: int, width: int) -> torch.Tensor:
        """Position embeddings (CLS first) for an ``height×width`` input.

        Returns ``pos_embed`` unchanged at the built size, a bicubic resize of the
        patch part otherwise. Raises ``ValueError`` if a side is not divisible
        by the patch size.
        """
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f"input size {height}x{width} is not divisible by the patch size {p}")
        gh, gw = height // p, width // p
        if gh == self.grid_size and gw == self.grid_size:
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        g = int(math.isqrt(patch_pos.shape[1]))
        patch_pos = patch_pos.reshape(1, g, g, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=(gh, gw), mode="bicubic", align_corners=False)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def prepare_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``B×3×H×W`` -> tokens ``B×(1+N)×D`` (CLS + patches, with positions)."""
        pos = self.interpolate_pos_embed(x.shape[-2], x.shape[-1])
        tokens = self.patch_embed(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + pos

    def random_masking(
        self,
        num_patches: int,
        batch_size: int,
        mask_ratio: float,
        device: torch.device | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample random masking (MAE, He et al. 2022): which patches stay visible.

        Exactly ``num_keep = int(num_patches * (1 - mask_ratio))`` patches are kept
        per sample (at least one), chosen uniformly from torch's RNG (the run's
        seed) or ``generator``.

        Returns:
            ``ids_keep`` (``B×num_keep``, indices of visible patches),
            ``mask`` (``B×N`` float, 1 = masked) and ``ids_restore`` (``B×N``,
            the permutation that puts a ``[visible, masked]`` sequence back in
            patch order).
        """
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        num_keep = max(1, int(num_patches * (1 - mask_ratio)))
        noise = torch.rand(
            batch_size, num_patches, generator=generator, device=generator.device if generator is not None else device
        )
        noise = noise.to(device) if device is not None else noise
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :num_keep]
        mask = torch.ones(batch_size, num_patches, device=noise.device)
        mask[:, :num_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        return ids_keep, mask, ids_restore

    def forward_tokens(
        self, x: torch.Tensor, mask_ratio: float = 0.0, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode only a random subset of patches (MAE's encoder pass).

        ``mask_ratio=0`` keeps every patch in order, so ``tokens[:, 0]`` equals
        :meth:`forward`'s output.

        Returns:
            ``tokens`` (``B×(1+num_keep)×D``: normalised CLS then visible patch
            tokens), ``mask`` (``B×N``, 1 = masked) and ``ids_restore`` (``B×N``),
            as in :meth:`random_masking`.
        """
        b = x.shape[0]
        pos = self.interpolate_pos_embed(x.shape[-2], x.shape[-1])
        patches = self.patch_embed(x) + pos[:, 1:]
        n = patches.shape[1]
        if mask_ratio > 0:
            ids_keep, mask, ids_restore = self.random_masking(n, b, mask_ratio, x.device, generator)
            patches = torch.gather(patches, 1, ids_keep.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))
        else:
            mask = torch.zeros(b, n, device=x.device)
            ids_restore = torch.arange(n, device=x.device).expand(b, n)
        cls = (self.cls_token + pos[:, :1]).expand(b, -1, -1)
        tokens = torch.cat([cls, patches], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens), mask, ids_restore

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``B×3×H×W`` images to ``B×num_features`` (normalised CLS token)."""
        x = self.prepare_tokens(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]


def vit_tiny(image_size: int, base_width: int = 192) -> VisionTransformer:
    """ViT-Tiny: width 192, depth 12, 3 heads (fewer if ``base_width`` needs it)."""
    return VisionTransformer(image_size, base_width, depth=12, num_heads=heads_for(base_width, 3))


def vit_small(image_size: int, base_width: int = 384) -> VisionTransformer:
    """ViT-Small: width 384, depth 12, 6 heads (fewer if ``base_width`` needs it)."""
    return VisionTransformer(image_size, base_width, depth=12, num_heads=heads_for(base_width, 6))
