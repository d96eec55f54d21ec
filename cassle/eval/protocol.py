"""The evaluation protocol run after each task.

After training on task ``t`` the backbone is frozen and, for every task ``i``
(seen or not), features of task ``i``'s train and test splits are extracted
once. Each probe is then

* fit on task ``i``'s train features and tested on task ``i``'s test features
  (one entry ``R[t][i]`` of the accuracy matrix per probe), and
* fit on all tasks' train features and tested on all tasks' test features
  (the "joint" accuracy), reusing the same features by concatenation.

Features are extracted exactly once per task and split, whatever the number
of probes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .features import extract_features
from .probes import PROBES

__all__ = ["evaluate_after_task"]

log = logging.getLogger(__name__)

Features = tuple[Tensor, Tensor]


def _has_labels(y: Tensor) -> bool:
    """True when targets hold at least one real label (unlabelled data uses ``-1``)."""
    return y.numel() > 0 and bool((y >= 0).any())


def evaluate_after_task(
    backbone: nn.Module,
    datamodule: Any,
    probes: Sequence[str],
    device: str | torch.device | None = None,
    knn_k: int = 20,
    knn_temperature: float = 0.07,
) -> dict[str, Any] | None:
    """Probe the frozen ``backbone`` on every task of ``datamodule``.

    Args:
        backbone: the encoder to evaluate (put on ``device`` by the caller).
        datamodule: provides ``num_tasks``, ``eval_dataloader(task, split)``
            with ``split`` in ``{"train", "test"}`` returning evaluation
            batches ``(images, targets)`` or ``None``.
            ``joint_eval_dataloader(split)`` is not used: the joint probe
            reuses the per-task features.
        probes: names from :data:`cassle.eval.probes.PROBES`.
        device: where the backbone runs (default: where its parameters are).
        knn_k, knn_temperature: passed to the kNN probe.

    Returns:
        ``{"per_task": {probe: [acc_0, ..., acc_{T-1}]}, "joint": {probe: acc}}``
        with accuracies in percent (NaN for a task with an empty test split),
        or ``None`` (with the log message ``"probes skipped: ..."``) when there
        is nothing to evaluate: no probes, no test loaders or no labels.
    """
    unknown = [p for p in probes if p not in PROBES]
    if unknown:
        raise ValueError(f"unknown probe(s) {unknown}; valid probes: {sorted(PROBES)}")
    if not probes:
        log.info("probes skipped: no probe requested")
        return None
    num_tasks = int(datamodule.num_tasks)
    if num_tasks < 1:
        raise ValueError(f"datamodule.num_tasks must be >= 1, got {num_tasks}")

    # fetch every loader first, so a dataset without test split / labels is
    # detected before any (costly) extraction
    loaders: dict[tuple[int, str], Any] = {}
    for task in range(num_tasks):
        for split in ("train", "test"):
            loaders[(task, split)] = datamodule.eval_dataloader(task, split)
    missing = sorted({s for (_, s), ld in loaders.items() if ld is None})
    if missing:
        log.info("probes skipped: the dataset has no %s split for evaluation", "/".join(missing))
        return None

    feats: dict[tuple[int, str], Features] = {
        key: extract_features(backbone, loader, device) for key, loader in loaders.items()
    }
    bad = sorted({t for (t, _), (f, _) in feats.items() if not torch.isfinite(f).all()})
    if bad:
        raise FloatingPointError(
            f"the backbone's features are not finite (NaN/inf) on task(s) {bad}: training diverged; "
            "lower --lr (or raise --warmup_epochs) and run again"
        )
    if not any(_has_labels(feats[(t, "train")][1]) for t in range(num_tasks)):
        log.info("probes skipped: the dataset has no labels")
        return None

    kwargs: dict[str, dict[str, Any]] = {"knn": {"k": knn_k, "temperature": knn_temperature}}
    per_task: dict[str, list[float]] = {p: [] for p in probes}
    for task in range(num_tasks):
        tr_f, tr_y = feats[(task, "train")]
        te_f, te_y = feats[(task, "test")]
        for p in probes:
            per_task[p].append(_run_probe(p, tr_f, tr_y, te_f, te_y, kwargs.get(p, {})))

    tr_f, tr_y = _concat([feats[(t, "train")] for t in range(num_tasks)])
    te_f, te_y = _concat([feats[(t, "test")] for t in range(num_tasks)])
    joint = {p: _run_probe(p, tr_f, tr_y, te_f, te_y, kwargs.get(p, {})) for p in probes}
    return {"per_task": per_task, "joint": joint}


def _run_probe(name: str, tr_f: Tensor, tr_y: Tensor, te_f: Tensor, te_y: Tensor, kwargs: dict[str, Any]) -> float:
    """Run probe ``name`` on labelled rows only; NaN if the test side is empty."""
    tr_keep, te_keep = tr_y >= 0, te_y >= 0
    tr_f, tr_y, te_f, te_y = tr_f[tr_keep], tr_y[tr_keep], te_f[te_keep], te_y[te_keep]
    if te_y.numel() == 0:
        return float("nan")
    if tr_y.numel() == 0:
        log.warning("probe %s: empty train split, accuracy set to NaN", name)
        return float("nan")
    return float(PROBES[name](tr_f, tr_y, te_f, te_y, **kwargs))


def _concat(parts: list[Features]) -> Features:
    """Concatenate (features, targets) pairs, skipping empty ones."""
    parts = [(f, y) for f, y in parts if y.numel() > 0]
    if not parts:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat([f for f, _ in parts]), torch.cat([y for _, y in parts])
