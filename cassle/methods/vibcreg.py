"""VIbCReg — Lee & Aune, "VIbCReg: Variance-Invariance-better-Covariance Regularization for
Self-Supervised Learning on Time Series", 2021, later titled "Computer Vision Self-supervised
Learning Methods on Time Series" (https://arxiv.org/abs/2109.00783).

VICReg with two changes: the projector ends in an :class:`IterNorm` whitening layer, and the
covariance term is computed on feature-normalised embeddings
(:func:`cassle.losses.vibcreg.normalized_covariance_loss`). The projector is
``Linear -> BN -> GELU -> Linear -> BN -> GELU -> Linear -> IterNorm`` (the shared
:func:`~cassle.methods.heads.mlp3` with GELU activations, as the reference).

Defaults (solo-learn ``scripts/pretrain/cifar/vibcreg.yaml`` and ``solo/methods/vibcreg.py``):
projector 2048 -> 2048, weights ``sim 25 / var 25 / cov 200``, IterNorm on with 64 groups and
5 Newton iterations; the yaml's LARS / lr 0.3 / classifier_lr 0.1 / weight decay 1e-4 /
augmentations (min scale 0.2, solarization 0.1 on both views) are in
``bash_files/continual/cifar/vibcreg.sh``.

Distributed: the loss sees the global batch (both views gathered with gradients), as VICReg here;
the reference computes the invariance term on the local batch, which gives the same gradient
(a mean of equal-size local means). IterNorm whitens each process's batch on its own, as in the
reference (``--sync_batchnorm`` does not reach it).

Deviations: IterNorm's gradient comes from autograd through the Newton iterations instead of the
reference's hand-written backward (the same derivative); its affine ``weight`` / ``bias`` are 1-D,
so LARS's ``--exclude_bias_n_norm`` treats them as the norm parameters they are. ``--no_iternorm``
drops the layer (the reference's ``iternorm: False``; it is on in the published CIFAR setting).

CaSSLe family: ``predictive_mse`` (VICReg's: MSE distillation weighted by ``sim_loss_weight`` 25).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn

from cassle.losses.vibcreg import vibcreg_loss_func
from cassle.methods.base import METHODS, ArgSpec
from cassle.methods.heads import mlp3
from cassle.methods.vicreg import VICReg

__all__ = ["IterNorm", "VIbCReg"]


class IterNorm(nn.Module):
    """Iterative normalisation: group-wise whitening by Newton's iterations for ``Σ^{-1/2}``.

    Huang et al., "Iterative Normalization: Beyond Standardization towards Efficient Whitening",
    CVPR 2019 (https://arxiv.org/abs/1904.03441). The ``D`` features are split into groups of
    ``c`` consecutive features (``c = ceil(D / num_groups)``, halved until it divides ``D``, as
    the reference). In training mode, per group, with ``X_c`` the centred ``c x B`` batch::

        Σ = eps·I + X_c X_cᵀ / B,   Σ_N = Σ / tr(Σ),
        P_0 = I,   P_{k+1} = (3 P_k − P_k³ Σ_N) / 2   (k < iters),
        W = P_iters / sqrt(tr(Σ)) ≈ Σ^{-1/2},   out = W X_c

    so the output's covariance is close to the identity; in eval mode the running mean and
    running ``W`` (momentum ``momentum``) are used. An affine ``weight`` / ``bias`` per feature
    follows. Computed in float32 (float64 inputs stay float64) with autocast off.

    Running statistics are updated in training mode unless ``track_running_stats`` is False or
    the layer is frozen (its ``weight`` does not require grad): a frozen teacher copy
    (:func:`cassle.strategies.base.teacher_copy`, which stops BatchNorm tracking) normalises with
    the batch's statistics without moving the buffers it was copied with.
    """

    def __init__(
        self,
        num_features: int,
        num_groups: int = 64,
        iters: int = 5,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
    ) -> None:
        super().__init__()
        if num_features < 1 or num_groups < 1 or iters < 1:
            raise ValueError(
                f"IterNorm needs num_features, num_groups, iters >= 1, got {num_features}, {num_groups}, {iters}"
            )
        group_size = -(-num_features // num_groups)  # ceil
        while num_features % group_size:
            group_size //= 2
        self.num_features = num_features
        self.group_size = group_size
        self.num_groups = num_features // group_size
        self.iters = iters
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = True
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(self.num_groups, group_size, 1))
        self.register_buffer("running_wm", torch.eye(group_size).repeat(self.num_groups, 1, 1))

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, groups={self.num_groups}x{self.group_size}, iters={self.iters}, "
            f"eps={self.eps}, momentum={self.momentum}, affine={self.affine}"
        )

    def _tracks(self) -> bool:
        frozen = self.weight is not None and not self.weight.requires_grad
        return self.training and self.track_running_stats and not frozen

    def whitening_matrix(self, xc: torch.Tensor) -> torch.Tensor:
        """``G x c x c`` approximate ``Σ^{-1/2}`` of the centred groups ``xc`` (``G x c x B``)."""
        g, c, n = xc.shape
        eye = torch.eye(c, dtype=xc.dtype, device=xc.device).expand(g, c, c)
        sigma = self.eps * eye + xc @ xc.transpose(1, 2) / n
        trace = sigma.diagonal(dim1=1, dim2=2).sum(-1).view(g, 1, 1)
        sigma_n = sigma / trace
        p = eye
        for _ in range(self.iters):
            p = 1.5 * p - 0.5 * torch.linalg.matrix_power(p, 3) @ sigma_n
        return p / trace.sqrt()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"IterNorm expects a B x {self.num_features} input, got shape {tuple(x.shape)}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = x if x.dtype == torch.float64 else x.float()
            n = xf.shape[0]
            groups = xf.T.reshape(self.num_groups, self.group_size, n)
            if self.training:
                mean = groups.mean(-1, keepdim=True)
                xc = groups - mean
                wm = self.whitening_matrix(xc)
                if self._tracks():
                    with torch.no_grad():
                        self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
                        self.running_wm.lerp_(wm.detach().to(self.running_wm.dtype), self.momentum)
            else:
                xc = groups - self.running_mean.to(xf.dtype)
                wm = self.running_wm.to(xf.dtype)
            out = (wm @ xc).reshape(self.num_features, n).T
            if self.affine:
                out = out * self.weight.to(out.dtype) + self.bias.to(out.dtype)
        return out


@METHODS.register("vibcreg")
class VIbCReg(VICReg):
    """VIbCReg with solo-learn's CIFAR defaults (projector 2048 -> 2048 + IterNorm, weights 25/25/200).

    VICReg's training step (both views gathered, then the loss) with VIbCReg's loss and whitened projector.
    """

    loss_func: ClassVar = staticmethod(vibcreg_loss_func)
    loss_name: ClassVar[str] = "vibcreg"
    method_args: ClassVar[dict[str, ArgSpec]] = {
        "sim_loss_weight": (float, 25.0, "weight of the invariance (MSE) term"),
        "var_loss_weight": (float, 25.0, "weight of the variance term"),
        "cov_loss_weight": (float, 200.0, "weight of the normalised covariance term"),
        "iternorm_groups": (int, 64, "number of IterNorm whitening groups of the projector's output"),
        "no_iternorm": (bool, False, "drop the IterNorm layer at the end of the projector"),
    }

    def build_projector(self) -> nn.Module:
        layers = list(mlp3(self.num_features, self.proj_hidden_dim, self.output_dim, act=nn.GELU))
        if not self.no_iternorm:
            layers.append(IterNorm(self.output_dim, num_groups=self.iternorm_groups))
        return nn.Sequential(*layers)
