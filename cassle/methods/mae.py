"""MAE — He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022
(https://arxiv.org/abs/2111.06377).

A ViT encoder sees only a random ``1 - mask_ratio`` share of the patches
(75% masked by default, :meth:`VisionTransformer.forward_tokens`); a light
transformer decoder (``--decoder_depth`` 4 blocks of ``--decoder_embed_dim``
192 with ``--decoder_num_heads`` 3 — smaller than the paper's 8 x 512, to suit
ViT-Tiny/Small) fills the masked positions with a learned mask token, adds
fixed 2-D sin-cos positions and predicts every patch's pixels. The loss is the
per-patch MSE on the masked patches (:func:`cassle.losses.mae_loss_func`,
``--norm_pix_loss`` to standardise each target patch).

Contract choices (MAE has no projection head):

* ``projector`` is ``nn.Identity`` and ``has_projector`` is ``False``;
* ``num_views`` is 1 (MAE trains on one random-resized crop + flip);
* in ``training_step``, ``feats`` and ``z`` are both the normalised CLS token
  of the *masked* encoding (what the step computed; the online classifier is
  trained on it, detached, as in solo-learn) — no extra un-masked pass;
* ``backbone(x)`` and ``forward(x)`` never mask: probes and ``validation_step``
  see features of the whole image.

Masking draws from torch's global RNG, which the task loop seeds from the
run's ``--seed``. CaSSLe family ``reconstructive``: no CaSSLe distiller exists
for it, so ``--strategy cassle`` is refused before training.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn

from cassle.backbones import BACKBONES
from cassle.backbones.vit import Block, VisionTransformer
from cassle.config import ModelConfig
from cassle.losses import mae_loss_func, patchify
from cassle.methods.base import METHODS, ArgSpec, BaseMethod

#: MAE's augmentation: random resized crop (scale 0.2-1) and flip only.
MAE_AUGMENTATION_DEFAULTS: dict[str, list] = {
    "min_scale": [0.2],
    "max_scale": [1.0],
    "color_jitter_prob": [0.0],
    "grayscale_prob": [0.0],
    "gaussian_prob": [0.0],
    "solarization_prob": [0.0],
    "horizontal_flip_prob": [0.5],
}


def sincos_pos_embed(embed_dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embeddings ``(grid_h·grid_w) x embed_dim`` (row-major).

    Half of the channels encode the row, half the column; each half is
    ``[sin(pos·ω_k), cos(pos·ω_k)]`` with ``ω_k = 10000^(-k/(D/4))``.
    """
    if embed_dim % 4:
        raise ValueError(f"sin-cos position embeddings need a width divisible by 4, got {embed_dim}")
    quarter = embed_dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64), torch.arange(grid_w, dtype=torch.float64), indexing="ij"
    )

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1).float()


class MAEDecoder(nn.Module):
    """Light transformer decoder: visible tokens + mask tokens -> pixels of every patch."""

    def __init__(self, encoder_dim: int, embed_dim: int, depth: int, num_heads: int, patch_size: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.embed = nn.Linear(encoder_dim, embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.pred = nn.Linear(embed_dim, patch_size * patch_size * 3)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, tokens: torch.Tensor, ids_restore: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``tokens`` ``B x (1+K) x D_enc`` (CLS + visible) -> predictions ``B x N x p·p·3``."""
        x = self.embed(tokens)
        b, n = ids_restore.shape
        masked = self.mask_token.expand(b, n - (x.shape[1] - 1), -1)
        patches = torch.cat([x[:, 1:], masked], dim=1)
        patches = torch.gather(patches, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        pos = sincos_pos_embed(self.embed_dim, *grid).to(x)
        cls_pos = torch.zeros(1, 1, self.embed_dim, dtype=x.dtype, device=x.device)
        x = torch.cat([x[:, :1], patches], dim=1) + torch.cat([cls_pos, pos.unsqueeze(0)], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x))[:, 1:]


def _is_vit(encoder: str) -> bool:
    factory = BACKBONES.get(encoder)
    fn = getattr(factory, "func", factory)
    return getattr(fn, "__module__", "") == "cassle.backbones.vit"


@METHODS.register("mae")
class MAE(BaseMethod):
    """Masked autoencoder on a ViT backbone (``vit_tiny`` / ``vit_small``)."""

    family: ClassVar[str] = "reconstructive"
    has_projector: ClassVar[bool] = False
    num_views: ClassVar[int] = 1
    default_proj_hidden_dim: ClassVar[int] = 0
    default_output_dim: ClassVar[int] = 0
    method_args: ClassVar[dict[str, ArgSpec]] = {
        "mask_ratio": (float, 0.75, "share of patches masked in training (none at evaluation)"),
        "decoder_depth": (int, 4, "transformer blocks of the decoder"),
        "decoder_embed_dim": (int, 192, "token width of the decoder"),
        "decoder_num_heads": (int, 3, "attention heads of the decoder"),
        "norm_pix_loss": (bool, False, "reconstruct per-patch normalised pixels (the MAE paper's better variant)"),
    }

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        if not isinstance(self.backbone, VisionTransformer):
            raise ValueError(f"mae needs a ViT encoder (vit_tiny or vit_small), got --encoder {self.encoder_name}")
        self.output_dim = self.num_features
        self.decoder = MAEDecoder(
            self.num_features,
            self.decoder_embed_dim,
            self.decoder_depth,
            self.decoder_num_heads,
            self.backbone.patch_size,
        )

    @classmethod
    def check_cfg(cls, model: ModelConfig, hp: Any) -> None:
        super().check_cfg(model, hp)
        encoder = model.encoder
        if not _is_vit(encoder):
            vits = sorted(n for n in BACKBONES if _is_vit(n))
            raise ValueError(f"mae needs a ViT encoder: pass --encoder one of {vits} (got '{encoder}')")
        ratio = hp.mask_ratio
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"--mask_ratio must be in (0, 1), got {ratio}")
        dim, heads, depth = hp.decoder_embed_dim, hp.decoder_num_heads, hp.decoder_depth
        if depth < 1 or heads < 1:
            raise ValueError(f"--decoder_depth and --decoder_num_heads must be at least 1, got {depth} and {heads}")
        if dim < 4 or dim % 4 or dim % heads:
            raise ValueError(
                f"--decoder_embed_dim {dim} must be a multiple of 4 (sin-cos positions) and of --decoder_num_heads {heads}"
            )

    @classmethod
    def add_method_args(cls, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Decoder/masking arguments, ``--norm_pix_loss``, MAE's optimiser and augmentation defaults.

        Defaults follow the paper's recipe: AdamW, base lr 1.5e-4 (per 256
        images), weight decay 0.05, crop + flip only.
        """
        super().add_method_args(parser)
        existing = {a.dest for a in parser._actions}
        if "norm_pix_loss" not in existing:
            parser.add_argument(
                "--norm_pix_loss", action="store_true", help="MAE: standardise every target patch before the MSE"
            )
        parser.set_defaults(**{k: list(v) for k, v in MAE_AUGMENTATION_DEFAULTS.items() if k in existing})
        recipe = {"optimizer": "adamw", "lr": 1.5e-4, "weight_decay": 0.05}
        parser.set_defaults(**{k: v for k, v in recipe.items() if k in existing})
        return parser

    def build_projector(self) -> nn.Module:
        return nn.Identity()

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        return super().learnable_params + [{"name": "decoder", "params": self._trainable(self.decoder)}]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Un-masked features: ``{"feats": backbone(x), "z": same}``."""
        feats = self.backbone(x)
        return {"feats": feats, "z": feats}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encoder pass masking ``mask_ratio`` of the patches in train mode and none in eval mode.

        Returns ``(tokens, mask, ids_restore)`` of :meth:`VisionTransformer.forward_tokens`.
        """
        ratio = self.mask_ratio if self.training else 0.0
        return self.backbone.forward_tokens(x, mask_ratio=ratio)

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        _, views, targets = self._unpack_train_batch(batch)
        x = views[0]
        tokens, mask, ids_restore = self.encode(x)
        p = self.backbone.patch_size
        pred = self.decoder(tokens, ids_restore, (x.shape[-2] // p, x.shape[-1] // p))
        # in eval mode nothing is masked: score the reconstruction of every patch instead
        loss_mask = mask if bool(mask.sum() > 0) else torch.ones_like(mask)
        loss = mae_loss_func(pred, patchify(x, p), loss_mask, norm_pix_loss=self.norm_pix_loss)
        feats = tokens[:, 0]
        cls = self.online_classifier_step(feats, targets, global_mean=True)
        if self.classifier is not None:
            self._log("train_class_loss", cls["loss"])
            if "acc1" in cls:
                self._log("train_online_acc1", 100.0 * cls["acc1"])  # % like every probe
        self._log("train_mae_loss", loss)
        return {"loss": cls["loss"] + loss, "feats": [feats], "z": [feats], "pred": pred, "mask": mask}
