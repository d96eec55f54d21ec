"""bench/quality.py: the plan over seeds and the mean ± std / paired-difference tables (no training)."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("quality_bench", ROOT / "bench" / "quality.py")
quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quality)


def test_mean_std_is_the_sample_formula():
    mu, sd, n = quality.mean_std([1.0, 2.0, 4.0, float("nan")])
    assert n == 3 and mu == pytest.approx(7 / 3)
    assert sd == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert quality.mean_std([3.0]) == (3.0, 0.0, 1)
    assert quality.mean_std([])[2] == 0


def test_plan_covers_every_method_seed_major(tmp_path):
    a = quality.parse(["--methods", "byol", "swav", "--seeds", "1", "2", "--out", str(tmp_path)])
    keys = quality.plan(a)
    # the continual pairs first, seed-major, then the joint runs
    assert keys[:4] == [
        ("byol", "finetune", 5, 1),
        ("byol", "cassle", 5, 1),
        ("swav", "finetune", 5, 1),
        ("swav", "cassle", 5, 1),
    ]
    assert keys[4] == ("byol", "finetune", 5, 2)
    assert keys[8:] == [("byol", "finetune", 1, 1), ("swav", "finetune", 1, 1)] + [
        ("byol", "finetune", 1, 2),
        ("swav", "finetune", 1, 2),
    ]
    assert len(keys) == 2 * 2 * 3  # methods x seeds x (finetune, cassle, joint)
    assert quality.run_dir(a, "byol", "finetune", 1, 2).name == "byol-joint-s2"


def _fake_run(a, method, strategy, tasks, seed, knn, linear):
    d = quality.run_dir(a, method, strategy, tasks, seed)
    (d / "results").mkdir(parents=True)
    probe = {"joint_accuracy": knn, "average_accuracy": 90.0, "average_forgetting": 1.0, "baseline_joint": 70.0}
    (d / "results" / "metrics.json").write_text(
        json.dumps(
            {"tasks_done": list(range(tasks)), "probes": {"knn": probe, "ridge": {**probe, "joint_accuracy": 80.0}}}
        )
    )
    (d / "linear" / quality.LINEAR_NAME).mkdir(parents=True)
    (d / "linear" / quality.LINEAR_NAME / "linear_results.json").write_text(
        json.dumps({"metrics": {"val_acc1": linear}})
    )


def test_tables_report_paired_differences(tmp_path):
    a = quality.parse(
        [
            "--methods",
            "byol",
            "--seeds",
            "1",
            "2",
            "3",
            "--out",
            str(tmp_path / "o"),
            "--results",
            str(tmp_path),
            "--tag",
            "t",
        ]
    )
    for seed, (ft, cs) in zip((1, 2, 3), ((70.0, 73.0), (72.0, 74.0), (71.0, 75.0))):
        _fake_run(a, "byol", "finetune", 5, seed, ft, ft - 1)
        _fake_run(a, "byol", "cassle", 5, seed, cs, cs - 1)
    _fake_run(a, "byol", "finetune", 1, 1, 80.0, 79.0)  # one joint seed only
    _fake_run(a, "byol", "finetune", 1, 2, 80.0, 79.0)
    init = quality.run_dir(a, "byol", "finetune", 1, 1) / "linear" / quality.INIT_LINEAR_NAME
    init.mkdir(parents=True)  # the random-init linear baseline of one of the two joint runs
    (init / "linear_results.json").write_text(json.dumps({"metrics": {"val_acc1": 60.0}}))
    rows = quality.write_tables(a)
    assert len(rows) == 8
    text = (tmp_path / "t_results.md").read_text()
    assert "| byol | finetune | 71.00 ± 1.00 |" in text
    joint = next(line for line in text.splitlines() if line.startswith("| byol | joint |"))
    assert joint.startswith("| byol | joint | 80.00 ± 0.00 (n=2) |") and "| 70.00 / 70.00 / 60.00 (n=1) |" in joint
    # differences 3, 2, 4: mean 3, std 1 -> CaSSLe better by more than one std
    diff = next(line for line in text.splitlines() if line.startswith("| byol | +"))
    assert diff.startswith("| byol | +3.00 ± 1.00 | +0.00 ± 0.00 | +3.00 ± 1.00 |") and diff.endswith(
        "| yes / no / yes |"
    )
    assert (tmp_path / "t_results.csv").read_text().count("\n") == 9


def test_recorded_rows_survive_a_lost_run_directory(tmp_path, capsys):
    args = ["--methods", "byol", "--seeds", "1", "2", "--out", str(tmp_path / "o"), "--results", str(tmp_path)]
    a = quality.parse([*args, "--tag", "t"])
    _fake_run(a, "byol", "finetune", 5, 1, 70.0, 69.0)
    _fake_run(a, "byol", "cassle", 5, 1, 73.0, 72.0)
    quality.write_tables(a)
    shutil.rmtree(tmp_path / "o")  # the runs were made on another machine
    rows = quality.write_tables(a)
    assert [(r["strategy"], r["knn_joint"], r["linear"]) for r in rows] == [
        ("finetune", 70.0, 69.0),
        ("cassle", 73.0, 72.0),
    ]
    assert "| byol | finetune | 70.00 (n=1) |" in (tmp_path / "t_results.md").read_text()
    # an unrecorded run has no row; a recorded one keeps its numbers
    assert quality.row(a, "byol", "cassle", 5, 2) is None
    assert quality.row(a, "byol", "cassle", 5, 1)["knn_joint"] == 73.0
    # a run directory that exists but has not finished is not replaced by the record
    (quality.run_dir(a, "byol", "cassle", 5, 1) / "results").mkdir(parents=True)
    assert quality.row(a, "byol", "cassle", 5, 1) is None


def test_a_command_for_other_runs_keeps_the_records_of_earlier_ones(tmp_path):
    """One method per command (or a narrower seed list) must not drop the other runs' rows from the CSV: the CSV
    is the only record of a run whose directory is gone."""
    common = ["--seeds", "1", "--out", str(tmp_path / "o"), "--results", str(tmp_path), "--tag", "t"]
    byol = quality.parse(["--methods", "byol", *common])
    _fake_run(byol, "byol", "finetune", 5, 1, 70.0, 69.0)
    quality.write_tables(byol)
    shutil.rmtree(tmp_path / "o")  # byol's runs were made on another machine
    swav = quality.parse(["--methods", "swav", *common])
    _fake_run(swav, "swav", "finetune", 5, 1, 75.0, 74.0)
    rows = quality.write_tables(swav)
    assert [r["method"] for r in rows] == ["swav"]  # the command's own table: its own runs
    assert "| byol |" not in (tmp_path / "t_results.md").read_text()
    kept = quality.read_results(tmp_path / "t_results.csv")
    assert set(kept) == {("byol", "finetune", 1, 5), ("swav", "finetune", 1, 5)}
    assert kept[("byol", "finetune", 1, 5)]["knn_joint"] == 70.0
    # the full table, later, finds both
    both = quality.parse(["--methods", "byol", "swav", *common])
    assert sorted(r["method"] for r in quality.write_tables(both)) == ["byol", "swav"]


def test_other_strategies_get_their_own_difference_table(tmp_path):
    a = quality.parse(
        ["--methods", "byol", "--strategies", "finetune", "er", "cassle", "--seeds", "1", "2"]
        + ["--joint_methods", "--out", str(tmp_path / "o"), "--results", str(tmp_path), "--tag", "t"]
    )
    assert [k[1] for k in quality.plan(a)] == ["finetune", "er", "cassle"] * 2
    for seed, (ft, er, cs) in zip((1, 2), ((70.0, 76.0, 71.0), (72.0, 76.0, 71.0))):
        _fake_run(a, "byol", "finetune", 5, seed, ft, ft)
        _fake_run(a, "byol", "er", 5, seed, er, er)
        _fake_run(a, "byol", "cassle", 5, seed, cs, cs)
    quality.write_tables(a)
    text = (tmp_path / "t_results.md").read_text()
    rows = [line.split(" | ")[1] for line in text.splitlines() if line.startswith("| byol | ") and " ± " in line]
    assert rows[:3] == ["finetune", "er", "cassle"]
    er_part = text[text.index("ER − finetune") : text.index("CaSSLe − finetune")]
    cassle_part = text[text.index("CaSSLe − finetune") :]
    # ER: differences 6, 4 -> +5 ± 1.41, better by more than one std; CaSSLe: 1, -1 -> +0 ± 1.41, not better
    assert "| byol | +5.00 ± 1.41 |" in er_part and "| ER better by > 1 std" in er_part
    assert er_part.rstrip().endswith("| yes / no / yes |")
    assert "| byol | +0.00 ± 1.41 |" in cassle_part and cassle_part.rstrip().endswith("| no / no / no |")


def test_init_checkpoint_is_the_untrained_model_the_run_probed(tmp_path):
    """The random-init linear baseline evaluates the weights whose kNN / ridge probes the run recorded."""
    import torch

    import main_continual
    import main_linear
    from cassle.args import parse_args
    from cassle.eval.protocol import evaluate_after_task
    from cassle.run_plan import prepare_run
    from tests.helpers import TINY

    argv = TINY + ["--num_tasks", "1", "--max_epochs", "1", "--checkpoint_dir", str(tmp_path / "run")]
    assert main_continual.main(argv) == 0
    run = tmp_path / "run"
    path = quality.init_checkpoint(run)
    init = torch.load(path, weights_only=True)
    trained = torch.load(run / "task0.ckpt", weights_only=True)
    assert init["task_idx"] == -1 and init["method"] == trained["method"] and init["encoder"] == trained["encoder"]
    assert init["state_dict"].keys() == trained["state_dict"].keys()
    assert not torch.equal(init["state_dict"]["backbone.conv1.weight"], trained["state_dict"]["backbone.conv1.weight"])
    assert quality.init_checkpoint(run) == path and torch.load(path, weights_only=True)["args"] == init["args"]

    plan = prepare_run(parse_args(argv))
    model = plan.model_cls.from_config(plan.config)
    model.load_state_dict(init["state_dict"])
    probed = evaluate_after_task(model.backbone, plan.datamodule, ["knn", "ridge"], torch.device("cpu"))["joint"]
    recorded = json.loads((run / "results" / "metrics.json").read_text())["probes"]
    assert probed == {p: recorded[p]["baseline_joint"] for p in ("knn", "ridge")}

    a = quality.parse(["--linear_epochs", "1", "--out", str(tmp_path)])
    cmd = quality.linear_command(a, path, 3, quality.INIT_LINEAR_NAME)
    assert main_linear.main(cmd[2:]) == 0
    assert 0 < quality.linear_top1(run, quality.INIT_LINEAR_NAME) <= 100


def test_fine_tuning_alone_gets_no_difference_table(tmp_path):
    """A table of fine-tuning (and joint) runs only, e.g. a compute control, has no empty 'X − finetune' table."""
    a = quality.parse(
        ["--methods", "byol", "--strategies", "finetune", "--seeds", "1"]
        + ["--out", str(tmp_path / "o"), "--results", str(tmp_path), "--tag", "t"]
    )
    _fake_run(a, "byol", "finetune", 5, 1, 70.0, 69.0)
    _fake_run(a, "byol", "finetune", 1, 1, 75.0, 74.0)
    quality.write_tables(a)
    text = (tmp_path / "t_results.md").read_text()
    assert "| byol | finetune | 70.00 |" in text and "| byol | joint | 75.00 |" in text
    assert "− finetune" not in text
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- t:begin -->\n<!-- t:end -->\nafter\n")
    quality.write_tables(a)
    assert "| byol | joint | 75.00 | 80.00 | 74.00 |" in readme.read_text()
    assert readme.read_text().split("<!-- t:end -->")[0].endswith("|\n")  # the marker keeps a line of its own
