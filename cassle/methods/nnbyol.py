"""NNBYOL — BYOL whose regression target is the nearest neighbour of the target projection in a support set.

solo-learn's variant (da Costa et al., "solo-learn: A Library of Self-supervised Methods for Visual
Representation Learning", JMLR 2022, https://jmlr.org/papers/v23/21-1155.html; ``solo/methods/nnbyol.py``)
of BYOL (Grill et al., NeurIPS 2020, https://arxiv.org/abs/2006.07733) with the support-set idea of NNCLR
(Dwibedi et al., ICCV 2021, https://arxiv.org/abs/2104.14548, the paper solo-learn's NNBYOL cites).
Code: https://github.com/vturrisi/solo-learn.

The EMA target network's projections of both views are l2-normalised and looked up in the support set
(cosine, no gradient); the online prediction of each view regresses the neighbour of the other view's
target projection with BYOL's loss (:func:`cassle.losses.byol.byol_loss_func`, summed over the two
directions as in BYOL). The support set is filled, FIFO, with view 1's normalised *target* projections of
every process (the momentum branch, as solo-learn's NNBYOL does), with their labels for ``train_nn_acc``.

Everything else is :class:`~cassle.methods.byol.BYOL` (projector ``Linear-BN-ReLU-Linear``, predictor
``Linear-BN-ReLU-Linear``, cosine EMA schedule); ``z`` is the online projection, not normalised, as in
solo-learn's NNBYOL.

Defaults, all from solo-learn ``scripts/pretrain/cifar/nnbyol.yaml``: projector 4096 -> 256, predictor
hidden 4096, support set 65536, EMA momentum 0.99 -> 1.0.

CaSSLe family: ``predictive`` (BYOL's).

Deviations from the reference: the support set is a :class:`~cassle.methods.queue.FeatureQueue` ring (no
need for ``queue_size`` to be a multiple of the global batch); ``train_nn_acc`` leaves unlabelled samples out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from cassle.losses.byol import byol_loss_func
from cassle.methods.base import METHODS, ArgSpec
from cassle.methods.byol import BYOL
from cassle.methods.queue import SupportSetMixin


@METHODS.register("nnbyol")
class NNBYOL(SupportSetMixin, BYOL):
    """BYOL against support-set neighbours of the target projections (solo-learn's CIFAR defaults).

    ``queue`` is the support set; the step's output adds ``nn`` (the neighbours of each view's target
    projection, detached).
    """

    method_args: ClassVar[dict[str, ArgSpec]] = {
        "queue_size": (int, 65536, "number of past target projections in the support set"),
    }

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        self.build_support_set(self.queue_size, self.output_dim)

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        # BYOL's own step would add the plain BYOL loss: take the momentum step below it
        # (backbone passes, online classifier, target projections) and add the NN form instead
        out = super(BYOL, self).training_step(batch, batch_idx)
        _, _, targets = self._unpack_train_batch(batch)
        z = [self.projector(f) for f in out["feats"]]
        p = [self.predictor(zi) for zi in z]
        mz1, mz2 = out["momentum_z"]
        (nn1, idx1), (nn2, _) = self.nearest_neighbours(mz1), self.nearest_neighbours(mz2)
        loss = byol_loss_func(p[0], nn2) + byol_loss_func(p[1], nn1)
        self.log_nn_accuracy(idx1, targets)
        self.update_support_set(mz1, targets)
        self._log("train_nnbyol_loss", loss)
        out.update({"loss": out["loss"] + loss, "z": z, "p": p, "nn": [nn1, nn2]})
        return out
