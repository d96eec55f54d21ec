"""Tests for cassle.eval.figures: what each figure encodes (limits, columns, masks, titles), not its pixels."""

import csv
import math
import warnings

import numpy as np
import pytest

from cassle.eval import figure_style, sweep_figure
from cassle.eval import figures as F
from cassle.eval.report import ContinualReport, run_title

pytest.importorskip("matplotlib")

T = 5
TITLE = run_title("barlow_twins", "cassle", "cifar100", "class", T)


def _report(num_tasks=T, probes=("knn", "linear"), upto=None, baseline=True, title=TITLE):
    """Diagonal ~96-98, old tasks losing ~2 points a task, unseen tasks ~80, joint 60 -> 75."""
    rep = ContinualReport(num_tasks, probes, title=title)
    if baseline:
        rep.set_baseline(
            {
                "per_task": {p: [30.0 + i for i in range(num_tasks)] for p in probes},
                "joint": dict.fromkeys(probes, 10.0),
            }
        )
    for t in range(num_tasks if upto is None else upto):
        rows = {
            p: [96.0 + 2 * (i % 2) - 2.0 * (t - i) - k if i <= t else 80.0 + i for i in range(num_tasks)]
            for k, p in enumerate(probes)
        }
        joint = {p: 60.0 + 15.0 * t / max(num_tasks - 1, 1) - k for k, p in enumerate(probes)}
        rep.update(t, {"per_task": rows, "joint": joint})
    return rep


@pytest.fixture(autouse=True)
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def _suptitle(fig):
    return " ".join(t.get_text() for t in fig.texts)


def test_colour_limits_fit_the_values():
    lo, hi = figure_style.colour_limits([[88.0, 100.0], [95.0, math.nan]])
    assert 80.0 < lo < 88.0 and hi == 100.0  # margin below, clipped at 100
    lo, hi = figure_style.colour_limits([50.0, 50.0])
    assert lo < 50.0 < hi  # a constant still gets a range
    assert figure_style.colour_limits([math.nan]) == (0.0, 100.0)


def test_heatmap_scale_fitted_to_trained_cells_with_a_joint_column():
    rep = _report()
    fig = F.heatmap_figure(rep, "knn")
    ax = fig.axes[0]
    im = ax.images[0]
    vmin, vmax = im.get_clim()
    seen = np.asarray(rep.matrix["knn"])[np.tril_indices(T)]
    assert 0.0 < vmin <= seen.min() and seen.max() <= vmax <= 100.0
    assert seen.min() - vmin < 2.0  # "a little margin", not 0-100
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert len(labels) == T + 1 and labels[-1].startswith("joint") and labels[:T] == [str(i) for i in range(T)]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["random init"] + [str(t) for t in range(T)]
    # every matrix value, every joint value and the random-init row are printed
    texts = _texts(fig)
    for v in [*np.asarray(rep.matrix["knn"]).ravel(), *rep.joint["knn"], *rep.baseline["knn"]]:
        assert f"{v:.1f}" in texts
    assert all(t.get_fontsize() >= 10 for t in ax.texts)
    # cells of tasks not trained on yet (upper triangle) are printed but not coloured
    assert im.get_array().mask[0, 1] and not im.get_array().mask[1, 0]
    colourbars = [a for a in fig.axes if a is not ax]
    assert len(colourbars) == 1


def test_heatmap_title_names_the_run_and_probe():
    fig = F.heatmap_figure(_report(), "knn")
    title = _suptitle(fig)
    for word in ("barlow_twins", "cassle", "cifar100", "class split", "kNN"):
        assert word in title
    assert "barlow_twins" not in _suptitle(F.heatmap_figure(_report(title=None), "knn"))


def test_heatmap_masks_nan_cells_of_a_partial_run():
    rep = _report(upto=2, baseline=False)
    fig = F.heatmap_figure(rep, "knn")
    ax = fig.axes[0]
    mask = np.ma.getmaskarray(ax.images[0].get_array())
    assert mask.shape == (T, T)
    assert mask[2:].all()  # rows after tasks not trained yet
    assert not mask[1, 0] and not mask[0, 0]
    texts = _texts(fig)
    assert len(texts) == 2 * T + 2  # two evaluated rows and their two joint values, nothing for NaN
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(t) for t in range(T)]


def test_one_task_run():
    rep = _report(num_tasks=1, probes=("knn",), baseline=False)
    fig = F.heatmap_figure(rep, "knn")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][0] == "0"
    assert len(fig.axes[0].get_xticklabels()) == 2
    assert F.curves_figure(rep) is not None
    assert F.forgetting_figure(rep) is None  # no earlier task to forget
    assert F.per_task_forgetting(rep, "knn") == []


def test_curves_one_line_per_probe_and_dashed_baseline():
    rep = _report()
    fig = F.curves_figure(rep)
    joint_ax, avg_ax = fig.axes[:2]
    solid = [l for l in joint_ax.lines if l.get_linestyle() == "-"]
    dashed = [l for l in joint_ax.lines if l.get_linestyle() == "--"]
    assert len(solid) == 2 and len(dashed) == 2
    assert list(solid[0].get_xdata()) == list(range(1, T + 1))
    assert list(solid[0].get_ydata()) == pytest.approx(rep.joint["knn"])
    assert set(dashed[0].get_ydata()) == {10.0}  # the random-init joint accuracy
    avg = [l for l in avg_ax.lines if l.get_linestyle() == "-"][0].get_ydata()
    R = np.asarray(rep.matrix["knn"])
    assert list(avg) == pytest.approx([R[t, : t + 1].mean() for t in range(T)])
    assert "cifar100" in _suptitle(fig)
    # without a baseline: no dashed line
    no_base = F.curves_figure(_report(baseline=False))
    assert not [l for l in no_base.axes[0].lines if l.get_linestyle() == "--"]
    assert F.curves_figure(ContinualReport(3, ["knn"])) is None  # nothing evaluated yet


def test_forgetting_bars_per_task_and_probe():
    rep = _report()
    f = F.per_task_forgetting(rep, "knn")
    R = np.asarray(rep.matrix["knn"])
    assert f == pytest.approx([R[: T - 1, i].max() - R[T - 1, i] for i in range(T - 1)])
    assert np.mean(f) == pytest.approx(rep.metrics("knn")["average_forgetting"])
    fig = F.forgetting_figure(rep)
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * T  # (T-1 tasks + the average) × 2 probes
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(i) for i in range(T - 1)] + ["average"]
    assert f"{f[0]:.1f}" in _texts(fig)


def test_write_report_figures_png_and_pdf(tmp_path):
    paths = F.write_report_figures(_report(), tmp_path)
    names = sorted(p.name for p in paths)
    stems = ["accuracy_curves", "accuracy_matrix_knn", "accuracy_matrix_linear", "forgetting"]
    assert names == sorted(f"{s}.{e}" for s in stems for e in ("png", "pdf"))
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" if p.suffix == ".png" else data[:5] == b"%PDF-"
    png = (tmp_path / "accuracy_matrix_knn.png").read_bytes()
    dpi_width = int.from_bytes(png[16:20], "big")  # IHDR width in pixels
    assert dpi_width >= 150 * 4  # at least 150 dpi on a figure several inches wide
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_write_report_figures_one_task_and_partial(tmp_path):
    one = F.write_report_figures(_report(num_tasks=1, probes=("knn",)), tmp_path / "one")
    assert sorted(p.name for p in one) == sorted(
        f"{s}.{e}" for s in ("accuracy_curves", "accuracy_matrix_knn") for e in ("png", "pdf")
    )
    assert F.write_report_figures(ContinualReport(3, ["knn"]), tmp_path / "none")[0].name == "accuracy_matrix_knn.png"


def _summary(path, rows, header=("experiment", "method", "strategy", "seeds", "n")):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*header, "knn.joint_accuracy mean", "knn.joint_accuracy std", "knn.average_accuracy mean"])
        for r in rows:
            w.writerow(r)
    return path


def test_sweep_figure_groups_methods_and_bars_strategies(tmp_path):
    rows = [
        [f"{m}-{s}", m, s, "1 2", 2, 60.0 + i + j, 1.0, 90.0]
        for i, m in enumerate(("barlow_twins", "simclr", "byol"))
        for j, s in enumerate(("finetune", "cassle"))
    ]
    rows.append(["byol-replay", "byol", "replay", "1", 1, 70.0, 0.0, 90.0])
    fig = sweep_figure.sweep_figure(_summary(tmp_path / "summary.csv", rows))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["barlow_twins", "simclr", "byol"]
    assert len(ax.patches) == 7
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == sorted([60.0, 61.0, 61.0, 62.0, 62.0, 63.0, 70.0])
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["finetune", "cassle", "replay"]
    assert legend.get_title().get_text() == "strategy"
    assert "62.0" in _texts(fig) and "± std" in _suptitle(fig)
    err = [c for c in ax.containers if hasattr(c, "has_yerr") and c.has_yerr]
    assert len(err) == 6  # byol-replay has one seed: no error bar


def test_sweep_figure_without_method_column_groups_experiments(tmp_path):
    path = _summary(
        tmp_path / "summary.csv",
        [["a", "1", 1, 50.0, 0.0, 1.0], ["b", "1", 1, "", "", 1.0]],
        header=("experiment", "seeds", "n"),
    )
    fig = sweep_figure.sweep_figure(path)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b"]
    assert len(fig.axes[0].patches) == 1 and not fig.legends  # no value for b, no series to name
    empty = _summary(tmp_path / "empty.csv", [["a", "1", 0, "", "", ""]], header=("experiment", "seeds", "n"))
    assert sweep_figure.sweep_figure(empty) is None and sweep_figure.write_sweep_figure(empty) == []
    paths = sweep_figure.write_sweep_figure(path)
    assert [p.name for p in paths] == ["summary_joint_accuracy.png", "summary_joint_accuracy.pdf"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_sweep_figure_legend_with_long_series_names_stays_inside_the_figure(tmp_path):
    """The README's example sweep varies seven parameters at once: each series was named in one ~110-character
    line, and the one-column legend (and its title) ran off both edges of the figure, hiding which bar is which
    strategy. Names and title now wrap at their ", " separators to the figure's width."""
    params = ("encoder", "base_width", "lr", "decoder_depth", "decoder_embed_dim", "decoder_num_heads")
    header = ("experiment", "method", "strategy", *params, "seeds", "n")
    rows = [
        [f"e{j}", "mae", s, enc, str(16 * (j + 1)), lr, str(j % 2 + 1), str(16 * (j % 2 + 1)), "2", "1 2", 2, 50.0 + j]
        + [1.0, 80.0]
        for j, (s, enc, lr) in enumerate(
            (("finetune", "vit_tiny", "0.001"), ("cassle", "vit_tiny", "0.001"), ("finetune", "resnet9", "0.1"))
        )
    ]
    fig = sweep_figure.sweep_figure(_summary(tmp_path / "summary.csv", rows, header=header))
    fig.canvas.draw()
    legend = fig.legends[0]
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts[0].startswith("finetune, encoder=vit_tiny") and "\n" in texts[0]  # wrapped, strategy first
    assert [t.replace("\n", " ") for t in texts][1].startswith("cassle, encoder=vit_tiny, base_width=32")
    assert all("decoder_num_heads" not in t for t in texts)  # the same in every row: names no series
    box, page = legend.get_window_extent(), fig.bbox
    assert box.x0 >= page.x0 and box.x1 <= page.x1, (box, page)
    title = legend.get_title().get_window_extent()
    assert title.x0 >= page.x0 and title.x1 <= page.x1
    axes = fig.axes[0].get_window_extent()
    assert axes.height > 0.35 * page.height and axes.y0 > box.y1  # the panel keeps its room above the legend
