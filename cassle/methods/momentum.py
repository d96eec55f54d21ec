"""Momentum (EMA) teacher shared by BYOL and MoCo v2+.

The momentum encoder of MoCo (He et al., "Momentum Contrast for Unsupervised
Visual Representation Learning", CVPR 2020, https://arxiv.org/abs/1911.05722)
and BYOL's target network (Grill et al., NeurIPS 2020,
https://arxiv.org/abs/2006.07733) are exponential moving averages of the
online backbone + projector, ``target = tau * target + (1 - tau) * online``,
with ``tau`` raised from ``base_tau_momentum`` to ``final_tau_momentum`` on a
cosine over the optimizer steps of the fit (BYOL's schedule)::

    tau_k = final - (final - base) * (cos(pi * k / K) + 1) / 2

:func:`ema_update` is the single EMA routine of the project (the AEP/APRE
strategies reuse it).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn

from cassle.config import ModelConfig
from cassle.methods.base import ArgSpec, BaseMethod


@torch.no_grad()
def ema_update(online: nn.Module, target: nn.Module, tau: float) -> None:
    """In place ``target_param = tau * target_param + (1 - tau) * online_param``.

    Only parameters are averaged; buffers (BatchNorm running statistics) of
    ``target`` keep their own values, as in BYOL / solo-learn.

    Raises:
        ValueError: if the two modules do not have the same parameter shapes.
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"ema_update: tau must be in [0, 1], got {tau}")
    online_params = list(online.parameters())
    target_params = list(target.parameters())
    if len(online_params) != len(target_params):
        raise ValueError(f"ema_update: modules differ ({len(online_params)} vs {len(target_params)} parameters)")
    for po, pt in zip(online_params, target_params):
        if po.shape != pt.shape:
            raise ValueError(f"ema_update: shape mismatch {tuple(po.shape)} vs {tuple(pt.shape)}")
        pt.mul_(tau).add_(po.detach(), alpha=1.0 - tau)


def cosine_tau(step: int, max_steps: int, base_tau: float, final_tau: float) -> float:
    """BYOL's momentum at ``step`` of ``max_steps``: ``base`` at 0, ``final`` at ``max_steps``."""
    if max_steps <= 0:
        return final_tau
    k = min(max(step, 0), max_steps)
    return final_tau - (final_tau - base_tau) * (math.cos(math.pi * k / max_steps) + 1) / 2


class BaseMomentumMethod(BaseMethod):
    """``BaseMethod`` plus EMA copies ``momentum_backbone`` / ``momentum_projector``.

    The copies never require gradients and are updated after every real
    optimizer step in :meth:`on_train_batch_end` (steps skipped by gradient
    accumulation do not move them). ``training_step`` additionally returns
    ``momentum_feats`` and ``momentum_z`` (one per view, no gradient).
    """

    method_args: ClassVar[dict[str, ArgSpec]] = {
        "base_tau_momentum": (float, 0.99, "initial EMA momentum of the target network"),
        "final_tau_momentum": (float, 1.0, "final EMA momentum (cosine schedule over the fit)"),
    }

    @classmethod
    def check_cfg(cls, model: ModelConfig, hp: Any) -> None:
        super().check_cfg(model, hp)
        for name in ("base_tau_momentum", "final_tau_momentum"):
            tau = getattr(hp, name)
            if not (math.isfinite(tau) and 0.0 <= tau <= 1.0):
                raise ValueError(f"--{name} is an EMA momentum: give a value in [0, 1] (e.g. 0.99 -> 1.0), got {tau}")

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        self.momentum_backbone: nn.Module = self._frozen_copy(self.backbone)
        self.momentum_projector: nn.Module = self._frozen_copy(self.projector)
        self.current_tau: float = float(self.base_tau_momentum)
        self._last_ema_step: int = -1

    @staticmethod
    def _frozen_copy(module: nn.Module) -> nn.Module:
        copied = copy.deepcopy(module)
        for p in copied.parameters():
            p.requires_grad = False
        return copied

    @property
    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return super().momentum_pairs + [
            (self.backbone, self.momentum_backbone),
            (self.projector, self.momentum_projector),
        ]

    @torch.no_grad()
    def momentum_forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One view through the momentum backbone and projector."""
        feats = self.momentum_backbone(x)
        return {"momentum_feats": feats, "momentum_z": self.momentum_projector(feats)}

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        out = super().training_step(batch, batch_idx)
        _, views, _ = self._unpack_train_batch(batch)
        mom = [self.momentum_forward(v) for v in views]
        out["momentum_feats"] = [m["momentum_feats"] for m in mom]
        out["momentum_z"] = [m["momentum_z"] for m in mom]
        return out

    def on_train_start(self) -> None:
        super().on_train_start()
        self._last_ema_step = int(self.trainer.global_step)
        self._ema_max_steps = int(self.trainer.estimated_stepping_batches)

    def update_momentum(self, step: int, max_steps: int) -> float:
        """EMA-update every pair with the tau of (0-based) ``step``; returns that tau."""
        tau = cosine_tau(step, max_steps, self.base_tau_momentum, self.final_tau_momentum)
        for online, target in self.momentum_pairs:
            ema_update(online, target, tau)
        self.current_tau = tau
        return tau

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_end(outputs, batch, batch_idx)
        step = int(self.trainer.global_step)
        if step <= self._last_ema_step:
            return  # no optimizer step happened (gradient accumulation)
        self._last_ema_step = step
        max_steps = getattr(self, "_ema_max_steps", None)
        if max_steps is None:
            max_steps = int(self.trainer.estimated_stepping_batches)
        tau = self.update_momentum(step - 1, max_steps)
        self._log("tau", tau, on_step=True, on_epoch=False, sync_dist=False)
