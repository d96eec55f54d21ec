"""W-MSE — Ermolov, Siarohin, Sangineto & Sebe, "Whitening for Self-Supervised Representation Learning",
ICML 2021 (https://arxiv.org/abs/2007.06346).

The projections of the two views are split into random sub-batches of ``whitening_size`` rows (one
permutation shared by the views), each sub-batch of each view is whitened by a Cholesky factor of its
covariance, and the whitened, l2-normalised positives are pulled together with an MSE
(:func:`cassle.losses.wmse.wmse_loss_func`); ``whitening_iters`` partitions are averaged.

Distributed form: the projections of every process are gathered (with gradients, :meth:`BaseMethod.gather`)
and the whole global batch is partitioned and whitened, so the sub-batches are drawn from the global batch as
in the paper's single-device description. The permutation comes from a generator seeded by ``(seed, task,
global step, iteration)``: the same on every rank (each rank computes the same loss) and the same after a
resume. (solo-learn and the CaSSLe repository whiten each process's own batch; on one device both forms are
the same.)

Defaults (CIFAR):

* projector ``Linear -> BN -> ReLU -> Linear``, 1024 -> 64 and ``whitening_size`` 128: solo-learn
  ``scripts/pretrain/cifar/wmse.yaml`` (the CaSSLe repository's ``cassle/methods/wmse.py`` defaults are
  1024 -> 128 and 256; the published CIFAR yaml wins);
* ``whitening_iters`` 1, ``whitening_eps`` 0: solo-learn and CaSSLe ``wmse.py``;
* optimiser (in the bash files): Adam lr 2e-3, weight decay 1e-6, classifier lr 3e-3, warm-up from 0, batch
  256, and the augmentations (crop scale 0.2-1, jitter 0.8/0.8/0.8/0.2 with p 0.8, grayscale 0.2, no blur, no
  solarisation): solo-learn ``wmse.yaml``. This project has ``adamw`` but no ``adam``; with weight decay 1e-6
  the two differ negligibly.

``z`` (one per view, with gradient) is the projection before whitening.

Differences from the references:

* the loss lets gradients flow into both whitened views, as the paper's ``norm_mse_loss`` does
  (``htdt/self-supervised``); solo-learn's and CaSSLe's ``simplified`` path detaches the second view, which
  their non-simplified path does not;
* a batch whose size is not a multiple of the (effective) whitening size is split into ``N // w`` sub-batches
  of ``w`` or ``w + 1`` rows (the references refuse it), and ``w`` is capped at the batch size (replay strategies
  and small runs change the batch);
* a sub-batch of at most ``D`` rows cannot have a full-rank covariance: then (tests, tiny runs) whitening uses
  the shrinkage ``max(whitening_eps, SMALL_BATCH_EPS)`` and warns once, where the references would fail in the
  Cholesky decomposition.

CaSSLe family: ``decorrelative`` (chosen by experiment; the CaSSLe repository has no W-MSE distiller).
Candidates: ``predictive_mse`` (the loss is an MSE between positives; λ 25), ``decorrelative`` (whitening
decorrelates the features, as Barlow Twins' cross-correlation objective does; λ 1, off-diagonal 5e-3, scale
0.1) and ``predictive`` (the MSE of normalised vectors is 2 − 2·cos). Command (digits, 2 class-incremental
tasks, 3 epochs each, OMP_NUM_THREADS=1, default seed 5; ``X`` the distiller)::

    nice python main_continual.py --dataset digits --encoder slim_resnet9 --method wmse --strategy cassle
        --distiller X --num_tasks 2 --max_epochs 3 --batch_size 64 --optimizer adamw --lr 2e-3
        --classifier_lr 3e-3 --weight_decay 1e-6 --proj_hidden_dim 256 --output_dim 16 --whitening_size 32
        --gpu_augment --num_workers 0 --no_baseline --probes knn

Final joint kNN accuracy after task 1: ``decorrelative`` 97.75, ``predictive`` 97.18, ``predictive_mse``
97.18 (one seed; the margin is about 2 of the 355 test images, so the choice is a weak one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn
from lightning.pytorch.utilities import rank_zero_warn

from cassle.config import ModelConfig
from cassle.data.sampling import mix_seed
from cassle.losses.wmse import wmse_loss_func
from cassle.methods.base import METHODS, ArgSpec, BaseMethod
from cassle.methods.heads import mlp2

#: shrinkage used when a sub-batch has no more rows than the projection has dimensions (rank-deficient)
SMALL_BATCH_EPS = 1e-2


@METHODS.register("wmse")
class WMSE(BaseMethod):
    """W-MSE with solo-learn's CIFAR defaults (projector 1024 -> 64, whitening sub-batches of 128)."""

    family: ClassVar[str] = "decorrelative"
    default_proj_hidden_dim: ClassVar[int] = 1024
    default_output_dim: ClassVar[int] = 64
    method_args: ClassVar[dict[str, ArgSpec]] = {
        "whitening_size": (int, 128, "W-MSE: rows per whitened sub-batch (larger than --output_dim)"),
        "whitening_iters": (int, 1, "W-MSE: random sub-batch partitions averaged per step"),
        "whitening_eps": (float, 0.0, "W-MSE: shrinkage of the covariance towards the identity, in [0, 1)"),
    }

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        self._warned_small_batch = False

    @classmethod
    def check_cfg(cls, model: ModelConfig, hp: Any) -> None:
        super().check_cfg(model, hp)
        if hp.whitening_size < 2:
            raise ValueError(f"--whitening_size must be at least 2 rows, got {hp.whitening_size}")
        if hp.whitening_iters < 1:
            raise ValueError(f"--whitening_iters must be at least 1, got {hp.whitening_iters}")
        if not 0.0 <= hp.whitening_eps < 1.0:
            raise ValueError(f"--whitening_eps must be in [0, 1), got {hp.whitening_eps}")

    def build_projector(self) -> nn.Module:
        return mlp2(self.num_features, self.proj_hidden_dim, self.output_dim)

    def whitening_generator(self) -> torch.Generator:
        """The generator of this step's sub-batch permutations: keyed on ``(seed, task, global step)``, so
        every rank draws the same partition and a resumed run repeats the uninterrupted one."""
        task = int(getattr(self, "current_task_idx", 0) or 0)
        return torch.Generator().manual_seed(mix_seed(self.seed, task, int(self.global_step), 0x5753))

    def whitening_plan(self, n: int) -> tuple[int, float]:
        """``(sub-batch size, shrinkage)`` for a global batch of ``n`` rows."""
        size = min(self.whitening_size, n)
        eps = self.whitening_eps
        if size <= self.output_dim:
            eps = max(eps, SMALL_BATCH_EPS)
            if not self._warned_small_batch:
                rank_zero_warn(
                    f"wmse: whitening sub-batches of {size} rows cannot have a full-rank covariance of the "
                    f"{self.output_dim}-d projections; whitening with shrinkage {eps} (use a batch and "
                    "--whitening_size larger than --output_dim)"
                )
                self._warned_small_batch = True
        return size, eps

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        out = super().training_step(batch, batch_idx)
        z = [self.projector(f) for f in out["feats"]]
        views = [self.gather(zv) for zv in z]
        size, eps = self.whitening_plan(views[0].shape[0])
        loss = wmse_loss_func(views, size, self.whitening_iters, eps, generator=self.whitening_generator())
        self._log("train_wmse_loss", loss)
        out.update({"loss": out["loss"] + loss, "z": z})
        return out
