"""Accumulate probe results across tasks and write the result files.

:class:`ContinualReport` holds, per probe, the ``T×T`` accuracy matrix
(``R[t][i]``: after task ``t``, on task ``i``; NaN where not yet evaluated),
the joint accuracy after each task and the random-initialisation baseline.
It serialises to a JSON-able dict (stored in checkpoints for resume) and
writes, into a results folder, each file atomically:

* ``accuracy_matrix.csv``: ``probe, after_task, task_0..task_{T-1}, joint``
  (one ``random_init`` row per probe when a baseline is set; empty cell =
  not evaluated);
* ``metrics.json``: per probe, the metrics of :mod:`cassle.eval.metrics`,
  the joint accuracy, the baseline and the full matrix (NaN written as
  ``null``);
* the figures of :mod:`cassle.eval.figures`, each as PNG and PDF:
  ``accuracy_matrix_<probe>`` (heat map with a joint column),
  ``accuracy_curves`` (joint and average accuracy per task seen) and
  ``forgetting`` (per task, from the second evaluated task on); skipped if
  matplotlib is missing. Their title is :attr:`ContinualReport.title`
  (see :func:`run_title`).

While training is still running, metrics cover the tasks seen so far: the
leading ``(t+1)×(t+1)`` block of the matrix, ``t`` the last evaluated task.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from cassle.fileio import atomic_write  # noqa: F401  (re-exported: __all__)

from . import metrics as M

__all__ = ["ContinualReport", "format_table", "run_title", "atomic_write"]

PathLike = str | os.PathLike


def _nan_list(n: int) -> list[float]:
    return [math.nan] * n


def _to_json(x: float) -> float | None:
    """NaN/inf -> None (strict JSON has no NaN), else a plain float."""
    x = float(x)
    return x if math.isfinite(x) else None


def _from_json(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _fmt(x: float, width: int = 8) -> str:
    if not math.isfinite(x):
        return f"{'-':>{width}}"
    return f"{(x if round(x, 2) != 0 else 0.0):>{width}.2f}"  # never "-0.00"


def run_title(method: str, strategy: str, dataset: str, split_strategy: str, num_tasks: int | None = None) -> str:
    """The figure title of a run, e.g. ``barlow_twins + cassle · cifar100 · class split · 5 tasks``."""
    parts = [f"{method} + {strategy}", str(dataset), f"{split_strategy} split"]
    if num_tasks is not None:
        parts.append(f"{int(num_tasks)} task{'s' if int(num_tasks) != 1 else ''}")
    return " · ".join(parts)


class ContinualReport:
    """Accuracy matrices, joint accuracies and baselines of a continual run, per probe.

    Args:
        num_tasks: number of tasks ``T``.
        probes: probe names known up front; probes first seen in a result
            passed to :meth:`update` / :meth:`set_baseline` are added then.
        title: what the run is (method, strategy, dataset, split; see :func:`run_title`),
            shown on top of every figure; ``None``: no run line.
    """

    def __init__(self, num_tasks: int, probes: Iterable[str] = (), title: str | None = None) -> None:
        if int(num_tasks) < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        self.num_tasks = int(num_tasks)
        self.title = title
        self.matrix: dict[str, list[list[float]]] = {}
        self.joint: dict[str, list[float]] = {}
        self.baseline: dict[str, list[float]] = {}
        self.baseline_joint: dict[str, float] = {}
        self.tasks_done: list[int] = []
        for p in probes:
            self._add_probe(p)

    # ------------------------------------------------------------------ state
    @property
    def probes(self) -> list[str]:
        """Probe names in insertion order."""
        return list(self.matrix)

    def _add_probe(self, probe: str) -> None:
        if probe not in self.matrix:
            T = self.num_tasks
            self.matrix[probe] = [_nan_list(T) for _ in range(T)]
            self.joint[probe] = _nan_list(T)
            self.baseline[probe] = _nan_list(T)
            self.baseline_joint[probe] = math.nan

    def _check_row(self, probe: str, row: list[float]) -> list[float]:
        row = [float(v) for v in row]
        if len(row) != self.num_tasks:
            raise ValueError(f"probe {probe!r}: got {len(row)} per-task accuracies, expected {self.num_tasks}")
        return row

    def update(self, task: int, result: dict[str, Any] | None) -> None:
        """Store row ``task`` of every probe from an :func:`evaluate_after_task` result.

        ``result`` is ``{"per_task": {probe: [acc per task]}, "joint": {probe: acc}}``;
        ``None`` (probes skipped) is ignored. Re-evaluating a task overwrites its row.
        """
        if result is None:
            return
        if not 0 <= int(task) < self.num_tasks:
            raise ValueError(f"task must be in [0, {self.num_tasks}), got {task}")
        task = int(task)
        for probe, row in result.get("per_task", {}).items():
            self._add_probe(probe)
            self.matrix[probe][task] = self._check_row(probe, row)
        for probe, acc in result.get("joint", {}).items():
            self._add_probe(probe)
            self.joint[probe][task] = float(acc)
        if task not in self.tasks_done:
            self.tasks_done = sorted(self.tasks_done + [task])

    def set_baseline(self, result: dict[str, Any] | None) -> None:
        """Store the random-initialisation accuracies (same format as :meth:`update`)."""
        if result is None:
            return
        for probe, row in result.get("per_task", {}).items():
            self._add_probe(probe)
            self.baseline[probe] = self._check_row(probe, row)
        for probe, acc in result.get("joint", {}).items():
            self._add_probe(probe)
            self.baseline_joint[probe] = float(acc)

    @property
    def last_task(self) -> int | None:
        """The last evaluated task, or ``None`` before any evaluation."""
        return self.tasks_done[-1] if self.tasks_done else None

    # ---------------------------------------------------------------- metrics
    def has_baseline(self, probe: str) -> bool:
        """True when a random-init baseline row was set for ``probe``."""
        return any(math.isfinite(v) for v in self.baseline[probe])

    def metrics(self, probe: str) -> dict[str, Any]:
        """Metrics of ``probe`` on the tasks seen so far (all NaN before any update).

        Keys: ``average_accuracy``, ``average_forgetting``, ``backward_transfer``,
        ``forward_transfer``, ``joint_accuracy`` (after the last evaluated task),
        ``baseline_average`` (mean random-init accuracy over all tasks).
        """
        if probe not in self.matrix:
            raise KeyError(f"unknown probe {probe!r}; known: {self.probes}")
        t = self.last_task
        base = self.baseline[probe]
        base_avg = float(np.mean(base)) if all(math.isfinite(b) for b in base) else math.nan
        if t is None:
            out = {
                k: math.nan for k in ("average_accuracy", "average_forgetting", "backward_transfer", "forward_transfer")
            }
            out.update(joint_accuracy=math.nan, baseline_average=base_avg)
            return out
        block = np.asarray(self.matrix[probe], dtype=np.float64)[: t + 1, : t + 1]
        out = M.summarize(block, base[: t + 1] if self.has_baseline(probe) else None)
        out["joint_accuracy"] = self.joint[probe][t]
        out["baseline_average"] = base_avg
        return out

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON-able dict (NaN -> ``None``) for checkpoints and resume."""
        return {
            "num_tasks": self.num_tasks,
            "tasks_done": list(self.tasks_done),
            "title": self.title,
            "probes": {
                p: {
                    "matrix": [[_to_json(v) for v in row] for row in self.matrix[p]],
                    "joint": [_to_json(v) for v in self.joint[p]],
                    "baseline": [_to_json(v) for v in self.baseline[p]],
                    "baseline_joint": _to_json(self.baseline_joint[p]),
                }
                for p in self.probes
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ContinualReport:
        """Rebuild a report from :meth:`to_dict` output (raises ``ValueError`` if malformed)."""
        try:
            title = d.get("title")  # absent from reports saved before titles existed
            rep = cls(int(d["num_tasks"]), title=None if title is None else str(title))
            T = rep.num_tasks
            for p, s in d["probes"].items():
                rep._add_probe(p)
                mat = [[_from_json(v) for v in row] for row in s["matrix"]]
                if len(mat) != T or any(len(r) != T for r in mat):
                    raise ValueError(f"probe {p!r}: matrix is not {T}×{T}")
                rep.matrix[p] = mat
                rep.joint[p] = rep._check_row(p, [_from_json(v) for v in s["joint"]])
                rep.baseline[p] = rep._check_row(p, [_from_json(v) for v in s["baseline"]])
                rep.baseline_joint[p] = _from_json(s.get("baseline_joint"))
            rep.tasks_done = sorted(int(t) for t in d.get("tasks_done", []))
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed ContinualReport dict: {e!r}") from e
        return rep

    def table_rows(self, probe: str) -> tuple[list[str], list[list[Any]]]:
        """``(columns, rows)`` of ``probe``'s matrix for table loggers: one row per evaluated task
        (``random_init`` first when set), cells in percent, ``None`` where not evaluated."""
        T = self.num_tasks
        columns = ["after"] + [f"task_{i}" for i in range(T)] + ["joint"]
        rows: list[list[Any]] = []
        if self.has_baseline(probe):
            rows.append(
                ["random_init"] + [_to_json(v) for v in self.baseline[probe]] + [_to_json(self.baseline_joint[probe])]
            )
        for t in self.tasks_done:
            rows.append([f"task_{t}"] + [_to_json(v) for v in self.matrix[probe][t]] + [_to_json(self.joint[probe][t])])
        return columns, rows

    # ----------------------------------------------------------------- files
    def write(self, results_dir: PathLike) -> list[Path]:
        """Write the CSV, the JSON and the figures (PNG + PDF) into ``results_dir``; returns the paths."""
        results_dir = Path(results_dir)
        results_dir.mkdir(parents=True, exist_ok=True)
        written = [results_dir / "accuracy_matrix.csv", results_dir / "metrics.json"]
        atomic_write(written[0], lambda fh: fh.write(self._csv()))
        atomic_write(written[1], lambda fh: fh.write(self._metrics_json()))
        return written + self._figures(results_dir)

    def is_written(self, results_dir: PathLike) -> bool:
        """Whether ``results_dir`` holds this report's CSV and JSON as :meth:`write` would write them now
        (false when a kill came between the run state and the result files, or they were deleted)."""
        results_dir = Path(results_dir)
        try:
            return (results_dir / "accuracy_matrix.csv").read_text() == self._csv() and (
                results_dir / "metrics.json"
            ).read_text() == self._metrics_json()
        except (OSError, UnicodeDecodeError):
            return False

    def _csv(self) -> str:
        T = self.num_tasks
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["probe", "after_task"] + [f"task_{i}" for i in range(T)] + ["joint"])
        cell = lambda v: "" if not math.isfinite(v) else repr(float(v))  # noqa: E731
        for p in self.probes:
            if self.has_baseline(p):
                w.writerow([p, "random_init"] + [cell(v) for v in self.baseline[p]] + [cell(self.baseline_joint[p])])
            for t in range(T):
                w.writerow([p, t] + [cell(v) for v in self.matrix[p][t]] + [cell(self.joint[p][t])])
        return buf.getvalue()

    def _metrics_json(self) -> str:
        out: dict[str, Any] = {"num_tasks": self.num_tasks, "tasks_done": list(self.tasks_done), "probes": {}}
        for p in self.probes:
            m = {k: _to_json(v) for k, v in self.metrics(p).items()}
            m["joint_per_task"] = [_to_json(v) for v in self.joint[p]]
            m["baseline"] = [_to_json(v) for v in self.baseline[p]]
            m["baseline_joint"] = _to_json(self.baseline_joint[p])
            m["accuracy_matrix"] = [[_to_json(v) for v in row] for row in self.matrix[p]]
            out["probes"][p] = m
        return json.dumps(out, indent=2, allow_nan=False) + "\n"

    def _figures(self, results_dir: Path) -> list[Path]:
        """The figures of :mod:`cassle.eval.figures`; none when matplotlib is missing."""
        try:
            from . import figures

            return figures.write_report_figures(self, results_dir)
        except ImportError:
            return []


def format_table(report: ContinualReport) -> str:
    """A plain-text table per probe: the matrix ("after task t" rows, a "random init" row) and its metrics."""
    T = report.num_tasks
    label_w = max(len(f"after task {T - 1}"), len("random init"), len("average forgetting")) + 2
    header = " " * label_w + "".join(f"{f'task {i}':>8}" for i in range(T)) + f"{'joint':>8}"
    blocks = []
    for p in report.probes:
        lines = [f"probe: {p}", header]
        if report.has_baseline(p):
            lines.append(
                f"{'random init':<{label_w}}"
                + "".join(_fmt(v) for v in report.baseline[p])
                + _fmt(report.baseline_joint[p])
            )
        for t in range(T):
            lines.append(
                f"{f'after task {t}':<{label_w}}"
                + "".join(_fmt(v) for v in report.matrix[p][t])
                + _fmt(report.joint[p][t])
            )
        m = report.metrics(p)
        for name, key in (
            ("average accuracy", "average_accuracy"),
            ("average forgetting", "average_forgetting"),
            ("backward transfer", "backward_transfer"),
            ("forward transfer", "forward_transfer"),
            ("joint accuracy", "joint_accuracy"),
        ):
            lines.append(f"{name:<{label_w}}" + _fmt(m[key]))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) if blocks else "(no probe results)"
