"""EMP-SSL — Tong et al., "EMP-SSL: Towards Self-Supervised Learning in One
Training Epoch", 2023 (https://arxiv.org/abs/2304.03977).

Each image is seen through many small crops (``--num_crops``, 20 in the paper;
the method's view count follows it, so the data module produces that many
views). The L2-normalised projection of every crop is pulled towards the mean
projection of its image's crops (cosine, weight ``--emp_invariance_weight``
200), and the total coding rate of each crop's batch of projections is
maximised (``--emp_eps`` 0.2, weight ``--emp_tcr_weight`` 1); see
:func:`cassle.losses.emp_ssl_loss_func`.

The crop augmentation defaults follow the paper's CIFAR recipe: fixed-scale
crops (``min_scale = max_scale = 0.25``), colour jitter (0.4, 0.4, 0.4, 0.2)
with p 0.8, grayscale 0.2, flip 0.5, blur 0.1, solarisation 0.1.

CaSSLe family: ``predictive`` — the method's own similarity term is a cosine
between a crop and a target embedding, so the frozen past projection is
predicted with the same cosine (2 − 2·cos) distillation.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, ClassVar

import torch.nn as nn
import torch.nn.functional as F

from cassle.config import ModelConfig
from cassle.losses import emp_ssl_loss_func
from cassle.methods.base import METHODS, ArgSpec, BaseMethod
from cassle.methods.heads import mlp3

#: paper's crop augmentation (CIFAR); one value shared by every crop.
EMP_AUGMENTATION_DEFAULTS: dict[str, list] = {
    "min_scale": [0.25],
    "max_scale": [0.25],
    "brightness": [0.4],
    "contrast": [0.4],
    "saturation": [0.4],
    "hue": [0.2],
    "color_jitter_prob": [0.8],
    "grayscale_prob": [0.2],
    "horizontal_flip_prob": [0.5],
    "gaussian_prob": [0.1],
    "solarization_prob": [0.1],
}


@METHODS.register("emp_ssl")
class EMPSSL(BaseMethod):
    """EMP-SSL with the paper's CIFAR sizes (projector 4096 -> 1024, 20 crops).

    ``num_views`` of an instance is ``num_crops``; the class method
    :meth:`views_for` tells the data module the same before the model exists.
    ``z`` (one per crop) are the L2-normalised projections.
    """

    family: ClassVar[str] = "predictive"
    default_proj_hidden_dim: ClassVar[int] = 4096
    default_output_dim: ClassVar[int] = 1024
    num_views: ClassVar[int] = 20
    method_args: ClassVar[dict[str, ArgSpec]] = {
        "num_crops": (int, 20, "crops (views) per image"),
        "emp_invariance_weight": (float, 200.0, "weight of the crop-to-mean cosine invariance term"),
        "emp_tcr_weight": (float, 1.0, "weight of the total coding rate term"),
        "emp_eps": (float, 0.2, "distortion epsilon of the total coding rate"),
    }

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        self.num_views = self.num_crops  # type: ignore[misc]  # instance value follows --num_crops

    @classmethod
    def views_for(cls, hp: Any = None) -> int:
        return (hp if hp is not None else cls.method_hparams({})).num_crops

    @classmethod
    def check_cfg(cls, model: ModelConfig, hp: Any) -> None:
        super().check_cfg(model, hp)
        crops = cls.views_for(hp)
        if crops < 2:
            raise ValueError(f"--num_crops must be at least 2 for emp_ssl (the loss compares crops), got {crops}")
        eps = hp.emp_eps
        if not eps > 0:
            raise ValueError(f"--emp_eps must be positive, got {eps}")

    @classmethod
    def add_method_args(cls, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Method arguments plus the paper's crop augmentation defaults."""
        super().add_method_args(parser)
        existing = {a.dest for a in parser._actions}
        parser.set_defaults(**{k: list(v) for k, v in EMP_AUGMENTATION_DEFAULTS.items() if k in existing})
        return parser

    def build_projector(self) -> nn.Module:
        return mlp3(self.num_features, self.proj_hidden_dim, self.output_dim)

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        out = super().training_step(batch, batch_idx)
        z = [F.normalize(self.projector(f), dim=1) for f in out["feats"]]
        loss = emp_ssl_loss_func(
            [self.gather(zi) for zi in z],
            invariance_weight=self.emp_invariance_weight,
            tcr_weight=self.emp_tcr_weight,
            eps=self.emp_eps,
        )
        self._log("train_emp_ssl_loss", loss)
        out.update({"loss": out["loss"] + loss, "z": z})
        return out
