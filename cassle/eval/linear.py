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
   DomainNet domain, or a class-stratified fraction), evaluated on the whole
   test set after every epoch. By default on features of the un-augmented
   images extracted once (``--precompute_features``); ``--augment`` (the
   paper's protocol, with ``--feature_norm none``) runs the backbone on a
   random-resized crop + flip of every image every epoch instead.
3. The metrics of the last epoch are written to ``linear_results.json`` and
   ``linear_results.csv`` in the output folder and printed as a table, with a
   ``warning:`` line for a classifier that did not learn
   (:func:`~cassle.eval.linear_metrics.fit_warnings`).

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
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from cassle.checkpoint import atomic_write_json, atomic_write_text
from cassle.devices import is_global_zero_process, resolve_accelerator
from cassle.errors import (
    LinearEvalError,  # noqa: F401  (re-exported)
)
from cassle.eval.linear_metrics import EvalLayout, aggregate_metrics, fit_warnings, sample_outcomes  # noqa: F401  (re-exported)
from cassle.eval.linear_model import (  # noqa: F401  (re-exported)
    IndexedSubset,
    LinearModel,
    PrecomputedFeatures,
    backbone_state_dict,
    linear_train_transform,
    load_frozen_backbone,
    stratified_fraction,
)
from cassle.eval.linear_plan import (  # noqa: F401  (re-exported)
    RESULTS_CSV,
    RESULTS_JSON,
    SPLIT_KEYS,
    LinearPlan,
    default_output_name,
    load_run_args,
    prepare_linear,
)
from cassle.rundir import run_lock

log = logging.getLogger("cassle")


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


def _feature_loaders(plan: LinearPlan) -> tuple[DataLoader, DataLoader, nn.Module]:
    """The default (no ``--augment``): the frozen backbone runs once over the train and test images (the evaluation
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
    """Train and evaluate the linear classifier on the checkpoint of ``args.pretrained_model``.

    The output folder is locked (:func:`cassle.rundir.run_lock`) while the evaluation runs: a second
    ``main_linear.py`` on the same folder stops at once with a message naming the holder."""
    plan = prepare_linear(args)  # every check, nothing written
    if not is_global_zero_process():  # the other DDP ranks: rank 0 holds the output folder's lock
        return _run_linear(args, plan)
    with run_lock(plan.out_dir):  # one evaluation per output folder at a time
        return _run_linear(args, prepare_linear(args))  # re-checked under the lock: another may have finished


def _run_linear(args: argparse.Namespace, plan: LinearPlan) -> LinearResult:
    from lightning.pytorch.loggers import CSVLogger

    from cassle.logs import quiet_framework_noise

    quiet_framework_noise()  # Lightning's adverts, as in main_continual.py

    precompute = bool(getattr(args, "precompute_features", True)) and not getattr(args, "augment", False)
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
    origin = (
        f"a foreign checkpoint, {plan.info['encoder']} from --encoder"
        if plan.info.get("foreign_checkpoint")
        else f"{plan.info['method']}/{plan.info['strategy']}, task {plan.info['task_idx']}"
    )
    print(
        f"linear evaluation of {plan.checkpoint_path} ({origin}) on {plan.info['dataset']}: "
        f"{len(plan.train_indices)} training images, "
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
    notes = fit_warnings(model.epoch_losses, metrics.get("val_acc1", float("nan")), plan.layout.num_classes, args.lr)
    if notes:  # kept with the results too: a sweep's table shows which evaluations did not learn
        plan.info["warnings"] = notes
    if trainer.is_global_zero:
        write_results(plan.out_dir, metrics, plan.info, args)
        print(format_results(metrics))
        for note in notes:
            print(f"warning: {note}")
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
