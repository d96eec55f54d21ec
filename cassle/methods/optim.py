"""Optimizers and learning-rate schedules shared by every method.

* :class:`LARS` — layer-wise adaptive rate scaling (You et al., "Large Batch
  Training of Convolutional Networks", 2017, https://arxiv.org/abs/1708.03888)
  on top of SGD with momentum, as used by BYOL / Barlow Twins / CaSSLe.
* :func:`warmup_cosine_lambda` / :func:`build_scheduler` — linear warm-up then
  cosine decay, built from :class:`torch.optim.lr_scheduler.LambdaLR` and
  stepped once per optimizer step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, MultiStepLR

from cassle.config import OPTIMIZERS as SUPPORTED_OPTIMIZERS  # their home: the typed config
from cassle.config import SCHEDULERS as SUPPORTED_SCHEDULERS


class LARS(Optimizer):
    """SGD with momentum and a layer-wise trust ratio (LARS).

    For every parameter tensor ``w`` with gradient ``g`` the update direction is
    ``d = g + weight_decay * w``, rescaled by the trust ratio::

        q = eta * ||w|| / ||d||          (q = 1 when ||w|| or ||d|| is 0)
        q = min(q / lr, 1)               (only when ``clip_lr=True``)
        d = q * d

    and then the usual heavy-ball SGD step ``buf = momentum * buf + d``,
    ``w -= lr * buf``. With ``exclude_bias_n_norm=True`` tensors with
    ``ndim <= 1`` (biases, norm-layer affine params) skip the trust ratio *and*
    the weight decay, as in BYOL / Barlow Twins.

    Args:
        params: parameters or param groups (extra keys such as ``name`` are kept).
        lr: learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty added to the gradient before the trust ratio.
        eta: trust coefficient.
        clip_lr: CaSSLe's ``--grad_clip_lars``: never let the adaptive rate
            exceed the global one.
        exclude_bias_n_norm: exclude 0/1-D tensors from LARS adaptation and decay.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.02,
        clip_lr: bool = False,
        exclude_bias_n_norm: bool = False,
    ) -> None:
        if lr < 0:
            raise ValueError(f"LARS: invalid learning rate {lr}")
        if momentum < 0:
            raise ValueError(f"LARS: invalid momentum {momentum}")
        if weight_decay < 0:
            raise ValueError(f"LARS: invalid weight_decay {weight_decay}")
        if eta <= 0:
            raise ValueError(f"LARS: eta must be > 0, got {eta}")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            eta=eta,
            clip_lr=clip_lr,
            exclude_bias_n_norm=exclude_bias_n_norm,
        )
        super().__init__(params, defaults)

    @staticmethod
    def trust_ratio(param: torch.Tensor, update: torch.Tensor, eta: float, lr: float, clip_lr: bool) -> torch.Tensor:
        """The LARS scaling factor ``eta * ||w|| / ||d||`` (see class docstring)."""
        p_norm = torch.linalg.vector_norm(param)
        d_norm = torch.linalg.vector_norm(update)
        one = torch.ones_like(p_norm)
        q = torch.where((p_norm > 0) & (d_norm > 0), eta * p_norm / d_norm.clamp_min(1e-12), one)
        if clip_lr and lr > 0:
            q = torch.minimum(q / lr, one)
        return q

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = group["lr"]
            wd = group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                excluded = group["exclude_bias_n_norm"] and p.ndim <= 1
                if not excluded:
                    if wd != 0:
                        d_p = d_p.add(p, alpha=wd)
                    d_p = d_p * self.trust_ratio(p, d_p, group["eta"], lr, group["clip_lr"])
                if group["momentum"] != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = torch.clone(d_p).detach()
                    else:
                        buf.mul_(group["momentum"]).add_(d_p)
                    d_p = buf
                p.add_(d_p, alpha=-lr)
        return loss


def build_optimizer(
    name: str,
    param_groups: list[dict[str, Any]],
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    eta_lars: float = 0.02,
    grad_clip_lars: bool = False,
    exclude_bias_n_norm: bool = False,
) -> Optimizer:
    """Create ``sgd`` / ``lars`` / ``adamw`` over ``param_groups``."""
    if name == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "lars":
        return LARS(
            param_groups,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            eta=eta_lars,
            clip_lr=grad_clip_lars,
            exclude_bias_n_norm=exclude_bias_n_norm,
        )
    if name == "adamw":
        return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(SUPPORTED_OPTIMIZERS)}")


def warmup_cosine_value(
    step: int,
    base_lr: float,
    warmup_steps: int,
    total_steps: int,
    warmup_start_lr: float = 0.0,
    min_lr: float = 0.0,
) -> float:
    """Learning rate at optimizer step ``step`` (0-based).

    Linear from ``warmup_start_lr`` (step 0) to ``base_lr`` (step
    ``warmup_steps``), then half a cosine from ``base_lr`` down to ``min_lr``
    at step ``total_steps``; constant ``min_lr`` afterwards.
    """
    if step < warmup_steps:
        return warmup_start_lr + (base_lr - warmup_start_lr) * step / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_lambda(
    base_lr: float,
    warmup_steps: int,
    total_steps: int,
    warmup_start_lr: float = 0.0,
    min_lr: float = 0.0,
) -> Callable[[int], float]:
    """A ``LambdaLR`` factor (``lr / base_lr``) following :func:`warmup_cosine_value`."""

    def factor(step: int) -> float:
        if base_lr == 0:
            return 0.0
        lr = warmup_cosine_value(step, base_lr, warmup_steps, total_steps, warmup_start_lr, min_lr)
        return lr / base_lr

    return factor


def build_scheduler(
    name: str,
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    warmup_start_lr: float = 0.0,
    min_lr: float = 0.0,
    milestones: Sequence[int] | None = None,
    gamma: float = 0.1,
) -> LRScheduler | None:
    """Create the schedule.

    ``warmup_cosine`` and ``cosine`` (``warmup_steps = 0``) are per-step
    ``LambdaLR`` schedules applied to every param group from the group's own
    initial lr; ``warmup_start_lr`` and ``min_lr`` are absolute values shared
    by all groups. Groups with ``static_lr=True`` (e.g. SimSiam's predictor)
    keep a constant lr. ``step`` is a ``MultiStepLR`` whose ``milestones`` are
    counted in the unit the caller steps it with. ``none`` returns ``None``.
    """
    if name == "none":
        return None
    if name in ("warmup_cosine", "cosine"):
        if name == "cosine":
            warmup_steps = 0
        lambdas = []
        for group in optimizer.param_groups:
            if group.get("static_lr", False):
                lambdas.append(lambda step: 1.0)
            else:
                lambdas.append(warmup_cosine_lambda(group["lr"], warmup_steps, total_steps, warmup_start_lr, min_lr))
        return LambdaLR(optimizer, lambdas)
    if name == "step":
        if not milestones:
            raise ValueError("scheduler 'step' needs milestones (lr_decay_steps)")
        return MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma)
    raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SUPPORTED_SCHEDULERS)}")


def schedule_lengths(method: Any) -> tuple[int, int]:
    """``(total_steps, warmup_steps)`` of ``method``'s fit, in optimizer steps (warm-up clipped below the run)."""
    trainer = method.trainer
    total = trainer.estimated_stepping_batches
    if not math.isfinite(total) or total <= 0:
        raise ValueError("cannot build the lr schedule: the trainer has no finite length (set max_epochs or max_steps)")
    total = int(total)
    batches = trainer.num_training_batches
    if math.isfinite(batches) and batches > 0:
        steps_per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
    else:
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else method.max_epochs
        steps_per_epoch = max(1, total // max(epochs, 1))
    warmup = int(round(method.warmup_epochs * steps_per_epoch))
    if method.scheduler_name == "warmup_cosine" and warmup >= total:
        rank_zero_warn(
            f"warmup ({warmup} steps) is not shorter than the run ({total} steps); "
            f"clipping it to {max(total - 1, 0)} steps"
        )
        warmup = max(total - 1, 0)
    return total, warmup


def configure_method_optimizers(method: Any) -> Any:
    """A method's optimizer over its ``learnable_params`` (group ``lr`` scaled like the base lr) and its schedule:
    per step (warm-up + cosine) or per epoch (``step``), the lr scaled by ``method.lr_scale()``."""
    scale = method.lr_scale()
    groups = []
    for group in method.learnable_params:
        group = dict(group)
        if not group["params"]:
            continue
        if "lr" in group:
            group["lr"] = group["lr"] * scale
        groups.append(group)
    optimizer = build_optimizer(
        method.optimizer_name,
        groups,
        lr=method.lr * scale,
        weight_decay=method.weight_decay,
        momentum=method.sgd_momentum,
        eta_lars=method.eta_lars,
        grad_clip_lars=method.grad_clip_lars,
        exclude_bias_n_norm=method.exclude_bias_n_norm,
    )
    if method.scheduler_name == "none":
        return optimizer
    if method.scheduler_name == "step":
        epochs = (
            method.trainer.max_epochs
            if method.trainer.max_epochs and method.trainer.max_epochs > 0
            else method.max_epochs
        )
        milestones = method.lr_decay_steps or [int(0.6 * epochs), int(0.8 * epochs)]
        scheduler = build_scheduler("step", optimizer, total_steps=epochs, milestones=milestones)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
    total, warmup = schedule_lengths(method)
    scheduler = build_scheduler(
        method.scheduler_name,
        optimizer,
        total_steps=total,
        warmup_steps=warmup,
        warmup_start_lr=method.warmup_start_lr,
        min_lr=method.min_lr,
    )
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
    }
