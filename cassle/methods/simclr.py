"""SimCLR — Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020 (https://arxiv.org/abs/2002.05709).

NT-Xent over both views of the (globally gathered) batch: the two views of a
sample are positives, every other row is a negative.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn

from cassle.losses import simclr_loss_func
from cassle.methods.base import METHODS, ArgSpec, BaseMethod
from cassle.methods.heads import mlp2_nobn


@METHODS.register("simclr")
class SimCLR(BaseMethod):
    """SimCLR with CaSSLe's CIFAR defaults (projector 2048 -> 256, temperature 0.2)."""

    family: ClassVar[str] = "contrastive"
    default_proj_hidden_dim: ClassVar[int] = 2048
    default_output_dim: ClassVar[int] = 256
    method_args: ClassVar[dict[str, ArgSpec]] = {
        "temperature": (float, 0.2, "softmax temperature of the contrastive loss"),
    }
    #: suffix of the logged loss, ``train_<log_name>_loss``.
    log_name: ClassVar[str] = "simclr"

    def build_projector(self) -> nn.Module:
        return mlp2_nobn(self.num_features, self.proj_hidden_dim, self.output_dim)

    def positive_ids(self, indexes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Ids whose equality marks positives (SimCLR: the sample index)."""
        return indexes

    def contrastive_loss(self, z: list[torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
        """Loss over all views stacked, after gathering across processes."""
        ids = self.gather(ids)
        z_all = torch.cat([self.gather(zi) for zi in z])
        return simclr_loss_func(z_all, ids.repeat(len(z)), temperature=self.temperature)

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        out = super().training_step(batch, batch_idx)
        indexes, _, targets = batch
        z = [self.projector(f) for f in out["feats"]]
        loss = self.contrastive_loss(z, self.positive_ids(indexes, targets))
        self._log(f"train_{self.log_name}_loss", loss)
        out.update({"loss": out["loss"] + loss, "z": z})
        return out
