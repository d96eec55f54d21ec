"""Linear evaluation metrics: per-sample outcomes and their aggregation over the test set, tasks and domains."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


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


def fit_warnings(epoch_losses: Sequence[float], acc1: float, num_classes: int, lr: float) -> list[str]:
    """What a researcher should know about a linear evaluation that did not learn: a training loss that is not
    finite or ends above where it started (the lr is too high for these features), and a top-1 accuracy at chance
    (at most 1.5 x ``100 / num_classes``). Empty when the fit looks healthy."""
    import math

    out = []
    if any(not math.isfinite(v) for v in epoch_losses):
        out.append(f"the training loss became non-finite: the classifier diverged; lower --lr (now {lr:g})")
    elif len(epoch_losses) >= 2 and epoch_losses[-1] > 1.05 * epoch_losses[0]:
        out.append(
            f"the training loss rose from {epoch_losses[0]:.3g} (epoch 0) to {epoch_losses[-1]:.3g} (epoch "
            f"{len(epoch_losses) - 1}): the classifier is not converging; lower --lr (now {lr:g}) or keep "
            "--feature_norm bn"
        )
    chance = 100.0 / max(num_classes, 1)
    if num_classes > 1 and math.isfinite(acc1) and acc1 <= 1.5 * chance:
        out.append(
            f"top-1 {acc1:.2f} % is at chance level ({chance:.1f} % for {num_classes} classes): the classifier "
            "learned nothing from these features (check the checkpoint, --lr and --max_epochs)"
        )
    return out
