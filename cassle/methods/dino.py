"""DINO — Caron et al., "Emerging Properties in Self-Supervised Vision
Transformers", ICCV 2021 (https://arxiv.org/abs/2104.14294).

Self-distillation without labels: a student (backbone → MLP → bottleneck ``z`` → l2-normalise →
weight-normalised linear layer to ``num_prototypes`` scores) predicts, for every other view, the
centred and sharpened softmax of an EMA teacher with the same architecture
(:func:`cassle.losses.dino.dino_loss_func`). The centre is an EMA of the teacher's global batch mean,
kept as the ``center`` buffer so it is in every checkpoint.

Head layout. ``projector`` is the MLP up to the bottleneck (its output is ``z``, the projection CaSSLe
distils) and ``prototypes`` the weight-normalised last layer, so ``prototypes(F.normalize(z))`` is
exactly DINO's head and CaSSLe's ``knowledge`` distiller (which scores the l2-normalised ``z`` with a
copy of ``prototypes``) sees the method's own head. The teacher is ``momentum_backbone`` +
``momentum_projector`` + ``momentum_prototypes``, all EMA copies.

Defaults and where they come from:

* projector 2048 → 256 (bottleneck), 4096 prototypes, EMA momentum 0.9995 → 1.0, LARS lr 0.3,
  ``eta`` 0.02, clipped trust ratio, weight decay 1e-6, batch 256, asymmetric augmentations:
  solo-learn ``scripts/pretrain/cifar/dino.yaml`` (+ ``augmentations/asymmetric.yaml``).
* student temperature 0.1, teacher temperature 0.07 warmed up from 0.04, centre momentum 0.9,
  last layer frozen for 1 epoch, no gradient clipping (``clip_grad`` 0), ``norm_last_layer``
  (the magnitude ``g`` of the prototypes fixed at 1): solo-learn ``solo/methods/dino.py`` /
  ``solo/losses/dino.py`` and the CaSSLe repository's ``cassle/methods/dino.py`` (same values).
* teacher-temperature warm-up over 50 epochs: the CaSSLe repository's ``--warmup_teacher_temperature_epochs``
  default (solo-learn's CIFAR recipe uses 0, i.e. 0.07 throughout; the paper 30 epochs of 0.04 → 0.07).
  Like every per-epoch schedule here it restarts with each task's fit, as in CaSSLe (one run per task).
* BatchNorm in the hidden layers of the head: the CaSSLe repository's DINO head (``use_bn`` left at its
  default ``True``); solo-learn's CIFAR recipe sets ``use_bn_in_head: False``.

Deviations from the references:

* the head's MLP is the shared :func:`~cassle.methods.heads.mlp3` with GELU activations
  (DINO's activation); the linear layers are initialised with a truncated normal (std 0.02, bias 0) and
  the prototypes keep PyTorch's default init with ``g = 1``, as in both references.
* ``norm_last_layer`` is not an option (always on): both references default to it and it keeps the
  ResNet head stable; a ``bool`` option defaulting to ``True`` could not be switched off from the command line.
* the teacher-temperature schedule clamps to the final value past its end instead of indexing past a
  ``max_epochs``-long table (the references fail when ``max_epochs`` < warm-up epochs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from cassle.losses.dino import dino_center_update, dino_loss_func, dino_teacher_temperature
from cassle.methods.base import METHODS, ArgSpec
from cassle.methods.heads import mlp3
from cassle.methods.momentum import BaseMomentumMethod


@METHODS.register("dino")
class DINO(BaseMomentumMethod):
    """DINO with solo-learn's CIFAR defaults (head 2048 → 256 → 4096 prototypes, EMA 0.9995 → 1).

    ``training_step`` returns ``z`` (student bottlenecks, with gradient), ``logits`` (student prototype
    scores) and ``momentum_logits`` (teacher scores, no gradient), one per view.
    """

    family: ClassVar[str] = "knowledge"
    default_proj_hidden_dim: ClassVar[int] = 2048
    default_output_dim: ClassVar[int] = 256
    method_args: ClassVar[dict[str, ArgSpec]] = {
        "num_prototypes": (int, 4096, "number of prototypes (outputs of DINO's weight-normalised last layer)"),
        "student_temperature": (float, 0.1, "softmax temperature of the student"),
        "teacher_temperature": (float, 0.07, "teacher temperature after the warm-up"),
        "warmup_teacher_temperature": (float, 0.04, "teacher temperature at epoch 0"),
        "warmup_teacher_temperature_epochs": (int, 50, "epochs of linear teacher-temperature warm-up (0 = none)"),
        "center_momentum": (float, 0.9, "EMA momentum of the teacher centre"),
        "freeze_last_layer": (int, 1, "epochs during which the prototypes (last layer) do not learn"),
        "clip_grad": (float, 0.0, "per-parameter gradient-norm clip of the backbone (0 = off)"),
        "base_tau_momentum": (float, 0.9995, "initial EMA momentum of the teacher"),
        "final_tau_momentum": (float, 1.0, "final EMA momentum (cosine schedule over the fit)"),
    }

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        self.prototypes: nn.Module = self._build_prototypes()
        self.momentum_prototypes: nn.Module = self._frozen_copy(self.prototypes)
        self.register_buffer("center", torch.zeros(1, self.num_prototypes))

    # --------------------------------------------------------------- modules
    def build_projector(self) -> nn.Module:
        head = mlp3(self.num_features, self.proj_hidden_dim, self.output_dim, act=nn.GELU)  # DINO's activation
        for m in head.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        return head

    def _build_prototypes(self) -> nn.Module:
        """Weight-normalised ``Linear(output_dim, num_prototypes)`` with its magnitude fixed at 1."""
        layer = nn.utils.parametrizations.weight_norm(nn.Linear(self.output_dim, self.num_prototypes, bias=False))
        magnitude = layer.parametrizations.weight.original0
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad_(False)  # norm_last_layer: every prototype stays unit-norm
        return layer

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        return super().learnable_params + [{"name": "prototypes", "params": self._trainable(self.prototypes)}]

    @property
    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return super().momentum_pairs + [(self.prototypes, self.momentum_prototypes)]

    # --------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().forward(x)
        out["logits"] = self.prototypes(F.normalize(out["z"], dim=-1))
        return out

    def teacher_temperature_now(self) -> float:
        """The teacher temperature of the current epoch."""
        return dino_teacher_temperature(
            int(self.current_epoch),
            self.warmup_teacher_temperature,
            self.teacher_temperature,
            self.warmup_teacher_temperature_epochs,
        )

    @torch.no_grad()
    def update_center(self, teacher_logits: Sequence[torch.Tensor]) -> None:
        """EMA of the centre towards the teacher's global batch mean (all-reduced across processes)."""
        new = dino_center_update(self.center, teacher_logits, self.center_momentum, world_size=self.world_size())
        self.center.copy_(new)

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        out = super().training_step(batch, batch_idx)
        z = [self.projector(f) for f in out["feats"]]
        logits = [self.prototypes(F.normalize(zi, dim=-1)) for zi in z]
        with torch.no_grad():
            momentum_logits = [self.momentum_prototypes(F.normalize(mz, dim=-1)) for mz in out["momentum_z"]]
        temperature = self.teacher_temperature_now()
        loss = dino_loss_func(
            logits,
            momentum_logits,
            self.center,
            student_temperature=self.student_temperature,
            teacher_temperature=temperature,
        )
        self.update_center(momentum_logits)  # after the loss, which used the previous centre
        self._log("train_dino_loss", loss)
        self._log("dino_teacher_temperature", temperature, on_step=False, sync_dist=False)
        out.update(
            {
                "loss": out["loss"] + loss,
                "z": z,
                "logits": logits,
                "momentum_logits": momentum_logits,
            }
        )
        return out

    # --------------------------------------------------------------- backward
    def on_after_backward(self) -> None:
        """Optional per-parameter clipping of the backbone's gradients; drop the prototypes' while frozen."""
        super().on_after_backward()
        if self.clip_grad > 0:
            for p in self.backbone.parameters():
                if p.grad is not None:
                    scale = self.clip_grad / (p.grad.norm(2) + 1e-6)
                    if scale < 1:
                        p.grad.mul_(scale)
        if self.current_epoch < self.freeze_last_layer:
            for p in self.prototypes.parameters():
                p.grad = None
