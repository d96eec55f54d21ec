"""BYOL — Grill et al., "Bootstrap Your Own Latent: A New Approach to
Self-Supervised Learning", NeurIPS 2020 (https://arxiv.org/abs/2006.07733).

An online backbone + projector + predictor regresses the EMA target network's
projection of the other view; the loss is symmetrised over the two views.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn

from cassle.losses import byol_loss_func
from cassle.methods.base import METHODS, ArgSpec
from cassle.methods.heads import mlp2
from cassle.methods.momentum import BaseMomentumMethod


@METHODS.register("byol")
class BYOL(BaseMomentumMethod):
    """BYOL with CaSSLe's CIFAR defaults (projector 4096 -> 256, predictor 4096)."""

    family: ClassVar[str] = "predictive"
    default_proj_hidden_dim: ClassVar[int] = 4096
    default_output_dim: ClassVar[int] = 256
    method_args: ClassVar[dict[str, ArgSpec]] = {
        "pred_hidden_dim": (int, 4096, "hidden width of the BYOL predictor"),
        "base_tau_momentum": (float, 0.99, "initial EMA momentum of the target network"),
        "final_tau_momentum": (float, 1.0, "final EMA momentum (cosine schedule over the fit)"),
    }

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        self.predictor: nn.Module = mlp2(self.output_dim, self.pred_hidden_dim, self.output_dim)

    def build_projector(self) -> nn.Module:
        return mlp2(self.num_features, self.proj_hidden_dim, self.output_dim)

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        return super().learnable_params + [{"name": "predictor", "params": self._trainable(self.predictor)}]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().forward(x)
        out["p"] = self.predictor(out["z"])
        return out

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        out = super().training_step(batch, batch_idx)
        z = [self.projector(f) for f in out["feats"]]
        p = [self.predictor(zi) for zi in z]
        mz1, mz2 = out["momentum_z"]
        loss = byol_loss_func(p[0], mz2) + byol_loss_func(p[1], mz1)
        self._log("train_byol_loss", loss)
        out.update({"loss": out["loss"] + loss, "z": z, "p": p})
        return out
