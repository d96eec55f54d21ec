"""The linear-evaluation model (frozen backbone + linear classifier) and its data pieces."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cassle.checkpoint import CheckpointError, check_backbone_state
from cassle.data.subsets import IndexedSubset  # noqa: F401  (re-exported)
from cassle.eval.linear_metrics import EvalLayout, aggregate_metrics, sample_outcomes


def stratified_fraction(targets: Tensor, indices: Tensor, fraction: float, seed: int) -> Tensor:
    """Keep a seeded, class-stratified ``fraction`` of ``indices`` (``--data_fraction``).

    :func:`cassle.data.splits.stratified_subset` with a generator seeded by ``seed``: each class
    with ``n_c`` samples keeps ``max(1, floor(fraction · n_c + 0.5))``; ascending order;
    ``fraction == 1`` returns ``indices`` sorted.

    Example:
        >>> y = torch.tensor([0] * 10 + [1] * 4)
        >>> stratified_fraction(y, torch.arange(14), 0.5, seed=0).numel()
        7
    """
    from cassle.data.splits import stratified_subset

    indices = torch.as_tensor(indices, dtype=torch.long)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return torch.sort(indices).values
    return stratified_subset(targets, indices, fraction, torch.Generator().manual_seed(int(seed)))


def linear_train_transform(crop_size: int, mean: Sequence[float], std: Sequence[float]) -> Callable[[Tensor], Tensor]:
    """Supervised augmentation: RandomResizedCrop(scale 0.08–1) + horizontal flip + normalise."""
    from cassle.data.transforms import build_view_transform

    return build_view_transform(
        crop_size,
        mean,
        std,
        color_jitter_prob=0.0,
        grayscale_prob=0.0,
        gaussian_prob=0.0,
        solarization_prob=0.0,
        horizontal_flip_prob=0.5,
        min_scale=0.08,
        max_scale=1.0,
    )


def backbone_state_dict(state_dict: dict[str, Tensor], path: str = "checkpoint") -> dict[str, Tensor]:
    """The ``backbone.*`` tensors of a task checkpoint, prefix removed (not ``momentum_backbone.*``)."""
    sd = {k[len("backbone.") :]: v for k, v in state_dict.items() if k.startswith("backbone.")}
    if not sd:
        raise CheckpointError(
            f"{path} holds no backbone tensors (no 'backbone.*' keys); pass a taskK.ckpt of main_continual.py"
        )
    return sd


def load_frozen_backbone(
    encoder: str,
    crop_size: int,
    base_width: int | None,
    state: dict[str, Tensor],
    path: str = "checkpoint",
    foreign: bool = False,
) -> nn.Module:
    """Build ``encoder``, load ``state`` strictly, freeze it and put it in eval mode.

    Raises:
        CheckpointError: missing, unexpected or mis-shaped tensors (the message
            names a few and the arguments to fix: :func:`cassle.checkpoint.check_backbone_state`).
    """
    from cassle.backbones import build_backbone

    check_backbone_state(encoder, crop_size, base_width, state, path, foreign=foreign)
    backbone = build_backbone(encoder, crop_size, base_width)
    backbone.load_state_dict(state, strict=True)
    for p in backbone.parameters():
        p.requires_grad_(False)
    return backbone.eval()


class LinearModel(pl.LightningModule):
    """A frozen backbone and a trainable ``nn.Linear`` classifier.

    The backbone never trains: its parameters have ``requires_grad=False``, its
    forward runs under ``no_grad`` and :meth:`train` keeps it in eval mode (so
    batch-norm running statistics stay as pretrained). Training batches are
    ``(images, targets)``; validation batches ``(images, targets, indexes)``
    where ``indexes`` are test-set positions. After each validation epoch the
    metrics of :func:`aggregate_metrics` are logged and kept in
    :attr:`last_metrics`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        layout: EvalLayout,
        optimizer: str = "sgd",
        lr: float = 0.1,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        scheduler: str = "step",
        lr_decay_steps: Sequence[int] = (60, 80),
        warmup_epochs: float = 0.0,
        feature_norm: str = "bn",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        if feature_norm not in ("bn", "none"):
            raise ValueError(f"unknown feature_norm {feature_norm!r}; choose bn or none")
        # bn: a non-affine BatchNorm1d standardises the frozen features (batch statistics while training,
        # running statistics when evaluating), as MAE's linear probe; none: raw features (CaSSLe's protocol)
        nf = int(backbone.num_features)
        self.feature_norm = nn.BatchNorm1d(nf, affine=False) if feature_norm == "bn" else nn.Identity()
        self.classifier = nn.Linear(nf, layout.num_classes)
        self.layout = layout
        self.register_buffer("task_masks", layout.task_masks(), persistent=False)
        self.optimizer_name, self.lr, self.weight_decay, self.momentum = optimizer, lr, weight_decay, momentum
        self.scheduler_name, self.lr_decay_steps, self.warmup_epochs = scheduler, list(lr_decay_steps), warmup_epochs
        self._val_parts: list[tuple[Tensor, ...]] = []
        self.last_metrics: dict[str, float] = {}
        self.last_epoch = -1
        #: the mean training loss of every epoch (what :func:`~cassle.eval.linear_metrics.fit_warnings` reads)
        self.epoch_losses: list[float] = []
        self.backbone.eval()

    def train(self, mode: bool = True) -> LinearModel:
        """Set the classifier's mode; the backbone stays in eval mode."""
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            feats = self.backbone(x)
        return self.classifier(self.feature_norm(feats.detach().float()))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, targets = batch[0], batch[1]
        logits = self(images)
        loss = F.cross_entropy(logits, targets)
        acc1 = (logits.argmax(1) == targets).float().mean() * 100.0
        if hasattr(self, "_loss_sum"):  # summed on the device: no sync per step
            self._loss_sum += loss.detach() * len(targets)
            self._loss_count += len(targets)
        # averaged over the ranks under DDP (each trains on its shard): the logged numbers are the whole set's
        self.log(
            "train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(targets), sync_dist=True
        )
        self.log("train_acc1", acc1, on_step=False, on_epoch=True, batch_size=len(targets), sync_dist=True)
        return loss

    def on_train_epoch_start(self) -> None:
        self._loss_sum, self._loss_count = torch.zeros((), device=self.device), 0

    def on_train_epoch_end(self) -> None:  # this rank's mean (Lightning's epoch value is reduced after this hook)
        if getattr(self, "_loss_count", 0):
            self.epoch_losses.append(float(self._loss_sum) / self._loss_count)

    def on_validation_epoch_start(self) -> None:
        self._val_parts = []

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        images, targets, indexes = batch
        logits = self(images)
        top1, top5, aware = sample_outcomes(logits, targets, self.task_masks)
        self._val_parts.append((indexes, top1, top5, aware))

    def on_validation_epoch_end(self) -> None:
        if not self._val_parts:
            return
        idx, top1, top5, aware = (torch.cat(p) for p in zip(*self._val_parts))
        self._val_parts = []
        if self.trainer.world_size > 1:  # every rank sees the same number of samples (padded sampler)
            idx, top1, top5, aware = (
                self.all_gather(t.to(torch.uint8) if t.dtype == torch.bool else t).flatten(0, 1)
                for t in (idx, top1, top5, aware)
            )
        n, num_tasks = self.layout.num_test, len(self.layout.task_classes)
        full = [
            torch.zeros(n, dtype=torch.bool),
            torch.zeros(n, dtype=torch.bool),
            torch.zeros(n, num_tasks, dtype=torch.bool),
        ]
        seen = torch.zeros(n, dtype=torch.bool)
        idx = idx.cpu()
        for buf, val in zip(full, (top1, top5, aware)):
            buf[idx] = val.cpu().bool()
        seen[idx] = True
        metrics = aggregate_metrics(
            full[0],
            full[1],
            full[2],
            seen,
            self.layout.task_test_indices,
            self.layout.num_classes,
            self.layout.domains,
            self.layout.domain_names,
        )
        self.last_metrics, self.last_epoch = metrics, int(self.current_epoch)
        loggable = {k: v for k, v in metrics.items() if not math.isnan(v) and k != "val_acc1"}
        self.log_dict(loggable, sync_dist=False, rank_zero_only=True)
        self.log("val_acc1", metrics["val_acc1"], prog_bar=True, sync_dist=False, rank_zero_only=True)

    def configure_optimizers(self) -> Any:
        params = list(self.classifier.parameters())
        if self.optimizer_name == "sgd":
            opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        elif self.optimizer_name == "adamw":
            opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        else:
            raise ValueError(f"unknown optimizer {self.optimizer_name!r}; choose sgd or adamw")
        if self.scheduler_name == "none":
            return opt
        if self.scheduler_name == "step":
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=self.lr_decay_steps, gamma=0.1)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = 0
        if self.scheduler_name == "warmup_cosine":
            per_epoch = total / max(1, int(self.trainer.max_epochs or 1))
            warmup = min(total - 1, int(round(self.warmup_epochs * per_epoch)))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = min((step - warmup) / max(1, total - warmup), 1.0)
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class PrecomputedFeatures(nn.Module):
    """Stands in for the backbone when features were extracted once: ``forward`` is the identity."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, x: Tensor) -> Tensor:
        return x
