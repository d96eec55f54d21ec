"""ReSSL — Zheng, You, Wang, Qian, Zhang, Wang & Xu, "ReSSL: Relational Self-Supervised Learning with Weak
Augmentation", NeurIPS 2021 (https://arxiv.org/abs/2107.09282).

A momentum teacher sees a *weakly* augmented view (view 1: crop + flip only) and the student a *strongly*
augmented one (view 0: crop, colour jitter, grayscale, blur, flip). Each projection is related to a queue of
past teacher projections by a softmax over the queue; the student's relation (temperature ``temperature_q``)
is trained to match the teacher's sharper one (``temperature_k``) by cross-entropy
(:func:`cassle.losses.ressl.ressl_loss_func`). After the loss, the teacher's l2-normalised weak-view
projections, gathered from every process (so every rank keeps the same queue), enter the queue
(:class:`~cassle.methods.queue.FeatureQueue`, which starts with random unit vectors as in solo-learn).
The loss is asymmetric, as in the paper and both references: only view 0 trains the student.

Defaults (CIFAR):

* projector ``Linear -> ReLU -> Linear`` (no BN), 4096 -> 256: solo-learn ``scripts/pretrain/cifar/ressl.yaml``
  and ``solo/methods/ressl.py`` (the CaSSLe repository's ``cassle/methods/ressl.py`` has the same head with a
  2048 default hidden width; the published CIFAR yaml wins);
* ``temperature_q`` 0.1, ``temperature_k`` 0.04: solo-learn ``ressl.yaml``, CaSSLe ``ressl.py``;
* ``queue_size`` 65536: solo-learn's and CaSSLe's default (the yaml does not set it);
* ``base_tau_momentum`` 0.99 -> ``final_tau_momentum`` 1.0 (cosine): solo-learn ``ressl.yaml``;
* the two views' augmentations: solo-learn ``scripts/pretrain/cifar/augmentations/ressl.yaml`` (strong view:
  crop scale 0.08-1, jitter 0.4/0.4/0.2/0.1 with p 0.8, grayscale 0.2, blur 0.5, flip 0.5; weak view: crop
  0.08-1 and flip 0.5 only). :meth:`ReSSL.add_method_args` makes them the command-line defaults of
  ``--method ressl`` (one value per view), so a run gets the weak teacher view without extra flags;
* optimiser (in the bash files): SGD lr 0.05, weight decay 1e-4, classifier lr 0.1, batch 256, warm-up cosine:
  solo-learn ``ressl.yaml``.

``z`` (one per view, with gradient) is the raw projection; the references' ``z`` is its l2-normalised form
(``normalized_projection``), so CaSSLe's predictor is fed the normalised projection.

Differences from the references: the queue is pushed with every gathered key even when the queue size is not a
multiple of the global batch (the references assert it is); the momentum teacher also embeds view 0, which
the loss does not use (:class:`~cassle.methods.momentum.BaseMomentumMethod` embeds every view).

CaSSLe family: ``predictive`` (chosen by experiment; the CaSSLe repository has no ReSSL distiller). The two
candidates were ``contrastive`` (the loss relates a sample to a bank of others, like InfoNCE) and
``predictive`` (ReSSL is a momentum teacher-student method, like BYOL). Command (digits, 2 class-incremental
tasks, 3 epochs each, OMP_NUM_THREADS=1; ``X`` the distiller, seeds 5 (default) and 1)::

    nice python main_continual.py --dataset digits --encoder slim_resnet9 --method ressl --strategy cassle
        --distiller X --num_tasks 2 --max_epochs 3 --batch_size 64 --lr 0.3 --proj_hidden_dim 256
        --output_dim 64 --queue_size 512 --gpu_augment --num_workers 0 --no_baseline --probes knn [--seed 1]

Final joint kNN accuracy after task 1: ``predictive`` 96.90 / 94.65, ``contrastive`` 96.34 / 94.08 (seed 5 /
seed 1): predictive is ahead by 0.56 points in both seeds, which is small (about 2 of the 355 test images), so
the choice is a weak one; task-0 retention was split (one seed each).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from cassle.config import ModelConfig
from cassle.losses.ressl import ressl_loss_func
from cassle.methods.base import METHODS, ArgSpec
from cassle.methods.heads import mlp2_nobn
from cassle.methods.momentum import BaseMomentumMethod
from cassle.methods.queue import FeatureQueue

#: solo-learn ``scripts/pretrain/cifar/augmentations/ressl.yaml``: view 0 strong (student), view 1 weak
#: (teacher: crop + flip only).
RESSL_AUGMENTATION_DEFAULTS: dict[str, list[float]] = {
    "min_scale": [0.08],
    "max_scale": [1.0],
    "brightness": [0.4, 0.0],
    "contrast": [0.4, 0.0],
    "saturation": [0.2, 0.0],
    "hue": [0.1, 0.0],
    "color_jitter_prob": [0.8, 0.0],
    "grayscale_prob": [0.2, 0.0],
    "gaussian_prob": [0.5, 0.0],
    "solarization_prob": [0.0],
    "horizontal_flip_prob": [0.5],
}


@METHODS.register("ressl")
class ReSSL(BaseMomentumMethod):
    """ReSSL with solo-learn's CIFAR defaults (projector 4096 -> 256, T 0.1 / 0.04, queue 65536).

    View 0 is the strong (student) view and view 1 the weak (teacher) view. ``queue`` is a
    :class:`~cassle.methods.queue.FeatureQueue` of ``queue_size`` l2-normalised teacher projections.
    """

    family: ClassVar[str] = "predictive"
    normalized_projection: ClassVar[bool] = True  # the references' z is the unit-norm projection
    default_proj_hidden_dim: ClassVar[int] = 4096
    default_output_dim: ClassVar[int] = 256
    method_args: ClassVar[dict[str, ArgSpec]] = {
        "temperature_q": (float, 0.1, "ReSSL: softmax temperature of the student's (strong view) relations"),
        "temperature_k": (float, 0.04, "ReSSL: softmax temperature of the teacher's (weak view) relations"),
        "queue_size": (int, 65536, "past teacher projections the relations are computed against"),
        "base_tau_momentum": (float, 0.99, "initial EMA momentum of the teacher"),
        "final_tau_momentum": (float, 1.0, "final EMA momentum (cosine schedule over the fit)"),
    }

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        self.queue = FeatureQueue(self.queue_size, self.output_dim, init="random")

    @classmethod
    def check_cfg(cls, model: ModelConfig, hp: Any) -> None:
        super().check_cfg(model, hp)
        if not (hp.temperature_q > 0 and hp.temperature_k > 0):
            raise ValueError(
                f"--temperature_q and --temperature_k must be > 0, got {hp.temperature_q} and {hp.temperature_k}"
            )
        if hp.queue_size < 1:
            raise ValueError(f"ressl needs --queue_size >= 1 (its relations are to the queue), got {hp.queue_size}")

    @classmethod
    def add_method_args(cls, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Method arguments plus solo-learn's strong / weak view augmentation defaults."""
        super().add_method_args(parser)
        existing = {a.dest for a in parser._actions}
        parser.set_defaults(**{k: list(v) for k, v in RESSL_AUGMENTATION_DEFAULTS.items() if k in existing})
        return parser

    def build_projector(self) -> nn.Module:
        return mlp2_nobn(self.num_features, self.proj_hidden_dim, self.output_dim)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Push the l2-normalised teacher projections ``keys`` (all processes', gathered) into the queue."""
        self.queue.push(F.normalize(keys.detach(), dim=1))

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        out = super().training_step(batch, batch_idx)
        z = [self.projector(f) for f in out["feats"]]
        k = out["momentum_z"][1]  # the teacher's weak view
        queue = self.queue.rows().clone()
        loss = ressl_loss_func(z[0], k, queue, self.temperature_q, self.temperature_k)
        self.enqueue(self.gather(k))
        self._log("train_ressl_loss", loss)
        out.update({"loss": out["loss"] + loss, "z": z})
        return out
