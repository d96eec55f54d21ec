"""bench/paired.py: paired per-seed differences between the runs of two results CSVs (no training)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("paired_bench", ROOT / "bench" / "paired.py")
paired = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paired)
quality = paired.quality


def _write(path: Path, rows: list[tuple]) -> None:
    """rows: (method, strategy, seed, tasks, knn, linear, wall)."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=quality.COLUMNS)
        w.writeheader()
        for m, s, seed, tasks, knn, lin, wall in rows:
            w.writerow(
                {c: 1.0 for c in quality.COLUMNS}
                | {"method": m, "strategy": s, "seed": seed, "tasks": tasks, "knn_joint": knn, "ridge_joint": 80.0}
                | {"linear": lin, "wall_s": wall, "run_dir": "x", "knn_forget": 0.5}
            )


def test_runs_are_paired_by_method_seed_and_tasks(tmp_path):
    a, b = tmp_path / "a_results.csv", tmp_path / "b_results.csv"
    _write(
        a,
        [
            ("byol", "er", 5, 5, 80.0, 85.0, 1000.0),
            ("byol", "er", 6, 5, 82.0, 86.0, 1000.0),
            ("byol", "er", 7, 5, 90.0, 90.0, 1000.0),  # no partner in b: left out
            ("byol", "finetune", 5, 5, 0.0, 0.0, 1.0),  # another strategy: left out
        ],
    )
    _write(
        b,
        [
            ("byol", "finetune", 5, 5, 77.0, 85.0, 500.0),
            ("byol", "finetune", 6, 5, 77.0, 87.0, 1000.0),
            ("byol", "finetune", 5, 1, 50.0, 50.0, 1.0),  # a joint run: another task count, left out
        ],
    )
    text = paired.table(paired._side(f"{a}:er"), paired._side(f"{b}:finetune"))
    row = next(line for line in text.splitlines() if line.startswith("| byol |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # kNN: 3 and 5 -> +4 ± 1.41 (better by more than one std); ridge: 0, 0; linear: 0 and -1 -> -0.5 ± 0.71
    assert cells[:5] == ["byol", "5, 6", "+4.00 ± 1.41", "+0.00 ± 0.00", "-0.50 ± 0.71"]
    assert cells[-2:] == ["yes / no / no", "1.50 ± 0.71"]  # wall ratios 2 and 1
    assert "er (a_results.csv) − finetune (b_results.csv)" in text


def test_bad_sides_are_one_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        paired.parse([str(tmp_path / "missing.csv:er"), str(tmp_path / "missing.csv:finetune")])
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        paired.parse(["no_strategy.csv", "b.csv:finetune"])
    assert "RESULTS_CSV:STRATEGY" in capsys.readouterr().err


def test_nothing_in_common_says_so(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    _write(a, [("byol", "er", 5, 5, 80.0, 85.0, 1.0)])
    _write(b, [("swav", "finetune", 5, 5, 80.0, 85.0, 1.0)])
    assert paired.table((a, "er"), (b, "finetune")).startswith("No runs of er")
