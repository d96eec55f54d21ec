"""MoCo v2+ — He et al., "Momentum Contrast for Unsupervised Visual
Representation Learning", CVPR 2020 (https://arxiv.org/abs/1911.05722) and
Chen et al., "Improved Baselines with Momentum Contrastive Learning", 2020
(https://arxiv.org/abs/2003.04297); the "+" is solo-learn's symmetrised loss
with a cosine momentum schedule.

Queries of one view are contrasted with the momentum keys of the other view
(positive) and a FIFO queue of past keys (negatives).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from cassle.losses import mocov2plus_loss_func
from cassle.methods.base import METHODS, ArgSpec
from cassle.methods.heads import mlp2_nobn
from cassle.methods.momentum import BaseMomentumMethod
from cassle.methods.queue import FeatureQueue, upgrade_legacy_queue


@METHODS.register("mocov2plus")
class MoCoV2Plus(BaseMomentumMethod):
    """MoCo v2+ with CaSSLe's defaults (2048 -> 256, T=0.2, queue 65536, tau 0.99 -> 0.999).

    ``queue`` is a :class:`~cassle.methods.queue.FeatureQueue` of ``queue_size`` l2-normalised keys
    (random unit vectors at start).
    Keys of both views, gathered from every process, are enqueued after the loss.
    """

    family: ClassVar[str] = "contrastive"
    normalized_projection: ClassVar[bool] = True  # the reference returns the unit-norm queries as z
    default_proj_hidden_dim: ClassVar[int] = 2048
    default_output_dim: ClassVar[int] = 256
    method_args: ClassVar[dict[str, ArgSpec]] = {
        "temperature": (float, 0.2, "softmax temperature of the InfoNCE loss"),
        "queue_size": (int, 65536, "number of negative keys in the queue"),
        "base_tau_momentum": (float, 0.99, "initial EMA momentum of the key encoder"),
        "final_tau_momentum": (float, 0.999, "final EMA momentum (cosine schedule over the fit)"),
    }

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        if self.queue_size < 1:
            raise ValueError(f"mocov2plus needs queue_size >= 1, got {self.queue_size}")
        self.queue = FeatureQueue(self.queue_size, self.output_dim, init="random")
        self.register_load_state_dict_pre_hook(upgrade_legacy_queue)

    def build_projector(self) -> nn.Module:
        return mlp2_nobn(self.num_features, self.proj_hidden_dim, self.output_dim)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write l2-normalised ``keys`` at ``queue_ptr`` (wrapping around); keeps the last
        ``queue_size`` when more keys than slots arrive."""
        self.queue.push(F.normalize(keys.detach(), dim=1))

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        out = super().training_step(batch, batch_idx)
        z = [self.projector(f) for f in out["feats"]]
        k1, k2 = out["momentum_z"]
        queue = self.queue.rows().clone()
        loss = (
            mocov2plus_loss_func(z[0], k2, queue, temperature=self.temperature)
            + mocov2plus_loss_func(z[1], k1, queue, temperature=self.temperature)
        ) / 2
        self.enqueue(torch.cat([self.gather(k1), self.gather(k2)]))
        self._log("train_mocov2plus_loss", loss)
        out.update({"loss": out["loss"] + loss, "z": z})
        return out
