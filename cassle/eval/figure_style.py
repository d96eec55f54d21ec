"""What every figure of cassle shares: paper style (fonts, sizes, 200 dpi), the figure factory on matplotlib's
Agg canvas, colour limits fitted to the data, and atomic PNG + PDF writing.

matplotlib is imported inside the functions (object API, no pyplot, style only inside ``rc_context``), so
importing :mod:`cassle` never needs it. PDFs embed TrueType fonts (``pdf.fonttype 42``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from cassle.fileio import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


class ContinualReport(Protocol):
    """What a figure reads from a run's report (:class:`cassle.eval.report.ContinualReport` has it).

    Declared here, not imported, so the figure modules never import the report module that calls them.
    """

    title: str | None
    probes: Sequence[str]
    num_tasks: int
    tasks_done: int
    last_task: int | None
    matrix: Any
    joint: Any
    baseline: Any
    baseline_joint: Any
    metrics: Any
    has_baseline: Any


DPI = 200
#: point size of the numbers printed in cells and on bars
NUMBER_PT = 10
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.titlesize": 12,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
}
METADATA = {"png": {"Software": None}, "pdf": {"Creator": None, "Producer": None, "CreationDate": None}}
PROBE_LABELS = {"knn": "kNN", "ridge": "ridge", "linear": "linear"}
NEUTRAL = "#ececec"  # background of reference cells (random-init row, joint column)
GAP = 0.3  # blank space, in cells, between the matrix and its joint column / random-init row


def probe_label(probe: str) -> str:
    """How a probe is named in figures (``knn`` -> ``kNN``)."""
    return PROBE_LABELS.get(probe, probe)


def style_context():
    import matplotlib

    return matplotlib.rc_context(STYLE)


def new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def wrap_text(text: str, width_in: float, pt: float, sep: str = " · ", keep_sep: bool = False) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``pt`` points (about 0.55 em a character).

    A line breaks after a ``sep`` separator where it can (`` · `` between the parts of a :func:`run_title`,
    ``", "`` between a sweep series' parameters), else between words; ``keep_sep`` ends a broken line with the
    separator's mark (the comma of a list), otherwise the break replaces it (the dot between title parts).
    """
    chars = max(20, int(width_in * 72 / (0.55 * pt)))
    lines: list[str] = []
    for line in text.split("\n"):
        cur = ""
        for part in line.split(sep):
            if cur and len(cur) + len(sep) + len(part) > chars:
                lines += textwrap.wrap(cur + (sep.rstrip() if keep_sep else ""), chars)
                cur = part
            else:
                cur = f"{cur}{sep}{part}" if cur else part
        lines += textwrap.wrap(cur, chars) or [""]
    return "\n".join(lines)


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """Write ``<stem>.png`` (:data:`DPI`) and ``<stem>.pdf`` atomically; returns both paths."""
    stem = Path(stem)
    paths = []
    with style_context():
        for fmt in ("png", "pdf"):
            path = stem.parent / f"{stem.name}.{fmt}"

            def write(fh, fmt=fmt):
                fig.savefig(fh, format=fmt, dpi=DPI, metadata=METADATA[fmt])

            atomic_write(path, write, binary=True)
            paths.append(path)
    return paths


def finite_values(values: Any) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    return v[np.isfinite(v)]


def colour_limits(values: Any, margin: float = 0.05, min_pad: float = 0.5) -> tuple[float, float]:
    """``(vmin, vmax)`` fitted to the finite ``values`` (percent), padded by ``margin`` of their span.

    The padding is at least ``min_pad`` points (so a constant matrix still gets a range) and the
    limits stay within ``[0, 100]`` when the values do. ``(0, 100)`` when no value is finite.
    """
    v = finite_values(values)
    if v.size == 0:
        return 0.0, 100.0
    lo, hi = float(v.min()), float(v.max())
    pad = max(margin * (hi - lo), min_pad)
    vmin, vmax = lo - pad, hi + pad
    if lo >= 0.0:
        vmin = max(vmin, 0.0)
    if hi <= 100.0:
        vmax = min(vmax, 100.0)
    return vmin, vmax


def figure_title(report: ContinualReport, what: str) -> str:
    return f"{report.title}\n{what}" if report.title else what


def text_colour(rgba: Sequence[float]) -> str:
    """Black or white, whichever reads better on ``rgba`` (relative luminance, ITU-R BT.709)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


# ------------------------------------------------------------------ heat map
