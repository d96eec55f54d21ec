"""The run's loggers: one step across tasks, each row's task, no duplicate metric, Lightning's noise dropped."""

from __future__ import annotations

import argparse
import csv
import logging

import pytest

from cassle.logs import FRAMEWORK_NOISE, build_loggers, continue_steps, log_results, quiet_framework_noise


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"tensorboard": False, "wandb": False, **kw})


def test_steps_continue_from_the_offset_and_rows_carry_the_task(tmp_path) -> None:
    (csv_logger,) = build_loggers(tmp_path, _args(), {}, task=2, step_offset=100)
    csv_logger.log_metrics({"loss": 1.5}, step=3)
    csv_logger.save()
    rows = list(csv.DictReader((tmp_path / "logs" / "task2" / "metrics.csv").open()))
    assert rows == [{"loss": "1.5", "task": "2.0", "step": "103"}]


def test_continue_steps_leaves_a_stepless_call_alone() -> None:
    seen = []

    class Fake:
        def log_metrics(self, metrics, step=None):
            seen.append((metrics, step))

    continue_steps(Fake(), task=1, step_offset=7).log_metrics({"a": 1.0})
    assert seen == [({"a": 1.0, "task": 1.0}, None)]


def test_tensorboard_is_one_run_without_hp_metric(tmp_path) -> None:
    pytest.importorskip("tensorboard")
    dirs = set()
    for task in range(2):
        loggers = build_loggers(tmp_path, _args(tensorboard=True), {}, task=task, step_offset=10 * task)
        tb = loggers[1]
        assert tb._default_hp_metric is False
        tb.log_metrics({"loss": 1.0}, step=1)
        tb.finalize("success")
        dirs.add(tb.log_dir)
    assert len(dirs) == 1 and dirs.pop().endswith("tensorboard/run")


def test_probe_results_log_the_joint_accuracy_once() -> None:
    from cassle.eval.report import ContinualReport

    report = ContinualReport(2, ["knn"])
    result = {"per_task": {"knn": [90.0, 80.0]}, "joint": {"knn": 75.0}}
    report.update(0, result)
    seen = []

    class Fake:
        def log_metrics(self, metrics, step=None):
            seen.append(metrics)

    log_results([Fake()], report, result, task=0, step=5)
    (flat,) = seen
    assert flat["knn_joint_acc"] == 75.0 and "knn_joint_accuracy" not in flat
    assert sum(v == 75.0 for v in flat.values()) == 1


def test_framework_noise_is_dropped_and_other_messages_kept() -> None:
    lightning_log = logging.getLogger("lightning.pytorch")
    handler = logging.StreamHandler()
    lightning_log.addHandler(handler)  # Lightning's own handler is not installed under pytest's log capture
    try:
        quiet_framework_noise()
        quiet_framework_noise()  # idempotent: one filter per handler
        assert sum(type(f).__name__ == "_DropNoise" for f in handler.filters) == 1
        make = lambda msg: logging.LogRecord("lightning.pytorch.x", logging.INFO, __file__, 1, msg, None, None)  # noqa: E731
        assert not handler.filter(make("💡 " + FRAMEWORK_NOISE[0] + " and more"))
        assert handler.filter(make("GPU available: False, used: False"))
    finally:
        lightning_log.removeHandler(handler)


@pytest.mark.parametrize("node_rank, writes", [("0", True), ("1", False)])
def test_only_rank_zero_keeps_the_wandb_id(tmp_path, monkeypatch, node_rank, writes) -> None:
    """The other node of a multi-node launch by hand (``NODE_RANK=1``, no ``LOCAL_RANK``) builds its loggers while
    rank 0 does: it must not write ``wandb_id.txt`` (rank 0's WandB run would then be resumed under another id)."""
    pytest.importorskip("wandb")
    from cassle.logs import wandb_logger

    for var in ("RANK", "SLURM_PROCID", "GROUP_RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NODE_RANK", node_rank)
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = argparse.Namespace(name="tiny", project="cassle-test", entity=None, offline=True)
    logger = wandb_logger(tmp_path, args, {})
    assert (tmp_path / "wandb_id.txt").exists() == writes
    if writes:
        assert (tmp_path / "wandb_id.txt").read_text().strip() == logger.version


@pytest.mark.parametrize("resumed_at", [0, 1])
def test_another_node_neither_creates_nor_clears_the_task_log(tmp_path, monkeypatch, resumed_at) -> None:
    """The other node of a launch by hand (``NODE_RANK=1``) builds its loggers before the process group exists,
    while Lightning still takes every process for rank 0: creating the CSV writer there made ``logs/task0`` in the
    run directory before rank 0 had written ``args.json`` (rank 0 then refused the directory as foreign) and would
    delete the ``metrics.csv`` rank 0 is filling. Nothing may appear or change in the run directory."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    for var in ("RANK", "SLURM_PROCID", "GROUP_RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NODE_RANK", "1")
    monkeypatch.setattr(rank_zero_only, "rank", 0)  # what Lightning reads from this environment before the fit
    if resumed_at:
        (tmp_path / "logs" / "task0").mkdir(parents=True)
        (tmp_path / "logs" / "task0" / "metrics.csv").write_text("epoch,loss,step\n0,1.0,3\n")
    before = sorted((p.relative_to(tmp_path), p.read_bytes() if p.is_file() else None) for p in tmp_path.rglob("*"))
    build_loggers(tmp_path, _args(), {}, task=0, resumed_at=resumed_at)
    after = sorted((p.relative_to(tmp_path), p.read_bytes() if p.is_file() else None) for p in tmp_path.rglob("*"))
    assert after == before
