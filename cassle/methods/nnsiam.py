"""NNSiam — SimSiam whose target is the nearest neighbour of the other view's projection in a support set.

solo-learn's variant (da Costa et al., "solo-learn: A Library of Self-supervised Methods for Visual
Representation Learning", JMLR 2022, https://jmlr.org/papers/v23/21-1155.html; ``solo/methods/nnsiam.py``,
https://github.com/vturrisi/solo-learn) of SimSiam (Chen & He, CVPR 2021, https://arxiv.org/abs/2011.10566)
with the support-set idea of NNCLR (Dwibedi et al., ICCV 2021, https://arxiv.org/abs/2104.14548, the paper
solo-learn's NNSiam cites).

Both views' l2-normalised projections are looked up in the support set (cosine, no gradient, so the
stop-gradient of SimSiam is the lookup itself); each view's prediction is pulled towards the neighbour of the
other view's projection with SimSiam's loss (:func:`cassle.losses.simsiam.simsiam_loss_func`, averaged over
the two directions). The support set is filled, FIFO, with view 1's normalised projections of every process,
with their labels for ``train_nn_acc``.

Everything else is :class:`~cassle.methods.simsiam.SimSiam` (3-layer bias-free projector ending in a
non-affine BN, bottleneck predictor at a constant learning rate); ``z`` is the l2-normalised projection
(hence ``normalized_projection``) and the predictor reads the raw one, as in solo-learn's NNSiam.

Defaults, all from solo-learn ``scripts/pretrain/cifar/nnsiam.yaml``: projector 2048 -> 2048, predictor
hidden 4096 (SimSiam's own CIFAR predictor is a 512 bottleneck), support set 65536.

CaSSLe family: ``predictive`` (SimSiam's).

Deviations from the reference: the support set is a :class:`~cassle.methods.queue.FeatureQueue` ring (no
need for ``queue_size`` to be a multiple of the global batch); ``train_nn_acc`` leaves unlabelled samples out.
The reference's last projector linear has a frozen bias (followed by BN); here it has none, which is the same
function with no dead parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from cassle.losses.simsiam import simsiam_loss_func
from cassle.methods.base import METHODS, ArgSpec
from cassle.methods.queue import SupportSetMixin
from cassle.methods.simsiam import SimSiam


@METHODS.register("nnsiam")
class NNSiam(SupportSetMixin, SimSiam):
    """SimSiam against support-set neighbours (solo-learn's CIFAR defaults: 2048 -> 2048, predictor 4096).

    ``queue`` is the support set; the step's output adds ``nn`` (the neighbours of each view's ``z``,
    detached).
    """

    normalized_projection: ClassVar[bool] = True  # solo-learn's NNSiam returns the unit-norm projection
    method_args: ClassVar[dict[str, ArgSpec]] = {
        "queue_size": (int, 65536, "number of past projections in the support set"),
        "pred_hidden_dim": (int, 4096, "bottleneck width of the NNSiam predictor"),
    }

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        self.build_support_set(self.queue_size, self.output_dim)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(x)
        z = self.projector(feats)
        return {"feats": feats, "z": F.normalize(z, dim=-1), "p": self.predictor(z)}

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        # SimSiam's own step would add the plain SimSiam loss: take the base step below it
        # (backbone passes, online classifier) and add the NN form instead
        out = super(SimSiam, self).training_step(batch, batch_idx)
        _, _, targets = self._unpack_train_batch(batch)
        projections = [self.projector(f) for f in out["feats"]]
        p = [self.predictor(zi) for zi in projections]
        z = [F.normalize(zi, dim=-1) for zi in projections]
        (nn1, idx1), (nn2, _) = self.nearest_neighbours(z[0]), self.nearest_neighbours(z[1])
        loss = simsiam_loss_func(p[0], nn2) / 2 + simsiam_loss_func(p[1], nn1) / 2
        self.log_nn_accuracy(idx1, targets)
        self.update_support_set(z[0], targets)
        self._log("train_nnsiam_loss", loss)
        out.update({"loss": out["loss"] + loss, "z": z, "p": p, "nn": [nn1, nn2]})
        return out
