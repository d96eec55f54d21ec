"""Linear evaluation of a task checkpoint (CaSSLe's headline protocol).

``run_linear(args)`` is what ``main_linear.py`` calls. In order:

1. :func:`prepare_linear` checks everything before any work: the checkpoint
   (format, encoder, backbone tensors), the run arguments it was trained with
   (``args`` inside the checkpoint, completed by the run's ``args.json``), the
   data, ``--domain``, the output folder. The task split of the pretraining run
   is rebuilt with the same code, seed, number of tasks and strategy
   (:class:`~cassle.data.datamodule.ContinualDataModule` → ``make_splits``).
2. The backbone is frozen (``requires_grad=False``, always in eval mode, so
   batch-norm statistics never move) and a ``nn.Linear(num_features,
   num_classes)`` (after a non-affine ``BatchNorm1d`` that standardises the
   features, ``--feature_norm bn``, the default; ``none`` for raw features) is
   trained on the training set of **all** classes (or one
   DomainNet domain, or a class-stratified fraction) with random-resized-crop +
   flip augmentation, evaluated on the whole test set after every epoch.
3. The metrics of the last epoch are written to ``linear_results.json`` and
   ``linear_results.csv`` in the output folder and printed as a table.

Metrics (percent):

* ``val_acc1`` / ``val_acc5`` — over the whole test set, all classes (``acc5``
  only with at least 5 classes);
* ``val_acc1_task{i}`` — class-agnostic accuracy on the test samples of task
  ``i`` of the pretraining split (argmax over all classes);
* ``val_task_aware_acc1_task{i}`` — the same samples, logits restricted to task
  ``i``'s classes before the argmax; ``val_task_aware_acc1`` pools all tasks'
  samples (each evaluated with its task's classes);
* datasets with domains (DomainNet): ``val_acc1_{domain}`` per domain and
  ``val_acc1_domain_agnostic`` (one classifier, all domains' test samples;
  equal to ``val_acc1``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from cassle.checkpoint import CheckpointError, atomic_write_json, atomic_write_text, load_task_checkpoint
from cassle.devices import resolve_accelerator
from cassle.errors import (
    ArgumentError,
    LinearEvalError,  # noqa: F401  (re-exported)
)

log = logging.getLogger("cassle")

RESULTS_JSON = "linear_results.json"
RESULTS_CSV = "linear_results.csv"

#: Run arguments the split depends on (a disagreement between the checkpoint and args.json is reported).
SPLIT_KEYS: tuple[str, ...] = ("dataset", "num_tasks", "split_strategy", "seed", "domain_order")


# --------------------------------------------------------------------------- data


class IndexedSubset(Dataset):
    """Samples ``indices`` of ``dataset`` through ``transform``.

    Item ``i`` is ``(image, target)``, or ``(image, target, index)`` with
    ``return_index=True`` where ``index`` is the position in ``dataset``
    (used to place each test prediction, also under a distributed sampler).
    """

    def __init__(
        self,
        dataset: Any,
        indices: Tensor,
        transform: Callable[[Tensor], Tensor],
        return_index: bool = False,
    ) -> None:
        self.dataset = dataset
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        self.transform = transform
        self.return_index = return_index

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple:
        idx = int(self.indices[i])
        item = (self.transform(self.dataset.get_image(idx)), int(self.dataset.targets[idx]))
        return item + (idx,) if self.return_index else item


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


# --------------------------------------------------------------------------- metrics


def sample_outcomes(logits: Tensor, targets: Tensor, task_masks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample correctness of a batch.

    Args:
        logits: ``B×C``.
        targets: ``B``.
        task_masks: ``T×C`` bool, the classes of each task.

    Returns:
        ``(top1 B, top5 B, task_aware B×T)`` bool tensors; ``task_aware[b, t]``
        says whether the argmax over task ``t``'s classes is the target
        (top5 is top-``min(5, C)``).
    """
    logits = logits.float()
    top1 = logits.argmax(dim=1) == targets
    k = min(5, logits.shape[1])
    top5 = (logits.topk(k, dim=1).indices == targets[:, None]).any(dim=1)
    masked = logits[:, None, :].masked_fill(~task_masks[None], float("-inf"))  # B×T×C
    task_aware = masked.argmax(dim=2) == targets[:, None]
    return top1, top5, task_aware


def _pct(x: Tensor) -> float:
    return float("nan") if x.numel() == 0 else 100.0 * x.float().mean().item()


def aggregate_metrics(
    top1: Tensor,
    top5: Tensor,
    task_aware: Tensor,
    seen: Tensor,
    task_test_indices: Sequence[Tensor],
    num_classes: int,
    domains: Tensor | None = None,
    domain_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Accuracies (percent) from per-test-sample outcomes.

    Args:
        top1, top5: ``N`` bool, indexed by test-set position.
        task_aware: ``N×T`` bool (see :func:`sample_outcomes`).
        seen: ``N`` bool, the samples that were evaluated (others are ignored).
        task_test_indices: the test-set indices of each task of the split.
        num_classes: ``val_acc5`` is reported only when it is at least 5.
        domains, domain_names: per-sample domain id and the names of the ids
            (DomainNet) for ``val_acc1_{domain}``.
    """
    out: dict[str, float] = {"val_acc1": _pct(top1[seen])}
    if num_classes >= 5:
        out["val_acc5"] = _pct(top5[seen])
    aware_hits, aware_total = 0, 0
    for t, idx in enumerate(task_test_indices):
        idx = idx[seen[idx]]
        out[f"val_acc1_task{t}"] = _pct(top1[idx])
        out[f"val_task_aware_acc1_task{t}"] = _pct(task_aware[idx, t])
        aware_hits += int(task_aware[idx, t].sum())
        aware_total += len(idx)
    out["val_task_aware_acc1"] = 100.0 * aware_hits / aware_total if aware_total else float("nan")
    if domains is not None and domain_names is not None:
        for d, name in enumerate(domain_names):
            in_d = seen & (domains == d)
            if bool(in_d.any()):
                out[f"val_acc1_{name}"] = _pct(top1[in_d])
        out["val_acc1_domain_agnostic"] = out["val_acc1"]
    return out


@dataclass
class EvalLayout:
    """What the evaluation needs to know about the test set and the task split."""

    num_test: int
    task_test_indices: list[Tensor]
    task_classes: list[list[int]]
    num_classes: int
    domains: Tensor | None = None
    domain_names: list[str] | None = None

    def task_masks(self) -> Tensor:
        """``T×C`` bool: the classes of each task."""
        masks = torch.zeros(len(self.task_classes), self.num_classes, dtype=torch.bool)
        for t, classes in enumerate(self.task_classes):
            masks[t, torch.as_tensor(classes, dtype=torch.long)] = True
        return masks


# --------------------------------------------------------------------------- model


def backbone_state_dict(state_dict: dict[str, Tensor], path: str = "checkpoint") -> dict[str, Tensor]:
    """The ``backbone.*`` tensors of a task checkpoint, prefix removed (not ``momentum_backbone.*``)."""
    sd = {k[len("backbone.") :]: v for k, v in state_dict.items() if k.startswith("backbone.")}
    if not sd:
        raise CheckpointError(
            f"{path} holds no backbone tensors (no 'backbone.*' keys); pass a taskK.ckpt of main_continual.py"
        )
    return sd


def load_frozen_backbone(
    encoder: str, crop_size: int, base_width: int | None, state: dict[str, Tensor], path: str = "checkpoint"
) -> nn.Module:
    """Build ``encoder``, load ``state`` strictly, freeze it and put it in eval mode.

    Raises:
        CheckpointError: missing, unexpected or mis-shaped tensors (the message
            names one and the arguments to fix).
    """
    from cassle.backbones import build_backbone

    try:
        backbone = build_backbone(encoder, crop_size, base_width)
    except ValueError as e:
        raise CheckpointError(f"cannot build the checkpoint's encoder: {e}") from None
    own = backbone.state_dict()
    fix = "pass the --crop_size / --base_width the run used (they default to the checkpoint's)"
    missing = [k for k in own if k not in state]
    if missing:
        raise CheckpointError(
            f"{path} lacks {len(missing)} backbone tensors of {encoder} (e.g. 'backbone.{missing[0]}'); "
            f"the checkpoint is incomplete or of another architecture: {fix}"
        )
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise CheckpointError(
            f"{path} has {len(unexpected)} backbone tensors that {encoder} lacks (e.g. 'backbone.{unexpected[0]}'); {fix}"
        )
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise CheckpointError(
                f"checkpoint tensor 'backbone.{k}' has shape {tuple(v.shape)} but {encoder} expects "
                f"{tuple(own[k].shape)}; {fix}"
            )
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
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(targets))
        self.log("train_acc1", acc1, on_step=False, on_epoch=True, batch_size=len(targets))
        return loss

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


# --------------------------------------------------------------------------- preparation


@dataclass
class LinearPlan:
    """Everything :func:`prepare_linear` established, ready to train."""

    args: argparse.Namespace
    checkpoint_path: Path
    checkpoint: dict[str, Any]
    run_cfg: dict[str, Any]
    out_dir: Path
    backbone: nn.Module
    train_dataset: Any
    test_dataset: Any
    train_indices: Tensor
    layout: EvalLayout
    crop_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int | None
    info: dict[str, Any] = field(default_factory=dict)


def load_run_args(checkpoint_path: Path, ckpt: dict[str, Any]) -> dict[str, Any]:
    """The pretraining run's arguments: the run's ``args.json`` (if next to the checkpoint) overlaid by the checkpoint's ``args``."""
    saved = ckpt.get("args") if isinstance(ckpt.get("args"), dict) else {}
    run_json = checkpoint_path.parent / "args.json"
    from_json: dict[str, Any] = {}
    if run_json.is_file():
        try:
            loaded = json.loads(run_json.read_text())
            from_json = loaded if isinstance(loaded, dict) else {}
        except (OSError, json.JSONDecodeError) as e:
            log.warning("ignoring unreadable %s (%s); using the checkpoint's arguments", run_json, e)
    for k in SPLIT_KEYS:
        if k in saved and k in from_json and saved[k] != from_json[k]:
            log.warning(
                "%s says %s=%r but the checkpoint says %r; using the checkpoint's", run_json, k, from_json[k], saved[k]
            )
    return {**from_json, **saved}


def default_output_name(args: argparse.Namespace, checkpoint_path: Path) -> str:
    """``<checkpoint stem>[-<domain>][-frac<F>]``, e.g. ``task4`` or ``task4-real-frac0.1``."""
    name = checkpoint_path.stem
    if args.domain:
        name += f"-{args.domain}"
    if args.data_fraction < 1.0:
        name += f"-frac{args.data_fraction:g}"
    return name


def prepare_linear(args: argparse.Namespace) -> LinearPlan:
    """Check the checkpoint, data, options and output folder; load the data; write nothing.

    Raises:
        CheckpointError: missing / corrupt / foreign checkpoint, wrong encoder,
            missing or mis-shaped backbone tensors.
        ArgumentError: an option that contradicts the checkpoint or the dataset
            (``--domain`` on a dataset without domains, an unknown domain, ...).
        LinearEvalError: data that cannot be read or split, an output folder
            holding another checkpoint's results.
    """
    from cassle.data.datamodule import ContinualDataModule
    from cassle.data.datasets import DATASETS, DOMAINNET_DOMAINS, check_dataset, load_dataset

    ckpt_path = Path(args.pretrained_model)
    ckpt = load_task_checkpoint(ckpt_path, encoder=args.encoder)
    run_cfg = load_run_args(ckpt_path, ckpt)

    dataset = args.dataset or run_cfg.get("dataset")
    if dataset is None:
        raise ArgumentError(f"{ckpt_path} does not record its dataset; pass --dataset")
    if dataset not in DATASETS:
        raise ArgumentError(
            f"unknown dataset '{dataset}' (from the checkpoint); pass --dataset, one of: {', '.join(sorted(DATASETS))}"
        )
    info = DATASETS[dataset]
    data_dir = args.data_dir if args.data_dir is not None else run_cfg.get("data_dir")
    encoder = str(ckpt["encoder"])
    base_width = args.base_width if args.base_width is not None else run_cfg.get("base_width")
    crop_size = args.crop_size if args.crop_size is not None else run_cfg.get("crop_size")
    if crop_size is None:
        crop_size = 16 if dataset == "digits" else (info.image_size or 224)
    num_tasks = args.num_tasks if args.num_tasks is not None else int(run_cfg.get("num_tasks", 1))
    strategy = args.split_strategy or str(run_cfg.get("split_strategy", "class"))

    if args.domain is not None:
        if dataset != "domainnet":
            raise ArgumentError(
                f"--domain needs a dataset with domains (domainnet); '{dataset}' has none: drop --domain"
            )
        if args.domain not in DOMAINNET_DOMAINS:
            raise ArgumentError(f"unknown --domain '{args.domain}'; choose one of: {', '.join(DOMAINNET_DOMAINS)}")
    if strategy == "domain" and dataset != "domainnet":
        raise ArgumentError(f"--split_strategy domain needs a dataset with domains (domainnet), not '{dataset}'")
    if resolve_accelerator(args.accelerator) == "cpu" and args.precision == "16-mixed":
        raise ArgumentError("--precision 16 needs a GPU; on the CPU use --precision bf16 or 32")

    name = args.name or default_output_name(args, ckpt_path)
    out_dir = Path(args.checkpoint_dir) if args.checkpoint_dir else ckpt_path.parent / "linear" / name
    results = out_dir / RESULTS_JSON
    if results.exists():
        try:
            previous = json.loads(results.read_text()).get("pretrained_model")
        except (OSError, json.JSONDecodeError, AttributeError) as e:
            raise LinearEvalError(
                f"{results} exists but is unreadable ({e}); pass another --name or --checkpoint_dir"
            ) from None
        if previous != str(ckpt_path.resolve()):
            raise LinearEvalError(
                f"{results} holds the results of another checkpoint ({previous}); pass another --name or "
                "--checkpoint_dir so they are not overwritten"
            )

    backbone = load_frozen_backbone(
        encoder, int(crop_size), base_width, backbone_state_dict(ckpt["state_dict"], str(ckpt_path)), str(ckpt_path)
    )

    try:
        check_dataset(dataset, data_dir)
        train = load_dataset(dataset, data_dir, train=True)
        test = load_dataset(dataset, data_dir, train=False)
    except ValueError as e:
        raise LinearEvalError(str(e)) from None
    if test is None or len(test) == 0:
        raise LinearEvalError(
            f"dataset '{dataset}' at {data_dir} has no test set; add a val/ (or test/) folder to evaluate"
        )
    if not train.labelled:
        raise LinearEvalError(f"dataset '{dataset}' has no labels: a linear classifier cannot be trained")

    split_cfg = {
        "dataset": dataset,
        "num_tasks": num_tasks,
        "split_strategy": strategy,
        "seed": run_cfg.get("seed", 5),
        "domain_order": run_cfg.get("domain_order"),
        "no_labels": False,
    }
    try:
        split = ContinualDataModule(split_cfg, train_dataset=train, test_dataset=test).split
    except ValueError as e:
        raise LinearEvalError(f"cannot rebuild the pretraining split: {e}") from None

    indices = torch.arange(len(train))
    if args.domain is not None:
        names = train.domain_names or list(DOMAINNET_DOMAINS)
        indices = (train.domains == names.index(args.domain)).nonzero().flatten()
        if len(indices) == 0:
            raise LinearEvalError(f"the training set has no samples of domain '{args.domain}'")
    indices = stratified_fraction(train.targets, indices, args.data_fraction, args.seed)

    num_classes = int(train.num_classes)
    layout = EvalLayout(
        num_test=len(test),
        task_test_indices=[torch.as_tensor(i, dtype=torch.long) for i in split.test_indices],
        task_classes=[list(c) for c in split.task_classes],
        num_classes=num_classes,
        domains=test.domains,
        domain_names=test.domain_names,
    )
    mean = tuple(run_cfg["mean"]) if run_cfg.get("mean") is not None else tuple(info.mean)
    std = tuple(run_cfg["std"]) if run_cfg.get("std") is not None else tuple(info.std)
    image_size = getattr(train, "image_size", None) or info.image_size
    plan_info = {
        "pretrained_model": str(ckpt_path.resolve()),
        "method": ckpt.get("method"),
        "strategy": ckpt.get("strategy"),
        "encoder": encoder,
        "task_idx": ckpt.get("task_idx"),
        "dataset": dataset,
        "crop_size": int(crop_size),
        "base_width": base_width,
        "num_tasks": num_tasks,
        "split_strategy": strategy,
        "split_seed": split_cfg["seed"],
        "task_classes": layout.task_classes,
        "domain": args.domain,
        "data_fraction": args.data_fraction,
        "num_train_samples": int(len(indices)),
        "num_test_samples": int(len(test)),
        "num_classes": num_classes,
    }
    return LinearPlan(
        args,
        ckpt_path,
        ckpt,
        run_cfg,
        out_dir,
        backbone,
        train,
        test,
        indices,
        layout,
        int(crop_size),
        mean,
        std,
        image_size,
        plan_info,
    )


# --------------------------------------------------------------------------- run


def _loaders(plan: LinearPlan) -> tuple[DataLoader, DataLoader]:
    from cassle.data.transforms import build_eval_transform

    args = plan.args
    train_ds = IndexedSubset(
        plan.train_dataset, plan.train_indices, linear_train_transform(plan.crop_size, plan.mean, plan.std)
    )
    test_ds = IndexedSubset(
        plan.test_dataset,
        torch.arange(len(plan.test_dataset)),
        build_eval_transform(plan.crop_size, plan.mean, plan.std, plan.image_size),
        return_index=True,
    )
    pin = torch.cuda.is_available()
    train_loader = DataLoader(
        train_ds,
        batch_size=args.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(args.seed),
        num_workers=args.num_workers,
        persistent_workers=args.num_workers > 0,
        pin_memory=pin,
    )
    test_loader = DataLoader(
        test_ds,
        batch_size=args.batch_size,
        shuffle=False,
        num_workers=args.num_workers,
        persistent_workers=args.num_workers > 0,
        pin_memory=pin,
    )
    return train_loader, test_loader


def format_results(metrics: dict[str, float]) -> str:
    """A two-column plain-text table of the metrics."""
    width = max([len("metric")] + [len(k) for k in metrics]) + 2
    lines = [f"{'metric':<{width}}{'value':>8}", "-" * (width + 8)]
    lines += [f"{k:<{width}}{v:>8.2f}" for k, v in metrics.items()]
    return "\n".join(lines)


def _ordered(metrics: dict[str, float], num_tasks: int) -> dict[str, float]:
    keys = ["val_acc1", "val_acc5", "val_task_aware_acc1"]
    keys += [f"val_acc1_task{t}" for t in range(num_tasks)] + [f"val_task_aware_acc1_task{t}" for t in range(num_tasks)]
    out = {k: metrics[k] for k in keys if k in metrics}
    out.update({k: v for k, v in metrics.items() if k not in out})
    return out


def write_results(out_dir: Path, metrics: dict[str, float], info: dict[str, Any], args: argparse.Namespace) -> None:
    """Write ``linear_results.json`` (metrics + provenance) and ``linear_results.csv`` (metric,value), atomically."""
    payload = dict(info, metrics=metrics, args=dict(vars(args)))
    atomic_write_json(out_dir / RESULTS_JSON, payload)
    atomic_write_text(out_dir / RESULTS_CSV, "metric,value\n" + "".join(f"{k},{v}\n" for k, v in metrics.items()))


@dataclass
class LinearResult:
    """What :func:`run_linear` returns: the final metrics (percent), the trained model, the output folder."""

    metrics: dict[str, float]
    model: LinearModel
    out_dir: Path
    info: dict[str, Any]


class PrecomputedFeatures(nn.Module):
    """Stands in for the backbone when features were extracted once: ``forward`` is the identity."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, x: Tensor) -> Tensor:
        return x


def _feature_loaders(plan: LinearPlan) -> tuple[DataLoader, DataLoader, nn.Module]:
    """``--precompute_features``: the frozen backbone runs once over the train and test images (the evaluation
    transform, no augmentation), and the classifier trains on the stored features."""
    from torch.utils.data import TensorDataset

    from cassle.data.transforms import build_eval_transform
    from cassle.eval.features import extract_features

    args = plan.args
    eval_t = build_eval_transform(plan.crop_size, plan.mean, plan.std, plan.image_size)
    device = torch.device("cuda") if resolve_accelerator(args.accelerator) == "gpu" else torch.device("cpu")
    backbone = plan.backbone.to(device)

    def feats(dataset: Any, indices: Tensor) -> tuple[Tensor, Tensor]:
        loader = DataLoader(
            IndexedSubset(dataset, indices, eval_t),
            batch_size=args.batch_size,
            shuffle=False,
            num_workers=args.num_workers,
        )
        return extract_features(backbone, loader, device)

    train_x, train_y = feats(plan.train_dataset, plan.train_indices)
    test_x, test_y = feats(plan.test_dataset, torch.arange(len(plan.test_dataset)))
    plan.backbone.to("cpu")
    train_loader = DataLoader(
        TensorDataset(train_x, train_y),
        batch_size=args.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(args.seed),
    )
    test_loader = DataLoader(
        TensorDataset(test_x, test_y, torch.arange(len(test_y))), batch_size=args.batch_size, shuffle=False
    )
    return train_loader, test_loader, PrecomputedFeatures(train_x.shape[1])


def run_linear(args: argparse.Namespace) -> LinearResult:
    """Train and evaluate the linear classifier on the checkpoint of ``args.pretrained_model``."""
    from lightning.pytorch.loggers import CSVLogger

    plan = prepare_linear(args)
    precompute = bool(getattr(args, "precompute_features", False))
    if precompute:
        t0 = time.perf_counter()
        train_loader, test_loader, backbone = _feature_loaders(plan)
        print(f"features of the frozen backbone extracted once in {time.perf_counter() - t0:.1f} s (no augmentation)")
    else:
        train_loader, test_loader = _loaders(plan)
        backbone = plan.backbone
    pl.seed_everything(args.seed, workers=True, verbose=False)
    model = LinearModel(
        backbone,
        plan.layout,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        momentum=args.momentum,
        scheduler=args.scheduler,
        lr_decay_steps=args.lr_decay_steps,
        warmup_epochs=args.warmup_epochs,
        feature_norm=getattr(args, "feature_norm", "bn"),
    )
    print(
        f"linear evaluation of {plan.checkpoint_path} ({plan.info['method']}/{plan.info['strategy']}, task "
        f"{plan.info['task_idx']}) on {plan.info['dataset']}: {len(plan.train_indices)} training images, "
        f"{plan.layout.num_test} test images, {plan.layout.num_classes} classes, {len(plan.layout.task_classes)} tasks"
    )
    devices = args.devices
    n_dev = len(devices) if isinstance(devices, list) else (devices if isinstance(devices, int) else 1)
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        accelerator=resolve_accelerator(args.accelerator),
        devices=devices,
        strategy="ddp" if n_dev > 1 else "auto",
        precision=args.precision,
        logger=CSVLogger(save_dir=str(plan.out_dir), name="logs"),
        enable_checkpointing=False,
        enable_progress_bar=not args.no_progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=args.log_every_n_steps,
        default_root_dir=str(plan.out_dir),
    )
    with warnings.catch_warnings():  # the frozen backbone is in eval mode on purpose
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
        trainer.fit(model, train_dataloaders=train_loader, val_dataloaders=test_loader)
    if trainer.interrupted:
        raise KeyboardInterrupt
    metrics = _ordered(model.last_metrics, len(plan.layout.task_classes))
    plan.info["epochs_trained"] = model.last_epoch + 1
    if trainer.is_global_zero:
        write_results(plan.out_dir, metrics, plan.info, args)
        print(format_results(metrics))
        print(f"\nResults in {plan.out_dir}/{RESULTS_JSON} and {RESULTS_CSV}")
    return LinearResult(metrics, model, plan.out_dir, plan.info)


__all__ = [
    "LinearEvalError",
    "LinearModel",
    "LinearPlan",
    "LinearResult",
    "EvalLayout",
    "aggregate_metrics",
    "backbone_state_dict",
    "format_results",
    "load_frozen_backbone",
    "load_run_args",
    "prepare_linear",
    "run_linear",
    "sample_outcomes",
    "stratified_fraction",
]
