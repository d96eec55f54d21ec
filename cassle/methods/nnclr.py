"""NNCLR — Dwibedi et al., "With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning of
Visual Representations", ICCV 2021 (https://arxiv.org/abs/2104.14548).

SimCLR-like contrastive learning whose positive is not the other view itself but the nearest neighbour of
one view's projection in a support set of past projections: view 1's projection ``z_1`` is looked up in the
support set (cosine, no gradient), and its neighbour ``nn_1`` is contrasted with the predictions ``p_2`` of
view 2 of the (globally gathered) batch, the other rows being the negatives; symmetrised over the views
(:func:`cassle.losses.nnclr.nnclr_loss_func`). After the loss, view 1's l2-normalised projections of every
process are pushed into the support set (FIFO), with their labels for the ``train_nn_acc`` diagnostic.

Architecture (solo-learn ``solo/methods/nnclr.py``, CaSSLe ``cassle/methods/nnclr.py``): projector
``Linear-BN-ReLU-Linear-BN-ReLU-Linear-BN``, predictor ``Linear-BN-ReLU-Linear``; ``z`` is the
l2-normalised projection (hence ``normalized_projection``) and the predictor reads the raw projection.

Defaults, all from solo-learn ``scripts/pretrain/cifar/nnclr.yaml`` (the same as the CaSSLe repository's
``cassle/methods/nnclr.py`` argument defaults): projector 2048 -> 256, predictor hidden 4096,
temperature 0.2 and a support set of 65536 (the paper's ImageNet settings are 0.1 and 98304).

CaSSLe family: ``contrastive`` (an InfoNCE method, like SimCLR).

Negatives are the predictions of the global batch, gathered with gradients from every process (solo-learn's
multi-GPU form; the CaSSLe repository's loss contrasts within each process's batch only).

Deviations from the references: the support set is a :class:`~cassle.methods.queue.FeatureQueue` ring, so
``queue_size`` need not be a multiple of the global batch (the references assert it is); ``train_nn_acc``
leaves unlabelled samples out (the references count an unlabelled sample whose neighbour is an unlabelled
row as a hit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from cassle.losses.nnclr import nnclr_loss_func
from cassle.methods.base import METHODS, ArgSpec, BaseMethod
from cassle.methods.heads import mlp2, mlp3
from cassle.methods.queue import SupportSetMixin


@METHODS.register("nnclr")
class NNCLR(SupportSetMixin, BaseMethod):
    """NNCLR with solo-learn's CIFAR defaults (2048 -> 256, predictor 4096, T 0.2, support set 65536).

    ``queue`` is the support set (a labelled :class:`~cassle.methods.queue.FeatureQueue`); the step's
    output adds ``p`` (predictions) and ``nn`` (the neighbours of each view's ``z``, detached).
    """

    family: ClassVar[str] = "contrastive"
    normalized_projection: ClassVar[bool] = True  # the references' z is the unit-norm projection
    default_proj_hidden_dim: ClassVar[int] = 2048
    default_output_dim: ClassVar[int] = 256
    method_args: ClassVar[dict[str, ArgSpec]] = {
        "temperature": (float, 0.2, "softmax temperature of the NNCLR contrastive loss"),
        "queue_size": (int, 65536, "number of past projections in the support set"),
        "pred_hidden_dim": (int, 4096, "hidden width of the NNCLR predictor"),
    }

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        self.predictor: nn.Module = mlp2(self.output_dim, self.pred_hidden_dim, self.output_dim)
        self.build_support_set(self.queue_size, self.output_dim)

    def build_projector(self) -> nn.Module:
        return nn.Sequential(
            *mlp3(self.num_features, self.proj_hidden_dim, self.output_dim), nn.BatchNorm1d(self.output_dim)
        )

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        return super().learnable_params + [{"name": "predictor", "params": self._trainable(self.predictor)}]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(x)
        z = self.projector(feats)
        return {"feats": feats, "z": F.normalize(z, dim=-1), "p": self.predictor(z)}

    def contrastive_loss(self, nn_: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """NNCLR loss of this process's neighbours against the predictions of the global batch."""
        offset = self.global_rank * nn_.shape[0] if self.world_size() > 1 else 0
        return nnclr_loss_func(nn_, self.gather(p), temperature=self.temperature, offset=offset)

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        out = super().training_step(batch, batch_idx)
        _, _, targets = self._unpack_train_batch(batch)
        projections = [self.projector(f) for f in out["feats"]]
        p = [self.predictor(zi) for zi in projections]
        z = [F.normalize(zi, dim=-1) for zi in projections]
        (nn1, idx1), (nn2, _) = self.nearest_neighbours(z[0]), self.nearest_neighbours(z[1])
        loss = (self.contrastive_loss(nn1, p[1]) + self.contrastive_loss(nn2, p[0])) / 2
        self.log_nn_accuracy(idx1, targets)
        self.update_support_set(z[0], targets)
        self._log("train_nnclr_loss", loss)
        out.update({"loss": out["loss"] + loss, "z": z, "p": p, "nn": [nn1, nn2]})
        return out
