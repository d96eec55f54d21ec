"""Task splits for continual learning: class-, data- and domain-incremental.

:func:`make_splits` turns the targets (and domains) of a train and a test set
into one list of sample indices per task. Every random choice comes from a
``torch.Generator`` seeded with the ``seed`` passed in, so the same seed always
gives the same split, whatever the global RNG state is.

* ``class``  — the classes are permuted and cut into ``num_tasks`` groups whose
  sizes differ by at most one; a task holds the samples of its classes
  (CaSSLe's class-incremental setting).
* ``data``   — the training samples are permuted and cut into ``num_tasks``
  chunks whose sizes differ by at most one; every task is evaluated on the full
  test set (data-incremental).
* ``domain`` — one domain per task, in ``domain_order`` (default: ascending
  domain id); the test samples of a task are those of its domain
  (domain-incremental, e.g. DomainNet).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

SPLIT_STRATEGIES: tuple[str, ...] = ("class", "data", "domain")


@dataclass
class TaskSplit:
    """Per-task sample indices.

    Attributes:
        strategy: ``"class"``, ``"data"`` or ``"domain"``.
        train_indices: one ``LongTensor`` of training-set indices per task (ascending).
        test_indices: one ``LongTensor`` of test-set indices per task (ascending);
            an empty list when there is no test set.
        task_classes: the classes of each task (sorted). For the data and domain
            splits every task lists all classes (empty lists when unlabelled).
        task_domains: the domain id of each task for the domain split, else ``None``.
    """

    strategy: str
    train_indices: list[torch.Tensor]
    test_indices: list[torch.Tensor]
    task_classes: list[list[int]]
    task_domains: list[int] | None = field(default=None)

    @property
    def num_tasks(self) -> int:
        """Number of tasks."""
        return len(self.train_indices)

    @property
    def has_test(self) -> bool:
        """Whether test indices exist (there was a test set)."""
        return len(self.test_indices) > 0


def _as_long(x: Sequence[int] | torch.Tensor | None) -> torch.Tensor | None:
    return None if x is None else torch.as_tensor(x, dtype=torch.long).flatten()


def _labelled_classes(targets: torch.Tensor) -> list[int]:
    return sorted(int(c) for c in torch.unique(targets[targets >= 0]).tolist())


def make_splits(
    train_targets: Sequence[int] | torch.Tensor,
    test_targets: Sequence[int] | torch.Tensor | None,
    num_tasks: int,
    strategy: str,
    seed: int,
    train_domains: Sequence[int] | torch.Tensor | None = None,
    test_domains: Sequence[int] | torch.Tensor | None = None,
    domain_order: Sequence[int] | None = None,
) -> TaskSplit:
    """Split a dataset into ``num_tasks`` continual tasks.

    Args:
        train_targets: class of each training sample (``-1`` when unlabelled).
        test_targets: class of each test sample, or ``None`` when there is no test set.
        num_tasks: number of tasks (≥ 1).
        strategy: ``"class"``, ``"data"`` or ``"domain"``.
        seed: seeds the generator behind every random choice of the split.
        train_domains: domain id of each training sample (domain split only).
        test_domains: domain id of each test sample (domain split with a test set).
        domain_order: the domain ids in task order (domain split); default ascending.

    Returns:
        A :class:`TaskSplit`.

    Raises:
        ValueError: unknown strategy, ``num_tasks`` < 1 or larger than the number
            of classes / samples / domains, class split of unlabelled data, domain
            split without domains, or a ``domain_order`` naming absent domains.

    Example:
        >>> s = make_splits(torch.arange(10) % 5, None, 5, "class", seed=0)
        >>> [len(i) for i in s.train_indices]
        [2, 2, 2, 2, 2]
    """
    if strategy not in SPLIT_STRATEGIES:
        raise ValueError(f"unknown split_strategy {strategy!r}; choose one of {', '.join(SPLIT_STRATEGIES)}")
    num_tasks = int(num_tasks)
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be at least 1, got {num_tasks}")
    train_t = _as_long(train_targets)
    assert train_t is not None
    test_t = _as_long(test_targets)
    if len(train_t) == 0:
        raise ValueError("the training set is empty: nothing to split into tasks")
    gen = torch.Generator().manual_seed(int(seed))
    all_classes = _labelled_classes(train_t)

    if strategy == "class":
        if bool((train_t < 0).any()):
            raise ValueError(
                "the class split needs labels, but the training set is (partly) unlabelled "
                "(targets of -1); use --split_strategy data (or domain) for unlabelled data"
            )
        if num_tasks > len(all_classes):
            raise ValueError(
                f"num_tasks={num_tasks} is larger than the number of classes ({len(all_classes)}); "
                f"use --num_tasks {len(all_classes)} or fewer, or --split_strategy data"
            )
        classes = torch.tensor(all_classes, dtype=torch.long)
        perm = classes[torch.randperm(len(classes), generator=gen)]
        groups = [sorted(int(c) for c in g.tolist()) for g in torch.tensor_split(perm, num_tasks)]
        train_idx = [torch.isin(train_t, torch.tensor(g)).nonzero().flatten() for g in groups]
        test_idx = [] if test_t is None else [torch.isin(test_t, torch.tensor(g)).nonzero().flatten() for g in groups]
        return TaskSplit("class", train_idx, test_idx, groups)

    if strategy == "data":
        if num_tasks > len(train_t):
            raise ValueError(
                f"num_tasks={num_tasks} is larger than the number of training samples ({len(train_t)}); use fewer tasks"
            )
        perm = torch.randperm(len(train_t), generator=gen)
        train_idx = [torch.sort(c).values for c in torch.tensor_split(perm, num_tasks)]
        test_idx = [] if test_t is None else [torch.arange(len(test_t)) for _ in range(num_tasks)]
        return TaskSplit("data", train_idx, test_idx, [list(all_classes) for _ in range(num_tasks)])

    # domain split
    train_d = _as_long(train_domains)
    if train_d is None:
        raise ValueError(
            "split_strategy domain needs a dataset with domains (e.g. domainnet, or a custom dataset "
            "laid out as <domain>/<class>/<image>); this dataset has none: use --split_strategy class or data"
        )
    if len(train_d) != len(train_t):
        raise ValueError(f"{len(train_d)} train domains for {len(train_t)} train targets")
    present = sorted(int(d) for d in torch.unique(train_d).tolist())
    if domain_order is None:
        order = present
    else:
        order = [int(d) for d in domain_order]
        missing = [d for d in order if d not in present]
        if missing:
            raise ValueError(f"domain_order names domains {missing} that the training set lacks (it has {present})")
        if len(set(order)) != len(order):
            raise ValueError(f"domain_order {order} repeats a domain")
    if num_tasks > len(order):
        raise ValueError(
            f"num_tasks={num_tasks} is larger than the number of domains ({len(order)}); "
            f"use --num_tasks {len(order)} or fewer (one domain per task)"
        )
    order = order[:num_tasks]
    train_idx = [(train_d == d).nonzero().flatten() for d in order]
    test_idx: list[torch.Tensor] = []
    if test_t is not None:
        test_d = _as_long(test_domains)
        if test_d is None:
            raise ValueError("split_strategy domain needs domains for the test set too, but it has none")
        if len(test_d) != len(test_t):
            raise ValueError(f"{len(test_d)} test domains for {len(test_t)} test targets")
        test_idx = [(test_d == d).nonzero().flatten() for d in order]
    return TaskSplit("domain", train_idx, test_idx, [list(all_classes) for _ in range(num_tasks)], list(order))


def stratified_subset(
    targets: torch.Tensor, indices: torch.Tensor, fraction: float, generator: torch.Generator
) -> torch.Tensor:
    """A class-stratified ``fraction`` of ``indices``, in ascending order.

    Each class with ``n`` samples among ``indices`` keeps ``max(1, floor(fraction · n + 0.5))`` of them
    (half rounds up: 2.5 → 3), drawn with ``generator``; the one subsampler of the package (task
    subsets, ``--train_fraction``; linear evaluation, ``--data_fraction``).

    Example:
        >>> y = torch.tensor([0] * 5 + [1] * 4)
        >>> stratified_subset(y, torch.arange(9), 0.5, torch.Generator().manual_seed(0)).numel()  # 3 + 2
        5
    """
    indices = torch.as_tensor(indices, dtype=torch.long)
    y = targets[indices]
    parts = []
    for c in torch.unique(y).tolist():
        members = indices[y == c]
        k = max(1, int(math.floor(fraction * len(members) + 0.5)))
        parts.append(members[torch.randperm(len(members), generator=generator)[:k]])
    return torch.sort(torch.cat(parts)).values if parts else indices


def subsample_train(split: TaskSplit, targets: Sequence[int] | torch.Tensor, fraction: float, seed: int) -> TaskSplit:
    """Keep a seeded ``fraction`` of every task's training samples (test indices unchanged).

    Within each task the samples of each class (all of them, when unlabelled)
    are subsampled separately by :func:`stratified_subset`, so class
    proportions are preserved. The choice depends only on
    ``seed`` (a generator of its own), not on the global RNG. ``fraction == 1``
    returns ``split`` itself.

    Example:
        >>> s = make_splits(torch.arange(100) % 5, None, 5, "class", seed=0)
        >>> [len(i) for i in subsample_train(s, torch.arange(100) % 5, 0.25, seed=0).train_indices]
        [5, 5, 5, 5, 5]
    """
    fraction = float(fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return split
    t = _as_long(targets)
    assert t is not None
    gen = torch.Generator().manual_seed(int(seed) + 7919)  # independent of the split's own draws
    kept: list[torch.Tensor] = []
    for idx in split.train_indices:
        kept.append(stratified_subset(t, idx, fraction, gen))
    return TaskSplit(split.strategy, kept, split.test_indices, split.task_classes, split.task_domains)
