"""Tests for cassle.eval.report."""

import csv
import json
import math
import os
import sys

import pytest

from cassle.eval.report import ContinualReport, atomic_write, format_table, run_title

R = [[80.0, 10.0, 5.0], [60.0, 85.0, 20.0], [50.0, 70.0, 90.0]]
JOINT = [40.0, 55.0, 65.0]
BASE = [10.0, 12.0, 15.0]


def _full_report():
    rep = ContinualReport(3, ["knn"])
    rep.set_baseline({"per_task": {"knn": BASE}, "joint": {"knn": 9.0}})
    for t in range(3):
        rep.update(t, {"per_task": {"knn": R[t]}, "joint": {"knn": JOINT[t]}})
    return rep


def test_metrics_of_full_report():
    m = _full_report().metrics("knn")
    assert m["average_accuracy"] == pytest.approx(70.0)
    assert m["average_forgetting"] == pytest.approx(22.5)
    assert m["backward_transfer"] == pytest.approx(-22.5)
    assert m["forward_transfer"] == pytest.approx(1.5)
    assert m["joint_accuracy"] == 65.0
    assert m["baseline_average"] == pytest.approx(37.0 / 3)


def test_partial_report_uses_seen_tasks_and_nan_elsewhere():
    rep = ContinualReport(3, ["knn"])
    rep.set_baseline({"per_task": {"knn": BASE}, "joint": {"knn": 9.0}})
    rep.update(0, {"per_task": {"knn": R[0]}, "joint": {"knn": JOINT[0]}})
    rep.update(1, {"per_task": {"knn": R[1]}, "joint": {"knn": JOINT[1]}})
    m = rep.metrics("knn")
    assert m["average_accuracy"] == pytest.approx(72.5)  # (60+85)/2 on the 2×2 block
    assert m["average_forgetting"] == pytest.approx(20.0)  # 80-60
    assert m["forward_transfer"] == pytest.approx(10.0 - 12.0)
    assert math.isnan(rep.matrix["knn"][2][0])
    rep.update(2, None)  # skipped probes: no-op
    assert rep.tasks_done == [0, 1]


def test_roundtrip_through_json():
    rep = ContinualReport(3, ["knn", "ridge"])
    rep.update(0, {"per_task": {"knn": R[0], "ridge": [1.0, 2.0, 3.0]}, "joint": {"knn": 40.0}})
    d = json.loads(json.dumps(rep.to_dict(), allow_nan=False))  # strict JSON (NaN -> null)
    back = ContinualReport.from_dict(d)
    assert back.to_dict() == rep.to_dict()
    assert back.probes == ["knn", "ridge"] and back.tasks_done == [0]
    assert back.matrix["knn"][0] == R[0] and math.isnan(back.matrix["knn"][1][1])
    with pytest.raises(ValueError, match="malformed"):
        ContinualReport.from_dict({"probes": {}})


def test_title_roundtrip_and_old_dicts_without_title():
    title = run_title("barlow_twins", "cassle", "cifar100", "class", 5)
    assert title == "barlow_twins + cassle · cifar100 · class split · 5 tasks"
    rep = ContinualReport(2, ["knn"], title=title)
    d = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    assert ContinualReport.from_dict(d).title == title
    old = dict(d)
    del old["title"]  # run_state.json written before reports had a title
    assert ContinualReport.from_dict(old).title is None
    assert ContinualReport(2).title is None


def test_write_all_files_atomically(tmp_path):
    out = tmp_path / "results"
    paths = _full_report().write(out)
    figures = [
        f"{stem}.{ext}" for stem in ("accuracy_curves", "accuracy_matrix_knn", "forgetting") for ext in ("pdf", "png")
    ]
    assert sorted(os.listdir(out)) == sorted(["accuracy_matrix.csv", "metrics.json", *figures])
    assert {p.name for p in paths} == set(os.listdir(out)) and len(paths) == len(set(paths))

    rows = list(csv.reader(open(out / "accuracy_matrix.csv")))
    assert rows[0] == ["probe", "after_task", "task_0", "task_1", "task_2", "joint"]
    assert rows[1] == ["knn", "random_init", "10.0", "12.0", "15.0", "9.0"]
    assert rows[4] == ["knn", "2", "50.0", "70.0", "90.0", "65.0"]

    m = json.loads((out / "metrics.json").read_text())["probes"]["knn"]
    assert m["average_accuracy"] == pytest.approx(70.0)
    assert m["average_forgetting"] == pytest.approx(22.5)
    assert m["backward_transfer"] == pytest.approx(-22.5)
    assert m["forward_transfer"] == pytest.approx(1.5)
    assert m["joint_accuracy"] == 65.0 and m["baseline"] == BASE
    assert m["accuracy_matrix"] == R
    assert (out / "accuracy_matrix_knn.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_partial_write_uses_null_and_empty_cells(tmp_path):
    rep = ContinualReport(2, ["knn"])
    rep.update(0, {"per_task": {"knn": [90.0, 20.0]}, "joint": {"knn": 50.0}})
    rep.write(tmp_path)
    m = json.loads((tmp_path / "metrics.json").read_text())["probes"]["knn"]
    assert m["accuracy_matrix"][1] == [None, None]
    assert m["average_forgetting"] is None and m["forward_transfer"] is None
    rows = list(csv.reader(open(tmp_path / "accuracy_matrix.csv")))
    assert rows[2] == ["knn", "1", "", "", ""]


def test_atomic_write_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def boom(fh):
        fh.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_write_without_matplotlib(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # import matplotlib... raises ImportError
    paths = _full_report().write(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["accuracy_matrix.csv", "metrics.json"]
    assert [p.name for p in paths] == ["accuracy_matrix.csv", "metrics.json"]


def test_format_table_contains_numbers():
    text = format_table(_full_report())
    assert "probe: knn" in text
    lines = text.splitlines()
    assert any(l.startswith("random init") and "10.00" in l and "15.00" in l for l in lines)
    row2 = next(l for l in lines if l.startswith("after task 2"))
    assert row2.split()[3:] == ["50.00", "70.00", "90.00", "65.00"]
    assert "70.00" in next(l for l in lines if l.startswith("average accuracy"))
    assert "22.50" in next(l for l in lines if l.startswith("average forgetting"))
    assert "-22.50" in next(l for l in lines if l.startswith("backward transfer"))
    assert "1.50" in next(l for l in lines if l.startswith("forward transfer"))


def test_table_rows_for_table_loggers():
    rep = ContinualReport(3, ["knn"])
    rep.set_baseline({"per_task": {"knn": BASE}, "joint": {"knn": 9.0}})
    rep.update(0, {"per_task": {"knn": R[0]}, "joint": {"knn": JOINT[0]}})
    columns, rows = rep.table_rows("knn")
    assert columns == ["after", "task_0", "task_1", "task_2", "joint"]
    assert rows == [["random_init"] + BASE + [9.0], ["task_0"] + R[0] + [JOINT[0]]]


def test_a_rounded_zero_is_never_printed_negative():
    from cassle.eval.report import _fmt

    assert _fmt(-0.001).strip() == "0.00" and _fmt(-0.004).strip() == "0.00"
    assert _fmt(-0.006).strip() == "-0.01" and _fmt(float("nan")).strip() == "-"
