"""SwAV — Caron et al., "Unsupervised Learning of Visual Features by
Contrasting Cluster Assignments", NeurIPS 2020 (https://arxiv.org/abs/2006.09882).

Projections are scored against learnable unit-norm prototypes; Sinkhorn-Knopp
turns each view's scores into balanced soft codes that the *other* view must
predict. A queue of past projections enlarges the Sinkhorn batch after
``epoch_queue_starts`` epochs, and the prototypes are frozen for the first
``freeze_prototypes_epochs`` epochs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from cassle.config import ModelConfig
from cassle.losses import sinkhorn, swav_loss_func
from cassle.methods.base import METHODS, ArgSpec, BaseMethod
from cassle.methods.heads import mlp2
from cassle.methods.queue import FeatureQueue, upgrade_legacy_queue


@METHODS.register("swav")
class SwAV(BaseMethod):
    """SwAV with CaSSLe's CIFAR defaults (2048 -> 128, 3000 prototypes, queue 3840).

    ``prototypes`` is an ``nn.Linear(output_dim, num_prototypes, bias=False)``
    whose rows are re-normalised to unit length before every training step.
    ``training_step`` returns ``logits`` (prototype scores of the normalised
    projections, one per view). ``queue`` (a :class:`~cassle.methods.queue.FeatureQueue`, one slot per view,
    starting empty) holds this process's past normalised projections.
    """

    family: ClassVar[str] = "knowledge"
    default_proj_hidden_dim: ClassVar[int] = 2048
    default_output_dim: ClassVar[int] = 128
    method_args: ClassVar[dict[str, ArgSpec]] = {
        "temperature": (float, 0.1, "softmax temperature of the swapped prediction"),
        "num_prototypes": (int, 3000, "number of prototypes"),
        "sk_iters": (int, 3, "Sinkhorn-Knopp iterations"),
        "sk_epsilon": (float, 0.05, "Sinkhorn-Knopp entropy regularisation"),
        "queue_size": (int, 3840, "projections kept per view for Sinkhorn (0 = no queue)"),
        "epoch_queue_starts": (int, 50, "epoch from which the queue is used"),
        "freeze_prototypes_epochs": (int, 2, "epochs during which the prototypes do not learn"),
    }

    @classmethod
    def check_cfg(cls, model: ModelConfig, hp: Any) -> None:
        super().check_cfg(model, hp)
        if hp.sk_iters < 1:
            raise ValueError(f"--sk_iters must be at least 1 Sinkhorn-Knopp iteration, got {hp.sk_iters}")
        if not (math.isfinite(hp.sk_epsilon) and hp.sk_epsilon > 0):
            raise ValueError(
                f"--sk_epsilon is Sinkhorn-Knopp's entropy regularisation: give a value > 0 (e.g. 0.05), "
                f"got {hp.sk_epsilon}"
            )

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        self.prototypes: nn.Linear = nn.Linear(self.output_dim, self.num_prototypes, bias=False)
        self.normalize_prototypes()
        if self.queue_size > 0:
            self.queue = FeatureQueue(self.queue_size, self.output_dim, slots=2, init="zeros")
            self.register_load_state_dict_pre_hook(upgrade_legacy_queue)
        else:
            self.queue = None

    def build_projector(self) -> nn.Module:
        return mlp2(self.num_features, self.proj_hidden_dim, self.output_dim)

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        return super().learnable_params + [{"name": "prototypes", "params": self._trainable(self.prototypes)}]

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """Project every prototype back onto the unit sphere."""
        w = self.prototypes.weight
        w.copy_(F.normalize(w, dim=1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().forward(x)
        out["logits"] = self.prototypes(F.normalize(out["z"], dim=1))
        return out

    def use_queue(self) -> bool:
        return self.queue is not None and self.current_epoch >= self.epoch_queue_starts

    @torch.no_grad()
    def get_assignments(self, logits: list[torch.Tensor]) -> list[torch.Tensor]:
        """Sinkhorn codes of each view (with the filled part of the queue when in use)."""
        bs = logits[0].shape[0]
        codes = []
        for i, scores in enumerate(logits):
            scores = scores.detach()
            if self.use_queue():
                q = self.queue.rows(i)
                if q.numel():
                    scores = torch.cat([scores, self.prototypes(q)])
            codes.append(sinkhorn(scores, self.sk_iters, self.sk_epsilon, world_size=self.world_size())[:bs])
        return codes

    @torch.no_grad()
    def enqueue(self, z_norm: list[torch.Tensor]) -> None:
        """Push the newest normalised projections (one slot per view) into the queue (FIFO)."""
        if self.queue is not None:
            self.queue.push(torch.stack([z.detach() for z in z_norm]))

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        self.normalize_prototypes()
        out = super().training_step(batch, batch_idx)
        z = [self.projector(f) for f in out["feats"]]
        z_norm = [F.normalize(zi, dim=1) for zi in z]
        logits = [self.prototypes(zn) for zn in z_norm]
        codes = self.get_assignments(logits)
        loss = swav_loss_func(logits, codes, temperature=self.temperature)
        self.enqueue(z_norm)
        self._log("train_swav_loss", loss)
        out.update({"loss": out["loss"] + loss, "z": z, "logits": logits})
        return out

    def on_after_backward(self) -> None:
        """Drop the prototypes' gradients while they are frozen."""
        super().on_after_backward()
        if self.current_epoch < self.freeze_prototypes_epochs:
            for p in self.prototypes.parameters():
                p.grad = None
