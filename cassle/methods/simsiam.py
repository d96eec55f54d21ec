"""SimSiam — Chen & He, "Exploring Simple Siamese Representation Learning",
CVPR 2021 (https://arxiv.org/abs/2011.10566).

A predictor maps one view's projection onto the (stop-gradient) projection of
the other view; no momentum encoder, no negatives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn

from cassle.losses import simsiam_loss_func
from cassle.methods.base import METHODS, ArgSpec, BaseMethod


@METHODS.register("simsiam")
class SimSiam(BaseMethod):
    """SimSiam with the paper's CIFAR head sizes (2048 -> 2048, predictor bottleneck 512).

    The predictor keeps a constant learning rate (``static_lr``), as in the paper.
    """

    family: ClassVar[str] = "predictive"
    default_proj_hidden_dim: ClassVar[int] = 2048
    default_output_dim: ClassVar[int] = 2048
    method_args: ClassVar[dict[str, ArgSpec]] = {
        "pred_hidden_dim": (int, 512, "bottleneck width of the SimSiam predictor"),
    }

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        self.predictor: nn.Module = nn.Sequential(
            nn.Linear(self.output_dim, self.pred_hidden_dim, bias=False),
            nn.BatchNorm1d(self.pred_hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(self.pred_hidden_dim, self.output_dim),
        )

    def build_projector(self) -> nn.Module:
        h, d = self.proj_hidden_dim, self.output_dim
        return nn.Sequential(
            nn.Linear(self.num_features, h, bias=False),
            nn.BatchNorm1d(h),
            nn.ReLU(inplace=True),
            nn.Linear(h, h, bias=False),
            nn.BatchNorm1d(h),
            nn.ReLU(inplace=True),
            nn.Linear(h, d, bias=False),
            nn.BatchNorm1d(d, affine=False),
        )

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        return super().learnable_params + [
            {"name": "predictor", "params": self._trainable(self.predictor), "static_lr": True}
        ]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().forward(x)
        out["p"] = self.predictor(out["z"])
        return out

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        out = super().training_step(batch, batch_idx)
        z = [self.projector(f) for f in out["feats"]]
        p = [self.predictor(zi) for zi in z]
        loss = simsiam_loss_func(p[0], z[1]) / 2 + simsiam_loss_func(p[1], z[0]) / 2
        self._log("train_simsiam_loss", loss)
        out.update({"loss": out["loss"] + loss, "z": z, "p": p})
        return out
