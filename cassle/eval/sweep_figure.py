"""The comparison figure of a sweep, written by :func:`cassle.sweep_results.write_results` next to
``summary.csv``: ``summary_joint_accuracy.png|pdf`` (:func:`sweep_figure`), the final joint accuracy per method
(bar groups), one bar per strategy (and other varying parameter), mean ± sample std over seeds."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .figure_style import (
    NUMBER_PT,
    STYLE,
    new_figure,
    probe_label,
    save_figure,
    style_context,
    wrap_text,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["sweep_figure", "write_sweep_figure"]


def _float(cell: str | None) -> float:
    try:
        return float(cell) if cell not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _sweep_bars(
    header: Sequence[str], rows: Sequence[dict[str, str]]
) -> tuple[str, list[str], list[str], list[str], dict[tuple[str, str], dict[str, str]]]:
    """``(group column, series columns, groups, series, {(group, series): row})`` of the summary table.

    Groups are the methods (the ``method`` column when the sweep varies it, else the experiments);
    a series is the strategy and any other varying parameter of the row (``""`` when none varies).
    """
    params = list(header[1 : header.index("seeds")]) if "seeds" in header else []
    group_col = "method" if "method" in params else "experiment"
    # a parameter with one value in every row names no series (it would only lengthen every legend entry)
    rest = list(
        dict.fromkeys(
            k
            for k in ("strategy", *params)
            if k in params and k != group_col and len({row.get(k, "") for row in rows}) > 1
        )
    )

    def series(row: dict[str, str], with_experiment: bool) -> str:
        parts = [row[k] if k == "strategy" else f"{k}={row[k]}" for k in rest if row.get(k, "") != ""]
        if with_experiment:
            parts.insert(0, row["experiment"])
        return ", ".join(parts)

    keys = [(row[group_col], series(row, False)) for row in rows]
    with_exp = group_col != "experiment" and len(set(keys)) < len(keys)  # same parameters, other experiments
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for row in rows:
        cells[(row[group_col], series(row, with_exp))] = row
    groups = list(dict.fromkeys(g for g, _ in cells))
    names = list(dict.fromkeys(s for _, s in cells))
    return group_col, (["experiment"] if with_exp else []) + rest, groups, names, cells


def sweep_figure(summary_csv: Path, metric: str = "joint_accuracy") -> Figure | None:
    """Grouped bars of ``<probe>.<metric>`` from a sweep's ``summary.csv``: one panel per probe.

    One group per method (see :func:`_sweep_bars`), one bar per strategy present in the group, in
    the strategy's colour throughout. Bar height: mean over seeds; error bar: sample std (none for a
    setting with a single finished seed); the mean is printed above each bar. Bars start at
    zero so their lengths compare. None when no row has a value.
    """
    with open(summary_csv, newline="") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    probes = [c[: -len(f".{metric} mean")] for c in header if c.endswith(f".{metric} mean")]
    probes = [p for p in probes if any(math.isfinite(_float(r.get(f"{p}.{metric} mean"))) for r in rows)]
    if not probes or not rows:
        return None
    group_col, series_cols, groups, names, cells = _sweep_bars(header, rows)

    def bars(p: str, g: str) -> list[tuple[int, float, float]]:
        """``(series index, mean, error)`` of the bars of group ``g`` in the panel of probe ``p``."""
        out = []
        for k, name in enumerate(names):
            row = cells.get((g, name))
            mean = _float(row.get(f"{p}.{metric} mean")) if row else math.nan
            if math.isfinite(mean):
                std = _float(row.get(f"{p}.{metric} std"))
                out.append((k, mean, std if _float(row.get("n")) > 1 and math.isfinite(std) else math.nan))
        return out

    per_group = max(len(bars(p, g)) for p in probes for g in groups)
    nice = metric.replace("_", " ")
    shown = sorted({k for p in probes for g in groups for k, _, _ in bars(p, g)})  # the series with a bar
    pt = STYLE["legend.fontsize"]
    with style_context():
        panel_w = max(3.4, 1.0 + len(groups) * (0.45 * per_group + 0.4))
        width = min(24.0, max(4.8, panel_w * len(probes) + 0.3))
        # the legend below the panels: as many columns as fit, and a name longer than its column (a sweep that
        # varies many parameters at once) wrapped at its commas; the figure grows by the legend's height
        entry_in = max(len(names[k]) for k in shown) * 0.55 * pt / 72 + 0.75
        ncols = max(1, min(len(shown), 4, int((width - 0.3) // entry_in)))
        labels = {k: wrap_text(names[k], (width - 0.3) / ncols - 0.75, pt, sep=", ", keep_sep=True) for k in shown}
        title = wrap_text(", ".join(series_cols), width - 0.5, pt, sep=", ", keep_sep=True) if series_cols else ""
        legend_lines = 0
        if names != [""]:
            per_row = [
                max(labels[k].count("\n") + 1 for k in shown[i : i + ncols]) for i in range(0, len(shown), ncols)
            ]
            legend_lines = sum(per_row) + (title.count("\n") + 1 if title else 0)
        fig = new_figure(width, 4.2 + max(0, legend_lines - 2) * 1.5 * pt / 72)
        axes = np.atleast_1d(fig.subplots(1, len(probes), squeeze=False)[0])
        bar_w = 0.8 / per_group
        bar_in = bar_w * (panel_w - 1.0) / len(groups)  # about how wide a bar is on paper
        upright = bar_in >= 0.42  # room for "66.0" at NUMBER_PT beside its neighbour
        rotate = len(groups) * max(len(g) for g in groups) * 0.09 > panel_w - 1.0
        handles: dict[int, Any] = {}
        for ax, p in zip(axes, probes):
            top = 0.0
            for g_i, g in enumerate(groups):
                present = bars(p, g)
                for j, (k, mean, err) in enumerate(present):
                    x = g_i + (j - (len(present) - 1) / 2) * bar_w
                    yerr = None if math.isnan(err) else err  # one seed: no spread to show
                    err = 0.0 if yerr is None else err
                    c = ax.bar(x, mean, bar_w * 0.92, yerr=yerr, capsize=3, color=f"C{k % 10}", error_kw={"lw": 1.0})
                    handles.setdefault(k, c.patches[0])
                    ax.annotate(
                        f"{mean:.1f}",
                        (x, mean + err),
                        xytext=(0, 2),
                        textcoords="offset points",
                        ha="center",
                        va="bottom",
                        fontsize=NUMBER_PT,
                        rotation=0 if upright else 90,
                    )
                    top = max(top, mean + err)
            ax.set_xticks(range(len(groups)), groups)
            if rotate:
                ax.tick_params(axis="x", labelrotation=25)
                for label in ax.get_xticklabels():
                    label.set(ha="right", rotation_mode="anchor")
            ax.set_xlim(-0.6, len(groups) - 0.4)
            ax.set_ylim(0.0, max(1.0, top * (1.12 if upright else 1.22)))
            ax.set_ylabel(f"final {nice} (%)")
            ax.set_xlabel(group_col)
            ax.set_title(f"{probe_label(p)} probe")
            ax.grid(axis="y", alpha=0.3)
            ax.set_axisbelow(True)
        if names != [""]:
            order = sorted(handles)
            fig.legend(
                [handles[k] for k in order],
                [labels[k] for k in order],
                loc="outside lower center",
                ncols=ncols,
                frameon=False,
                title=title or None,
            )
        fig.suptitle(wrap_text(f"final {nice}: mean ± std over seeds", width, STYLE["figure.titlesize"]))
    return fig


def write_sweep_figure(summary_csv: Path, metric: str = "joint_accuracy") -> list[Path]:
    """Write ``summary_<metric>.png|pdf`` next to ``summary_csv``; returns the paths ([] when nothing to plot).

    Raises ``ImportError`` when matplotlib is missing.
    """
    summary_csv = Path(summary_csv)
    fig = sweep_figure(summary_csv, metric)
    return [] if fig is None else save_figure(fig, summary_csv.parent / f"summary_{metric}")
