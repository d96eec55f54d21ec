"""MoCo v3 — Chen, Xie & He, "An Empirical Study of Training Self-Supervised Vision Transformers",
ICCV 2021 (https://arxiv.org/abs/2104.02057).

A query encoder (backbone -> projector -> predictor) and a momentum key encoder (EMA of backbone +
projector, no predictor). The prediction of one view is contrasted with the momentum keys of the
other view of the *whole global batch*: the keys are gathered from every process (no gradient)
and the positive of this process's row ``i`` is gathered row ``rank * B + i``; the other samples
are the negatives (no queue, unlike MoCo v1/v2). The loss is scaled by ``2T`` and the two view
orders are summed (paper, Algorithm 1)::

    loss = ctr(p1, k2) + ctr(p2, k1),   ctr(p, k) = 2T * CE(norm(p) · norm(gather(k))ᵀ / T, rank·B + i)

Heads (built from :func:`cassle.methods.heads.mlp3_bnout`, MoCo v3's form: bias-free linears, BN
on every layer, a non-affine BN on the projector's output):

* ResNets: a 2-layer projector and a 2-layer predictor *without* the output BN — the setting of
  the reference code for ResNets (solo-learn ``solo/methods/mocov3.py``, as the authors' code);
* ViTs: the paper's 3-layer projector and a 2-layer predictor with the output BN.

Deviation from the paper's text: the paper describes the 3-layer projector (its ViT study); for the
CIFAR ResNet-18 we follow the reference implementation's 2-layer ResNet projector, which is what
solo-learn's published CIFAR numbers use.

Defaults (solo-learn ``scripts/pretrain/cifar/mocov3.yaml``): projector 4096 -> 256, predictor
hidden 4096, ``temperature`` 0.2, EMA ``tau`` 0.99 -> 1.0 (cosine, as :mod:`cassle.methods.momentum`);
the yaml's LARS / lr 0.3 / classifier_lr 0.3 / weight decay 1e-6 / ``clip_lr`` / asymmetric
augmentations are in ``bash_files/continual/cifar/mocov3.sh``.

CaSSLe family: ``contrastive`` (an InfoNCE method, as MoCo v2+); ``z`` is the projector output,
which the reference does not l2-normalise (only the loss normalises the predictions), so
``normalized_projection`` stays False.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn

from cassle.losses.mocov3 import mocov3_loss_func
from cassle.methods.base import METHODS, ArgSpec
from cassle.methods.heads import mlp3_bnout
from cassle.methods.momentum import BaseMomentumMethod


@METHODS.register("mocov3")
class MoCoV3(BaseMomentumMethod):
    """MoCo v3 with solo-learn's CIFAR defaults (projector 4096 -> 256, predictor 4096, T 0.2, tau 0.99 -> 1)."""

    family: ClassVar[str] = "contrastive"
    default_proj_hidden_dim: ClassVar[int] = 4096
    default_output_dim: ClassVar[int] = 256
    method_args: ClassVar[dict[str, ArgSpec]] = {
        "pred_hidden_dim": (int, 4096, "hidden width of the MoCo v3 predictor"),
        "temperature": (float, 0.2, "softmax temperature of the MoCo v3 contrastive loss"),
        "base_tau_momentum": (float, 0.99, "initial EMA momentum of the key encoder"),
        "final_tau_momentum": (float, 1.0, "final EMA momentum (cosine schedule over the fit)"),
    }

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        if self.temperature <= 0:
            raise ValueError(f"mocov3 needs --temperature > 0, got {self.temperature}")
        predictor = mlp3_bnout(self.output_dim, self.pred_hidden_dim, self.output_dim, layers=2)
        # the reference's ResNet predictor ends at its last linear (no output BN)
        self.predictor: nn.Module = predictor if self._is_vit() else predictor[:-1]

    def _is_vit(self) -> bool:
        return self.encoder_name.startswith("vit")

    def build_projector(self) -> nn.Module:
        return mlp3_bnout(self.num_features, self.proj_hidden_dim, self.output_dim, layers=3 if self._is_vit() else 2)

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        return super().learnable_params + [{"name": "predictor", "params": self._trainable(self.predictor)}]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().forward(x)
        out["p"] = self.predictor(out["z"])
        return out

    def contrastive_loss(self, p: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """``mocov3_loss_func`` of local predictions ``p`` against the keys ``k`` of every process."""
        return mocov3_loss_func(p, self.gather(k.detach()), temperature=self.temperature, rank=self.global_rank)

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        out = super().training_step(batch, batch_idx)
        z = [self.projector(f) for f in out["feats"]]
        p = [self.predictor(zi) for zi in z]
        k1, k2 = out["momentum_z"]
        loss = self.contrastive_loss(p[0], k2) + self.contrastive_loss(p[1], k1)
        self._log("train_mocov3_loss", loss)
        out.update({"loss": out["loss"] + loss, "z": z, "p": p})
        return out
