"""VICReg — Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance
Regularization for Self-Supervised Learning", ICLR 2022
(https://arxiv.org/abs/2105.04906).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch.nn as nn

from cassle.losses import vicreg_loss_func
from cassle.methods.base import METHODS, ArgSpec, BaseMethod
from cassle.methods.heads import mlp3


@METHODS.register("vicreg")
class VICReg(BaseMethod):
    """VICReg with CaSSLe's CIFAR defaults (projector 2048 -> 2048, weights 25/25/1)."""

    family: ClassVar[str] = "predictive_mse"
    default_proj_hidden_dim: ClassVar[int] = 2048
    default_output_dim: ClassVar[int] = 2048
    method_args: ClassVar[dict[str, ArgSpec]] = {
        "sim_loss_weight": (float, 25.0, "weight of the invariance (MSE) term"),
        "var_loss_weight": (float, 25.0, "weight of the variance term"),
        "cov_loss_weight": (float, 1.0, "weight of the covariance term"),
    }

    #: the loss over the gathered projections of the two views (VIbCReg swaps in its own) and its logged name
    loss_func: ClassVar = staticmethod(vicreg_loss_func)
    loss_name: ClassVar[str] = "vicreg"

    def build_projector(self) -> nn.Module:
        return mlp3(self.num_features, self.proj_hidden_dim, self.output_dim)

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        out = super().training_step(batch, batch_idx)
        z = [self.projector(f) for f in out["feats"]]
        loss = self.loss_func(
            self.gather(z[0]),
            self.gather(z[1]),
            sim_loss_weight=self.sim_loss_weight,
            var_loss_weight=self.var_loss_weight,
            cov_loss_weight=self.cov_loss_weight,
        )
        self._log(f"train_{self.loss_name}_loss", loss)
        out.update({"loss": out["loss"] + loss, "z": z})
        return out
