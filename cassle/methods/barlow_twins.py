"""Barlow Twins — Zbontar et al., "Barlow Twins: Self-Supervised Learning via
Redundancy Reduction", ICML 2021 (https://arxiv.org/abs/2103.03230).

The cross-correlation matrix of the two views' (batch-normalised) projections
is pushed towards the identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch.nn as nn

from cassle.losses import barlow_loss_func
from cassle.methods.base import METHODS, ArgSpec, BaseMethod
from cassle.methods.heads import mlp3


@METHODS.register("barlow_twins")
class BarlowTwins(BaseMethod):
    """Barlow Twins with CaSSLe's CIFAR defaults (projector 2048 -> 2048)."""

    family: ClassVar[str] = "decorrelative"
    default_proj_hidden_dim: ClassVar[int] = 2048
    default_output_dim: ClassVar[int] = 2048
    method_args: ClassVar[dict[str, ArgSpec]] = {
        "lamb": (float, 0.0051, "weight of the off-diagonal (redundancy) term"),
        "scale_loss": (float, 0.1, "multiplier of the Barlow Twins loss"),
    }

    def build_projector(self) -> nn.Module:
        return mlp3(self.num_features, self.proj_hidden_dim, self.output_dim)

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        out = super().training_step(batch, batch_idx)
        z = [self.projector(f) for f in out["feats"]]
        loss = barlow_loss_func(self.gather(z[0]), self.gather(z[1]), lamb=self.lamb, scale_loss=self.scale_loss)
        self._log("train_barlow_loss", loss)
        out.update({"loss": out["loss"] + loss, "z": z})
        return out
