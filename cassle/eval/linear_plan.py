"""Linear evaluation, step 1: check the checkpoint, its run arguments, the data and the output folder; write nothing."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cassle.checkpoint import FOREIGN_METHOD, load_task_checkpoint
from cassle.config import DataConfig, ModelConfig, upgrade_flat
from cassle.devices import resolve_accelerator
from cassle.errors import ArgumentError, LinearEvalError
from cassle.eval.linear_metrics import EvalLayout
from cassle.eval.linear_model import backbone_state_dict, load_frozen_backbone, stratified_fraction
from cassle.fileio import check_writable

log = logging.getLogger("cassle")

RESULTS_JSON = "linear_results.json"
RESULTS_CSV = "linear_results.csv"

#: main_linear.py options that may differ when an evaluation is rerun into the same folder
RERUN_FREE = {"num_workers", "no_progress_bar", "log_every_n_steps", "accelerator", "devices", "data_dir", "precision"}

#: Run arguments the split depends on (a disagreement between the checkpoint and args.json is reported).
SPLIT_KEYS: tuple[str, ...] = ("dataset", "num_tasks", "split_strategy", "seed", "domain_order")


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
        CheckpointError: missing / corrupt checkpoint, wrong encoder, missing or
            mis-shaped backbone tensors; a foreign checkpoint (solo-learn, CaSSLe)
            without --encoder, without backbone tensors or holding pickled objects.
        ArgumentError: an option that contradicts the checkpoint or the dataset
            (``--domain`` on a dataset without domains, an unknown domain, ...).
        LinearEvalError: data that cannot be read or split, an output folder
            holding another checkpoint's results.
    """
    from cassle.data.datamodule import ContinualDataModule
    from cassle.data.datasets import DATASETS, DOMAINNET_DOMAINS, check_dataset, load_dataset

    ckpt_path = Path(args.pretrained_model)
    ckpt = load_task_checkpoint(ckpt_path, encoder=args.encoder, allow_foreign=True)
    foreign = bool(ckpt.get("foreign"))
    # a foreign checkpoint records no cassle run arguments (an args.json next to it is another framework's)
    run_cfg = {} if foreign else load_run_args(ckpt_path, ckpt)
    try:  # the pretraining run's data settings, typed (defaults for what an older or foreign run did not record)
        run_data = DataConfig.from_flat(upgrade_flat(run_cfg))
        run_base_width = ModelConfig.from_flat(upgrade_flat(run_cfg)).base_width
    except ValueError as e:
        raise LinearEvalError(f"{ckpt_path}: the pretraining run's arguments are unusable ({e})") from None

    dataset = args.dataset or run_cfg.get("dataset")  # no default: a checkpoint that does not say is asked about
    if dataset is None:
        why = "is a foreign checkpoint (no cassle run arguments)" if foreign else "does not record its dataset"
        raise ArgumentError(f"{ckpt_path} {why}; pass --dataset (and --data_dir, --crop_size where needed)")
    if dataset not in DATASETS:
        raise ArgumentError(
            f"unknown dataset '{dataset}' (from the checkpoint); pass --dataset, one of: {', '.join(sorted(DATASETS))}"
        )
    info = DATASETS[dataset]
    data_dir = args.data_dir if args.data_dir is not None else run_data.data_dir
    encoder = str(ckpt["encoder"])
    base_width = args.base_width if args.base_width is not None else run_base_width
    crop_size = args.crop_size if args.crop_size is not None else run_data.crop_size
    if crop_size is None:
        crop_size = 16 if dataset == "digits" else (info.image_size or 224)
    num_tasks = args.num_tasks if args.num_tasks is not None else (run_data.num_tasks if "num_tasks" in run_cfg else 1)
    strategy = args.split_strategy or run_data.split_strategy

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
    check_writable(out_dir, "pass a writable --checkpoint_dir for the results")
    results = out_dir / RESULTS_JSON
    if results.exists():
        try:
            saved = json.loads(results.read_text())
            previous = saved.get("pretrained_model")
            previous_args = saved.get("args") or {}
        except (OSError, json.JSONDecodeError, AttributeError) as e:
            raise LinearEvalError(
                f"{results} exists but is unreadable ({e}); pass another --name or --checkpoint_dir"
            ) from None
        if previous != str(ckpt_path.resolve()):
            raise LinearEvalError(
                f"{results} holds the results of another checkpoint ({previous}); pass another --name or "
                "--checkpoint_dir so they are not overwritten"
            )
        now = json.loads(json.dumps(vars(args), default=str))
        changed = sorted(
            k for k in set(now) | set(previous_args)
            if k not in RERUN_FREE and now.get(k) != previous_args.get(k)
        )  # fmt: skip
        if previous_args and changed:
            raise LinearEvalError(
                f"{results} holds an evaluation of this checkpoint with other settings ({', '.join('--' + k for k in changed)}); "
                "pass another --name (e.g. --name task4-lr0.5) so both are kept"
            )

    backbone = load_frozen_backbone(
        encoder,
        int(crop_size),
        base_width,
        backbone_state_dict(ckpt["state_dict"], str(ckpt_path)),
        str(ckpt_path),
        foreign=foreign,
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
        "seed": run_data.seed,
        "domain_order": run_data.domain_order,
        "no_labels": False,
    }
    try:
        split_data = DataConfig.from_flat(upgrade_flat(split_cfg))
        split = ContinualDataModule(split_data, train_dataset=train, test_dataset=test).split
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
    mean = run_data.mean if run_data.mean is not None else tuple(info.mean)
    std = run_data.std if run_data.std is not None else tuple(info.std)
    image_size = getattr(train, "image_size", None) or info.image_size
    plan_info = {
        "pretrained_model": str(ckpt_path.resolve()),
        "method": FOREIGN_METHOD if foreign else ckpt.get("method"),
        "strategy": "unknown" if foreign else ckpt.get("strategy"),
        "foreign_checkpoint": foreign,
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
