"""Sweep results: each run's final metrics, mean ± std over seeds per setting, ``results.csv`` / ``summary.csv``
and the comparison figure ``summary_joint_accuracy.png|pdf`` (:func:`cassle.eval.sweep_figure.sweep_figure`)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cassle.checkpoint import atomic_write_text
from cassle.errors import SweepError  # noqa: F401  (re-exported)
from cassle.fileio import read_json_object
from cassle.sweep_config import METRICS, Run


def read_metrics(run: Run) -> dict[str, float]:
    """``{"<probe>.<metric>": value}`` from the run's ``results/metrics.json`` (empty if absent)."""
    path = run.run_dir / "results" / "metrics.json"
    try:
        data = read_json_object(path)
    except ValueError:
        return {}
    probes = data.get("probes")
    out: dict[str, float] = {}
    for probe, m in sorted(probes.items() if isinstance(probes, dict) else []):
        for key in METRICS:
            v = m.get(key) if isinstance(m, dict) else None
            out[f"{probe}.{key}"] = float(v) if isinstance(v, (int, float)) else math.nan
    return out


def _varying_params(runs: Sequence[Run]) -> list[str]:
    keys: list[str] = []
    for r in runs:
        for k in r.params:
            if k not in keys and k != "seed":
                keys.append(k)
    return [k for k in keys if len({json.dumps(r.params.get(k), sort_keys=True) for r in runs}) > 1]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of the finite ``values``."""
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return " ".join(str(x) for x in v)
    return "" if v is None else str(v)


def results_tables(runs: Sequence[Run]) -> tuple[list[str], list[list[Any]], list[str], list[list[Any]]]:
    """``(run_header, run_rows, summary_header, summary_rows)`` of the sweep."""
    metrics = {r.name: read_metrics(r) for r in runs}
    metric_keys: list[str] = []
    for m in metrics.values():
        metric_keys += [k for k in m if k not in metric_keys]
    params = _varying_params(runs)
    header = ["run", "experiment", *params, "seed", "status", *metric_keys]
    rows = [
        [
            r.name,
            r.experiment,
            *[r.params.get(k) for k in params],
            r.params.get("seed"),
            r.status,
            *[metrics[r.name].get(k, math.nan) for k in metric_keys],
        ]
        for r in runs
    ]

    groups: dict[str, list[Run]] = {}
    for r in runs:
        key = json.dumps(
            [r.experiment, {k: v for k, v in r.params.items() if k != "seed"}], sort_keys=True, default=str
        )
        groups.setdefault(key, []).append(r)
    s_header = ["experiment", *params, "seeds", "n"] + [f"{k} {s}" for k in metric_keys for s in ("mean", "std")]
    s_rows = []
    for members in groups.values():
        first = members[0]
        stats: list[Any] = []
        for k in metric_keys:
            stats += list(mean_std([metrics[r.name].get(k, math.nan) for r in members]))
        finished = [r for r in members if metrics[r.name]]
        s_rows.append(
            [
                first.experiment,
                *[first.params.get(k) for k in params],
                " ".join(str(r.params["seed"]) for r in members if r.params.get("seed") is not None),
                len(finished),
                *stats,
            ]
        )
    return header, rows, s_header, s_rows


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow([repr(v) if isinstance(v, float) and math.isfinite(v) else _cell(v) for v in row])
    return buf.getvalue()


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def _write_figure(summary_csv: Path) -> list[Path]:
    """The sweep's comparison figure next to ``summary_csv`` (none when matplotlib is missing)."""
    try:
        from cassle.eval.sweep_figure import write_sweep_figure

        return write_sweep_figure(summary_csv)
    except ImportError:
        return []


def write_results(runs: Sequence[Run], output_dir: Path) -> str:
    """Write ``results.csv``, ``summary.csv`` and the comparison figure into ``output_dir``; return the printed text."""
    header, rows, s_header, s_rows = results_tables(runs)
    atomic_write_text(output_dir / "results.csv", _csv(header, rows))
    atomic_write_text(output_dir / "summary.csv", _csv(s_header, s_rows))
    figures = _write_figure(output_dir / "summary.csv")
    metric_keys = header[header.index("status") + 1 :]
    n_params = len(s_header) - 2 - 2 * len(metric_keys)
    pretty_rows = []
    for row in s_rows:
        cells = [_cell(v) for v in row[: n_params + 2]]
        n = row[n_params + 1]
        for i in range(len(metric_keys)):
            m, s = row[n_params + 2 + 2 * i], row[n_params + 3 + 2 * i]
            cells.append("" if not math.isfinite(m) else (f"{m:.2f} ± {s:.2f}" if n > 1 else f"{m:.2f}"))
        pretty_rows.append(cells)
    text = (
        "Runs:\n"
        + _text_table(header, [[_cell(v) for v in r] for r in rows])
        + "\n\nSummary (mean ± sample std over seeds; a single run shows its value):\n"
        + _text_table(s_header[: n_params + 2] + metric_keys, pretty_rows)
        + "\n\nWritten: "
        + ", ".join(str(p) for p in [output_dir / "results.csv", output_dir / "summary.csv", *figures])
    )
    return text
