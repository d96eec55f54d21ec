"""Paper figures of a continual run and of a sweep, each written atomically as PNG (200 dpi) and PDF.

Run figures, written by :meth:`cassle.eval.report.ContinualReport.write` into the run's ``results/``:

* ``accuracy_matrix_<probe>.png|pdf`` (:func:`heatmap_figure`): the accuracy matrix ``R[t][i]``
  (row: after training task ``t``; column: evaluated on task ``i``), a separate ``joint`` column
  (all-class accuracy after each task) and, when set, a ``random init`` row on top.
* ``accuracy_curves.png|pdf`` (:func:`curves_figure`): joint accuracy and average accuracy (mean
  over the tasks seen so far) against the number of tasks seen, one line per probe, the
  random-init baseline as a dashed horizontal line of the same colour.
* ``forgetting.png|pdf`` (:func:`forgetting_figure`): forgetting of every earlier task after the
  last evaluated task, one bar per probe, plus the average (written once two tasks are evaluated).

The sweep's figure is in :mod:`cassle.eval.sweep_figure`; the shared style in :mod:`cassle.eval.figure_style`.

matplotlib is imported inside the functions and used through its object API on the Agg canvas
(no pyplot, no global backend change; style settings only inside ``rc_context``), so importing
:mod:`cassle` never needs it; callers catch ``ImportError`` to skip the figures. PDFs embed
TrueType fonts (``pdf.fonttype 42``), which camera-ready submission checkers accept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import metrics as M
from .figure_style import (
    GAP,
    NEUTRAL,
    NUMBER_PT,
    STYLE,
    ContinualReport,
    colour_limits,
    figure_title,
    finite_values,
    new_figure,
    probe_label,
    save_figure,
    style_context,
    text_colour,
    wrap_text,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["curves_figure", "forgetting_figure", "heatmap_figure", "per_task_forgetting", "write_report_figures"]


def heatmap_figure(report: ContinualReport, probe: str) -> Figure:
    """The accuracy matrix of ``probe`` as a heat map with a joint column and a random-init row.

    Colour scale: sequential (viridis) over the cells of tasks already trained on (``i <= t``: the
    diagonal and below, the lower triangle that shows learning and forgetting), with limits fitted
    to those values by :func:`colour_limits`. A fixed 0–100 scale paints a matrix of 88–100
    uniformly yellow and hides the few points of forgetting the figure is meant to show. A
    diverging map of the change from the diagonal was not chosen: its colour would encode a
    difference while the printed number is an accuracy, and the per-task forgetting has its own
    figure (:func:`forgetting_figure`). Cells of tasks not yet trained on (``i > t``, probed for
    forward transfer) are printed in grey on white: colouring them on the fitted scale would clip
    them (they are usually far lower), and fitting the scale to them too would flatten the lower
    triangle again. The joint column and the random-init row measure something else (all classes
    at once; an untrained network), so they are printed on a neutral grey background. Diagonal
    cells (the task just trained) are outlined; not-evaluated (NaN) cells are masked and blank.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    T = report.num_tasks
    R = np.asarray(report.matrix[probe], dtype=np.float64)
    joint = np.asarray(report.joint[probe], dtype=np.float64)
    has_base = report.has_baseline(probe)
    off = (1.0 + GAP) if has_base else 0.0  # y of the "after task 0" row
    jx = T + GAP  # x of the joint column
    seen = np.tril(np.ones((T, T), dtype=bool))
    norm = Normalize(*colour_limits(R[seen]))

    with style_context():
        from matplotlib import colormaps

        cmap = colormaps["viridis"].with_extremes(bad=(1.0, 1.0, 1.0, 0.0))
        cell_w, cell_h = 0.62, 0.42
        width = max(4.8, 1.7 + cell_w * (T + 1 + GAP) + 1.1)
        height = 1.45 + (0.25 if report.title else 0.0) + cell_h * (T + off)
        fig = new_figure(width, height)
        ax = fig.add_subplot()
        data = np.ma.masked_where(~(seen & np.isfinite(R)), R)
        ax.imshow(
            data,
            cmap=cmap,
            norm=norm,
            aspect="auto",
            interpolation="nearest",
            extent=(-0.5, T - 0.5, off + T - 0.5, off - 0.5),
        )

        def number(x: float, y: float, v: float, colour: str, bold: bool = False) -> None:
            ax.text(
                x,
                y,
                f"{v:.1f}",
                ha="center",
                va="center",
                color=colour,
                fontsize=NUMBER_PT,
                fontweight="bold" if bold else "normal",
            )

        def neutral(x: float, y: float) -> None:
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1.0, 1.0, facecolor=NEUTRAL, edgecolor="white", lw=1.0))

        for t in range(T):
            for i in range(T):
                if math.isfinite(R[t, i]):
                    colour = text_colour(cmap(norm(R[t, i]))) if i <= t else "#6e6e6e"
                    number(i, off + t, R[t, i], colour)
            if math.isfinite(joint[t]):
                neutral(jx, off + t)
                number(jx, off + t, joint[t], "black", bold=True)
            if math.isfinite(R[t, t]):
                ax.add_patch(Rectangle((t - 0.5, off + t - 0.5), 1.0, 1.0, fill=False, edgecolor="black", lw=1.2))
        if has_base:
            for i, v in enumerate(report.baseline[probe]):
                if math.isfinite(v):
                    neutral(i, 0.0)
                    number(i, 0.0, v, "black")
            if math.isfinite(report.baseline_joint[probe]):
                neutral(jx, 0.0)
                number(jx, 0.0, report.baseline_joint[probe], "black", bold=True)

        ax.set_xlim(-0.5, jx + 0.5)
        ax.set_ylim(off + T - 0.5, -0.5)
        ax.set_xticks([*range(T), jx], [str(i) for i in range(T)] + ["joint\n(all classes)"])
        ax.set_yticks(([0.0] if has_base else []) + [off + t for t in range(T)])
        ax.set_yticklabels((["random init"] if has_base else []) + [str(t) for t in range(T)])
        ax.tick_params(length=0)
        for s in ax.spines.values():
            s.set_visible(False)
        ax.set_xlabel("evaluated on task")
        ax.set_ylabel("after training task")
        if len(np.unique(finite_values(R[seen]))) > 1:  # one value: its colour says nothing a scale would explain
            fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="accuracy (%)", pad=0.02)
        title = figure_title(report, f"{probe_label(probe)} probe: accuracy (%)")
        fig.suptitle(wrap_text(title, width, STYLE["figure.titlesize"]))
    return fig


# ------------------------------------------------------------- curves
def _curve(report: ContinualReport, probe: str) -> tuple[list[int], list[float], list[float]]:
    """``(tasks seen, joint, average accuracy)`` after every evaluated task."""
    R = np.asarray(report.matrix[probe], dtype=np.float64)
    seen, joint, avg = [], [], []
    for t in report.tasks_done:
        seen.append(t + 1)
        joint.append(float(report.joint[probe][t]))
        row = R[t, : t + 1]
        avg.append(float(M.average_accuracy(R[: t + 1, : t + 1])) if np.isfinite(row).all() else math.nan)
    return seen, joint, avg


def _spread(ys: Sequence[float], gap: float) -> list[float]:
    """Label positions for ``ys``: neighbours at least ``gap`` apart, each crowded run centred on its points."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    clusters: list[list[int]] = []  # runs of labels (indices, ascending) that had to be pushed apart

    def start(c: list[int]) -> float:
        return sum(ys[i] for i in c) / len(c) - gap * (len(c) - 1) / 2

    for i in order:
        clusters.append([i])
        while len(clusters) > 1 and start(clusters[-2]) + gap * len(clusters[-2]) > start(clusters[-1]):
            clusters[-2:] = [clusters[-2] + clusters[-1]]
    out = list(ys)
    for c in clusters:
        for j, i in enumerate(c):
            out[i] = start(c) + j * gap
    return out


def curves_figure(report: ContinualReport) -> Figure | None:
    """Joint and average accuracy against the number of tasks seen (None before any evaluation)."""
    if not report.tasks_done or not report.probes:
        return None
    from matplotlib.ticker import MaxNLocator

    T = report.num_tasks
    with style_context():
        width = 7.6
        fig = new_figure(width, 3.4 + (0.3 if report.title else 0.0))
        axes = fig.subplots(1, 2)
        panels = (("joint accuracy (all classes)", 1), ("average accuracy (tasks seen)", 2))
        for ax, (name, k) in zip(axes, panels):
            ends = []  # (x, y, colour) of each line's last point, labelled with its value
            for n, p in enumerate(report.probes):
                colour = f"C{n % 10}"
                curve = _curve(report, p)
                x = np.asarray(curve[0])
                y = np.asarray(curve[k])
                ok = np.isfinite(y)
                if ok.any():
                    ax.plot(x[ok], y[ok], "-o", color=colour, lw=1.8, ms=5, label=probe_label(p))
                    last = np.flatnonzero(ok)[-1]
                    ends.append((float(x[last]), float(y[last]), colour))
                base = report.baseline_joint[p] if k == 1 else report.metrics(p)["baseline_average"]
                if math.isfinite(base):
                    ax.axhline(base, color=colour, ls="--", lw=1.2, label=f"{probe_label(p)} random init")
            ax.set_xlim(0.6, T + 0.25 + 0.11 * max(T, 3))  # room for the values printed after the last points
            lo, hi = ax.get_ylim()
            if hi > 100.0 >= max((e[1] for e in ends), default=0.0):
                hi = 100.0 + 0.02 * (100.0 - lo)  # an accuracy axis need not run past 100
                ax.set_ylim(lo, hi)
            for (x, y, colour), y_text in zip(ends, _spread([e[1] for e in ends], 0.07 * (hi - lo))):
                ax.annotate(
                    f"{y:.1f}",
                    (x, y),
                    xytext=(7, y_text),
                    textcoords=("offset points", "data"),
                    va="center",
                    color=colour,
                    fontsize=NUMBER_PT,
                )
            ax.set_title(name)
            ax.set_xlabel("tasks seen")
            ax.set_ylabel("accuracy (%)")
            if T <= 12:
                ax.set_xticks(range(1, T + 1))
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(axis="y", alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        more = [(h, l) for h, l in zip(*axes[1].get_legend_handles_labels()) if l not in labels]
        handles += [h for h, _ in more]
        labels += [l for _, l in more]
        if handles:
            fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), frameon=False)
        fig.suptitle(wrap_text(figure_title(report, "accuracy after each task"), width, STYLE["figure.titlesize"]))
    return fig


# ---------------------------------------------------------- forgetting
def per_task_forgetting(report: ContinualReport, probe: str) -> list[float]:
    """Forgetting of each task ``i < t`` after the last evaluated task ``t``.

    ``max_{t' < t} R[t'][i] - R[t][i]``, the per-task terms of :func:`cassle.eval.metrics.average_forgetting`
    (NaN where a cell is missing); empty before two tasks are evaluated.
    """
    t = report.last_task
    if t is None or t < 1:
        return []
    R = np.asarray(report.matrix[probe], dtype=np.float64)
    out = []
    for i in range(t):
        before = finite_values(R[:t, i])
        out.append(float(before.max() - R[t, i]) if before.size and math.isfinite(R[t, i]) else math.nan)
    return out


def forgetting_figure(report: ContinualReport) -> Figure | None:
    """Bars of :func:`per_task_forgetting` per task and probe, plus their average (None before task 1)."""
    t = report.last_task
    if t is None or t < 1 or not report.probes:
        return None
    probes = report.probes
    values = {p: per_task_forgetting(report, p) for p in probes}
    n = len(probes)
    groups = t + 1  # tasks 0..t-1, then the average
    with style_context():
        width = max(5.0, 1.6 + groups * (0.35 * n + 0.35))
        fig = new_figure(width, 3.6 + (0.3 if report.title else 0.0))
        ax = fig.add_subplot()
        bar_w = min(0.8 / n, 0.6)
        label_bars = groups * n <= 30
        xs = np.arange(groups, dtype=np.float64)
        xs[-1] += 0.4  # the average stands apart
        for k, p in enumerate(probes):
            f = values[p]
            finite = finite_values(f)
            avg = float(finite.mean()) if finite.size == len(f) else math.nan
            h = np.asarray(f + [avg], dtype=np.float64)
            x = xs + (k - (n - 1) / 2) * bar_w
            ok = np.isfinite(h)
            ax.bar(x[ok], h[ok], bar_w * 0.92, color=f"C{k % 10}", label=probe_label(p))
            if label_bars:
                for xi, hi in zip(x[ok], h[ok]):
                    ax.annotate(
                        f"{hi:.1f}",
                        (xi, hi),
                        xytext=(0, 2 if hi >= 0 else -2),
                        textcoords="offset points",
                        ha="center",
                        va="bottom" if hi >= 0 else "top",
                        fontsize=NUMBER_PT,
                    )
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xticks(xs, [str(i) for i in range(t)] + ["average"])
        ax.set_xlabel("task")
        ax.set_ylabel("forgetting (accuracy points)")
        ax.grid(axis="y", alpha=0.3)
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo - (0.06 * (hi - lo) if lo < 0 else 0.0), hi + 0.1 * (hi - lo))  # room for the numbers
        if n > 1:
            fig.legend(loc="outside lower center", ncols=min(n, 4), frameon=False)
        what = f"forgetting after task {t}: best earlier accuracy minus final"
        if n == 1:
            what = f"{probe_label(probes[0])} probe: {what}"
        fig.suptitle(wrap_text(figure_title(report, what), width, STYLE["figure.titlesize"]))
    return fig


def write_report_figures(report: ContinualReport, results_dir: Path) -> list[Path]:
    """Write every run figure (module docstring) into ``results_dir``; returns the paths written.

    Raises ``ImportError`` when matplotlib is missing.
    """
    results_dir = Path(results_dir)
    written: list[Path] = []
    for p in report.probes:
        written += save_figure(heatmap_figure(report, p), results_dir / f"accuracy_matrix_{p}")
    for stem, make in (("accuracy_curves", curves_figure), ("forgetting", forgetting_figure)):
        fig = make(report)
        if fig is not None:
            written += save_figure(fig, results_dir / stem)
    return written


# --------------------------------------------------------------- sweep
