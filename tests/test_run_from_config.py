"""run_from_config.py / cassle.sweep: grid and seed expansion, run directories, skip, resume, results, bad configs."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pytest
import torch

import run_from_config
from cassle import sweep
from cassle.sweep import SweepError

torch.set_num_threads(1)  # tiny models: one thread is fastest on a shared CPU

# TINY settings of tests/test_continual.py as config params: 2 tasks, 1 epoch, kNN only
COMMON = {
    "dataset": "digits",
    "encoder": "resnet9",
    "base_width": 4,
    "crop_size": 8,
    "method": "barlow_twins",
    "proj_hidden_dim": 32,
    "output_dim": 32,
    "batch_size": 64,
    "lr": 0.05,
    "warmup_epochs": 0,
    "num_workers": 0,
    "no_progress_bar": True,
    "probes": ["knn"],
    "num_tasks": 2,
    "max_epochs": 1,
    "no_baseline": True,
}


def _write(tmp_path: Path, cfg: dict, name: str = "cfg.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(cfg))
    return str(path)


def _cfg(tmp_path: Path, experiments: list) -> dict:
    return {"output_dir": str(tmp_path / "out"), "common_params": COMMON, "experiments": experiments}


def test_grid_and_seed_expansion_with_unique_dirs(tmp_path):
    cfg = _cfg(
        tmp_path,
        [
            {
                "name": "a",
                "params": {"lr": 0.1},
                "hyperparams_search": {"lr": [0.01, 0.2], "scale_loss": [0.1, 1.0, 2.0]},
            },
            {"name": "b", "params": {"method": "simclr"}, "seeds": [1, 2, 3]},
            {"name": "c"},
        ],
    )
    runs = sweep.expand(cfg)
    assert len(runs) == 6 + 3 + 1
    a = [r for r in runs if r.experiment == "a"]
    assert {(r.params["lr"], r.params["scale_loss"]) for r in a} == {
        (lr, s) for lr in (0.01, 0.2) for s in (0.1, 1.0, 2.0)
    }
    assert a[0].name == "a-lr=0.01-scale_loss=0.1"
    b = [r for r in runs if r.experiment == "b"]
    assert [r.seed for r in b] == [1, 2, 3] and [r.name for r in b] == ["b-seed1", "b-seed2", "b-seed3"]
    assert all(r.params["method"] == "simclr" and r.params["dataset"] == "digits" for r in b)
    assert len({r.run_dir for r in runs}) == len(runs)
    assert all(r.run_dir.parent == tmp_path / "out" for r in runs)
    argv = b[1].argv
    assert argv[argv.index("--seed") + 1] == "2" and argv[argv.index("--checkpoint_dir") + 1] == str(
        tmp_path / "out" / "b-seed2"
    )
    assert "--no_progress_bar" in argv and argv[argv.index("--probes") + 1] == "knn"
    sweep.validate(runs)  # every expanded argv parses
    assert all(r.num_tasks == 2 for r in runs)


def test_to_argv_conventions():
    assert sweep.to_argv({"lr": 0.1, "wandb": True, "offline": False, "entity": None, "probes": ["knn", "ridge"]}) == [
        "--lr",
        "0.1",
        "--wandb",
        "--probes",
        "knn",
        "ridge",
    ]


@pytest.mark.parametrize(
    "cfg,match",
    [
        ({"experiments": []}, "non-empty list 'experiments'"),
        ({"experiments": [{"name": "a", "hyperparams_search": {"lr": []}}]}, "empty grid"),
        ({"experiments": [{"name": "a", "hyperparams_search": {}}]}, "non-empty object"),
        ({"experiments": [{"name": "a", "lr": 0.1}]}, "unknown key.*'lr'.*params"),
        ({"experiments": [{"name": "a"}, {"name": "a"}]}, "two experiments are named 'a'"),
        ({"experiments": [{"name": "a", "seeds": [1, 1]}]}, "repeats a seed"),
        ({"experiments": [{"name": "a", "params": {"checkpoint_dir": "x"}}]}, "set by the sweep"),
        ({"experiments": [{"name": "a", "seeds": [1], "params": {"seed": 3}}]}, "either in 'seeds'"),
        ({"experiment": []}, "unknown config key"),
    ],
)
def test_bad_structure_is_one_clear_error(cfg, match):
    with pytest.raises(SweepError, match=match):
        sweep.expand(cfg)


def test_bad_configs_fail_before_any_run(tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(sweep, "_run_in_process", lambda r: calls.append(r) or 0)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"experiments": [ {"name": "a",} ]}')
    assert run_from_config.main(["--config", str(bad_json)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    # an unknown argument in the second run: the first, valid one must not start either
    cfg = _cfg(tmp_path, [{"name": "ok"}, {"name": "typo", "params": {"learning_rate": 0.1}}])
    assert run_from_config.main(["--config", _write(tmp_path, cfg)]) == 2
    err = capsys.readouterr().err
    assert "run 'typo' has a bad argument" in err and "--learning_rate" in err
    cfg = _cfg(tmp_path, [{"name": "x", "hyperparams_search": {"method": ["barlow_twins", "nope"]}}])
    assert run_from_config.main(["--config", _write(tmp_path, cfg)]) == 2
    assert "unknown --method 'nope'" in capsys.readouterr().err
    cfg = _cfg(tmp_path, [{"name": "x", "hyperparams_search": {"lr": []}}])
    assert run_from_config.main(["--config", _write(tmp_path, cfg)]) == 2
    assert "empty grid" in capsys.readouterr().err
    assert run_from_config.main(["--config", str(tmp_path / "missing.json")]) == 2
    assert calls == [] and not (tmp_path / "out").exists()


def test_unreadable_inputs_are_one_clear_error_each(tmp_path, capsys, monkeypatch):
    """Issue 10: a config that is not UTF-8 and a run directory whose args.json holds a JSON list crashed with a
    traceback (UnicodeDecodeError, AttributeError); a typo such as "max_epoch" passed as --max_epochs."""
    calls = []
    monkeypatch.setattr(sweep, "_run_in_process", lambda r: calls.append(r) or 0)
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(json.dumps(_cfg(tmp_path, [{"name": "caf\u00e9"}]), ensure_ascii=False).encode("latin-1"))
    assert run_from_config.main(["--config", str(latin1)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{latin1} is not UTF-8 text (byte 0xe9" in err
    cfg = _write(tmp_path, _cfg(tmp_path, [{"name": "a"}]))
    run_dir = tmp_path / "out" / "a"
    run_dir.mkdir(parents=True)
    (run_dir / "args.json").write_text("[1, 2, 3]")
    assert run_from_config.main(["--config", cfg]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "args.json holds a list, not a JSON object" in err and str(run_dir) in err
    (run_dir / "args.json").unlink()
    typo = _cfg(tmp_path, [{"name": "a", "params": {"max_epoch": 3}}])  # no abbreviation of --max_epochs
    assert run_from_config.main(["--config", _write(tmp_path, typo)]) == 2
    assert "unrecognized arguments: --max_epoch 3" in capsys.readouterr().err
    assert calls == [] and os.listdir(run_dir) == []


def test_unreadable_run_state_and_metrics_count_as_absent(tmp_path):
    run = sweep.expand(_cfg(tmp_path, [{"name": "a"}]))[0]
    run.num_tasks = 2
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "run_state.json").write_bytes(b"[0, 1]")
    (run.run_dir / "args.json").write_text("{}")
    assert sweep.run_status(run) == "unfinished"
    (run.run_dir / "results").mkdir()
    for content in (b"[]", b"\xff\xfe", b'{"probes": [1]}', b'{"probes": {"knn": 3}}'):
        (run.run_dir / "results" / "metrics.json").write_bytes(content)
        assert all(math.isnan(v) for v in sweep.read_metrics(run).values())


def test_dry_run_prints_commands_only(tmp_path, capsys):
    cfg = _cfg(tmp_path, [{"name": "a", "hyperparams_search": {"lr": [0.01, 0.2]}}])
    assert run_from_config.main(["--config", _write(tmp_path, cfg), "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert out.count("python main_continual.py") == 2 and "--lr 0.2" in out
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_seeds_run_skip_resume_and_mean_std(tmp_path, capsys):
    cfg = _cfg(tmp_path, [{"name": "bt", "seeds": [1, 2]}])
    path = _write(tmp_path, cfg)
    assert run_from_config.main(["--config", path]) == 0
    out_dir = tmp_path / "out"
    runs = {p.name for p in out_dir.iterdir() if p.is_dir()}
    assert runs == {"bt-seed1", "bt-seed2"}
    accs = [
        json.loads((out_dir / r / "results" / "metrics.json").read_text())["probes"]["knn"]["average_accuracy"]
        for r in ("bt-seed1", "bt-seed2")
    ]
    assert json.loads((out_dir / "bt-seed2" / "args.json").read_text())["seed"] == 2

    rows = list(csv.DictReader((out_dir / "results.csv").open()))
    assert [r["run"] for r in rows] == ["bt-seed1", "bt-seed2"] and [r["seed"] for r in rows] == ["1", "2"]
    assert [float(r["knn.average_accuracy"]) for r in rows] == pytest.approx(accs)
    summary = list(csv.DictReader((out_dir / "summary.csv").open()))
    assert len(summary) == 1 and summary[0]["n"] == "2" and summary[0]["seeds"] == "1 2"
    mean, std = sum(accs) / 2, abs(accs[0] - accs[1]) / math.sqrt(2)  # sample std of two values
    assert float(summary[0]["knn.average_accuracy mean"]) == pytest.approx(mean)
    assert float(summary[0]["knn.average_accuracy std"]) == pytest.approx(std)
    printed = capsys.readouterr().out
    assert f"{mean:.2f} ± {std:.2f}" in printed

    # rerun: both finished -> skipped, nothing retrained
    mtimes = {r: (out_dir / r / "task1.ckpt").stat().st_mtime_ns for r in runs}
    assert run_from_config.main(["--config", path]) == 0
    assert printed_count(capsys.readouterr().out, "already finished, skipped") == 2
    assert {r: (out_dir / r / "task1.ckpt").stat().st_mtime_ns for r in runs} == mtimes

    # an interrupted run (task 1 not done): the rerun resumes it and leaves task 0 alone
    run = out_dir / "bt-seed2"
    state = json.loads((run / "run_state.json").read_text())
    state["completed_tasks"] = [0]
    (run / "run_state.json").write_text(json.dumps(state))
    (run / "task1.ckpt").unlink()
    t0 = (run / "task0.ckpt").stat().st_mtime_ns
    assert run_from_config.main(["--config", path]) == 0
    out = capsys.readouterr().out
    assert "bt-seed2: resuming" in out and "bt-seed2: resumed" in out and "bt-seed1: already finished" in out
    assert (run / "task1.ckpt").exists() and (run / "task0.ckpt").stat().st_mtime_ns == t0
    assert json.loads((run / "run_state.json").read_text())["completed_tasks"] == [0, 1]
    assert torch.load(run / "task1.ckpt", weights_only=True)["task_idx"] == 1

    # the config changed since: that directory holds other arguments -> one error, nothing runs
    changed = _cfg(tmp_path, [{"name": "bt", "seeds": [1, 2], "params": {"lr": 0.2}}])
    assert run_from_config.main(["--config", _write(tmp_path, changed, "changed.json")]) == 2
    err = capsys.readouterr().err
    assert "holds an earlier run of 'bt-seed1'" in err and "lr: 0.05 -> 0.2" in err


def printed_count(text: str, needle: str) -> int:
    return text.count(needle)


def test_failed_run_is_reported_and_others_continue(tmp_path, capsys, monkeypatch):
    cfg = _cfg(tmp_path, [{"name": "a"}, {"name": "b"}])

    def runner(r):
        if r.name == "a":
            raise RuntimeError("boom")
        return 0

    runs = sweep.expand(cfg)
    sweep.validate(runs)
    sweep.execute(runs, runner=runner)
    assert [r.status for r in runs] == ["failed", "done"] and "boom" in runs[0].error
    text = sweep.write_results(runs, tmp_path / "out")
    assert "failed" in text and (tmp_path / "out" / "results.csv").exists()


def test_results_write_the_comparison_figure(tmp_path):
    """No training: fake results/metrics.json files; summary.csv -> grouped bars, one group per method."""
    pytest.importorskip("matplotlib")
    from cassle.eval.sweep_figure import sweep_figure

    exps = [
        {"name": f"{m}-{s}", "params": {"method": m, "strategy": s}, "seeds": [1, 2]}
        for m in ("barlow_twins", "simclr")
        for s in ("finetune", "cassle")
    ]
    runs = sweep.expand(_cfg(tmp_path, exps))
    for i, r in enumerate(runs):
        (r.run_dir / "results").mkdir(parents=True)
        knn = {"joint_accuracy": 60.0 + i, "average_accuracy": 90.0}
        (r.run_dir / "results" / "metrics.json").write_text(json.dumps({"probes": {"knn": knn}}))
        r.status = "done"
    text = sweep.write_results(runs, tmp_path / "out")
    out = tmp_path / "out"
    for ext in ("png", "pdf"):
        assert (out / f"summary_joint_accuracy.{ext}").stat().st_size > 0
        assert str(out / f"summary_joint_accuracy.{ext}") in text
    fig = sweep_figure(out / "summary.csv")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["barlow_twins", "simclr"]
    assert len(ax.patches) == 4  # 2 methods × 2 strategies, seeds averaged
    assert sorted(round(p.get_height(), 6) for p in ax.patches) == [60.5, 62.5, 64.5, 66.5]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["finetune", "cassle"]


def test_mean_std_helper():
    assert sweep.mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert sweep.mean_std([5.0]) == (5.0, 0.0)
    assert sweep.mean_std([4.0, float("nan")]) == (4.0, 0.0)
    assert all(math.isnan(v) for v in sweep.mean_std([]))


@pytest.mark.slow
def test_parallel_subprocesses(tmp_path):
    cfg = _cfg(tmp_path, [{"name": "p", "seeds": [1, 2]}])
    assert run_from_config.main(["--config", _write(tmp_path, cfg), "--parallel", "2"]) == 0
    for s in (1, 2):
        run = tmp_path / "out" / f"p-seed{s}"
        assert json.loads((run / "run_state.json").read_text())["completed_tasks"] == [0, 1]
        assert (tmp_path / "out" / "_logs" / f"p-seed{s}.log").exists()
    assert len(list(csv.DictReader((tmp_path / "out" / "results.csv").open()))) == 2


def test_shipped_example_config_is_valid():
    root = Path(__file__).resolve().parent.parent
    cfg = sweep.load_config(root / "configs" / "example.json")
    runs = sweep.expand(cfg)
    sweep.validate(runs)
    assert {r.params["method"] for r in runs} >= {"barlow_twins", "simclr", "emp_ssl", "mae"}
    assert any(r.seed is not None for r in runs) and any(r.grid for r in runs)
    assert all(r.params["dataset"] == "digits" for r in runs)
