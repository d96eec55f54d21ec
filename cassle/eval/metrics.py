"""Continual-learning metrics as pure functions of the accuracy matrix.

``R`` is a ``T×T`` matrix (list of lists, NumPy array or tensor) with
``R[t][i]`` = accuracy on task ``i`` measured after training on task ``t``.
Rows not yet evaluated may be NaN; every metric uses only the entries it
needs, so a NaN elsewhere does not spread.

Definitions (accuracies in percent, higher is better except forgetting):

* average accuracy: ``mean_i R[T-1][i]``.
* average forgetting (Chaudhry et al., "Riemannian Walk for Incremental
  Learning", ECCV 2018): ``mean_{i<T-1} (max_{t<T-1} R[t][i] - R[T-1][i])``.
* backward transfer, BWT (Lopez-Paz & Ranzato, "Gradient Episodic Memory for
  Continual Learning", NeurIPS 2017): ``mean_{i<T-1} (R[T-1][i] - R[i][i])``.
* forward transfer, FWT (Lopez-Paz & Ranzato 2017):
  ``mean_{i>0} (R[i-1][i] - b[i])`` with ``b`` the accuracy of the randomly
  initialised network on each task.

With a single task (``T = 1``) there is no past or future task, so
forgetting, BWT and FWT are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "average_accuracy",
    "average_forgetting",
    "backward_transfer",
    "forward_transfer",
    "summarize",
]

MatrixLike = Sequence[Sequence[float]] | np.ndarray | Any


def _matrix(R: MatrixLike) -> np.ndarray:
    """Return ``R`` as a square float64 array, raising ``ValueError`` otherwise."""
    if hasattr(R, "detach"):  # torch tensor without importing torch
        R = R.detach().cpu().numpy()
    arr = np.asarray(R, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be a non-empty square T×T matrix, got shape {arr.shape}")
    return arr


def _mean(values: np.ndarray) -> float:
    """Mean of a 1-D array, NaN for an empty one (no NumPy warning)."""
    return float(np.mean(values)) if values.size else math.nan


def average_accuracy(R: MatrixLike) -> float:
    """Mean accuracy over all tasks after the last task: ``mean_i R[T-1][i]``."""
    arr = _matrix(R)
    return _mean(arr[-1])


def average_forgetting(R: MatrixLike) -> float:
    """Average forgetting (Chaudhry et al., ECCV 2018).

    ``mean_{i<T-1} (max_{t<T-1} R[t][i] - R[T-1][i])``: how far each old
    task's accuracy has fallen from its best value before the last task. The
    maximum runs over all earlier rows ``t < T-1`` (including ``t < i``, as in
    the original definition for representations, where a task can be probed
    before it is trained on). NaN when ``T = 1``.
    """
    arr = _matrix(R)
    T = arr.shape[0]
    if T < 2:
        return math.nan
    best = np.max(arr[: T - 1, : T - 1], axis=0)
    return _mean(best - arr[T - 1, : T - 1])


def backward_transfer(R: MatrixLike) -> float:
    """Backward transfer, BWT (Lopez-Paz & Ranzato, GEM, NeurIPS 2017).

    ``mean_{i<T-1} (R[T-1][i] - R[i][i])``; negative values mean forgetting.
    NaN when ``T = 1``.
    """
    arr = _matrix(R)
    T = arr.shape[0]
    if T < 2:
        return math.nan
    idx = np.arange(T - 1)
    return _mean(arr[T - 1, idx] - arr[idx, idx])


def forward_transfer(R: MatrixLike, baseline: Sequence[float]) -> float:
    """Forward transfer, FWT (Lopez-Paz & Ranzato, GEM, NeurIPS 2017).

    ``mean_{i>0} (R[i-1][i] - baseline[i])``, where ``baseline[i]`` is the
    accuracy on task ``i`` of the randomly initialised network. NaN when
    ``T = 1`` or when no baseline is given.
    """
    arr = _matrix(R)
    T = arr.shape[0]
    if baseline is None or T < 2:
        return math.nan
    if hasattr(baseline, "detach"):
        baseline = baseline.detach().cpu().numpy()
    b = np.asarray(baseline, dtype=np.float64).reshape(-1)
    if b.shape[0] != T:
        raise ValueError(f"baseline has {b.shape[0]} entries but the accuracy matrix has {T} tasks")
    idx = np.arange(1, T)
    return _mean(arr[idx - 1, idx] - b[idx])


def summarize(R: MatrixLike, baseline: Sequence[float] | None = None) -> dict[str, float]:
    """All metrics of ``R`` in one dict.

    Keys: ``average_accuracy``, ``average_forgetting``, ``backward_transfer``,
    ``forward_transfer`` (NaN without ``baseline``).
    """
    return {
        "average_accuracy": average_accuracy(R),
        "average_forgetting": average_forgetting(R),
        "backward_transfer": backward_transfer(R),
        "forward_transfer": forward_transfer(R, baseline) if baseline is not None else math.nan,
    }
