"""The task loop end to end: tasks in one process, checkpoints, results, resume, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import main_continual
from cassle import continual
from cassle.args import parse_args
from tests.helpers import TINY


def _args(tmp_path: Path, *extra: str) -> list[str]:
    return TINY + ["--checkpoint_dir", str(tmp_path / "run")] + list(extra)


@pytest.mark.slow
def test_three_tasks_end_to_end(tmp_path, capsys):
    argv = _args(tmp_path, "--num_tasks", "3", "--max_epochs", "1", "--no_progress_bar", "--log_every_n_steps", "2")
    assert main_continual.main(argv) == 0
    run = tmp_path / "run"
    for t in range(3):
        ckpt = torch.load(run / f"task{t}.ckpt", weights_only=True)
        assert ckpt["task_idx"] == t and ckpt["method"] == "barlow_twins"
        assert any(k.startswith("backbone.") for k in ckpt["state_dict"])
    assert (run / "last_checkpoint.txt").read_text().strip().endswith("task2.ckpt")
    assert json.loads((run / "args.json").read_text())["num_tasks"] == 3
    assert not (run / "resume").exists()  # mid-task checkpoints are removed once the task is saved

    metrics = json.loads((run / "results" / "metrics.json").read_text())["probes"]
    assert set(metrics) >= {"knn", "ridge"}
    lines = (run / "results" / "accuracy_matrix.csv").read_text().splitlines()
    # header + random_init row + one row per task, for each probe
    assert len(lines) == 1 + 2 * (1 + 3)
    state = json.loads((run / "run_state.json").read_text())
    assert state["completed_tasks"] == [0, 1, 2]
    R = state["report"]
    captured = capsys.readouterr()
    out = captured.out
    assert "random init" in out and "after task 2" in out
    # without a progress bar: one line per epoch, and none of Lightning's adverts or hints
    assert all(f"task {t} epoch 1/1: loss " in out and "images/s" in out for t in range(3))
    assert "litlogger" not in out + captured.err and "weights_only` was not set" not in out + captured.err
    # the loggers' step continues across tasks, each row names its task, the learning rate is logged
    steps = state["task_steps"]
    assert sorted(steps) == ["0", "1", "2"] and all(n > 0 for n in steps.values())
    offset = 0
    for t in range(3):
        import csv

        rows = list(csv.DictReader((run / "logs" / f"task{t}" / "metrics.csv").open()))
        logged = [int(r["step"]) for r in rows if r.get("step")]
        assert logged and offset <= min(logged) and max(logged) <= offset + steps[str(t)], (t, logged)
        assert {float(r["task"]) for r in rows if r.get("task")} == {float(t)}
        assert any(r.get(k) for r in rows for k in r if k.startswith("lr-"))
        offset += steps[str(t)]

    # Probes are real: the matrix is filled with accuracies in [0, 100], above chance on digits.
    knn = metrics["knn"]
    assert 0 <= knn["average_accuracy"] <= 100
    assert knn["average_accuracy"] > 55  # 2-way (or so) tasks; random features already beat chance

    # Rerunning a finished run prints its results and trains nothing.
    mtime = (run / "task2.ckpt").stat().st_mtime_ns
    assert main_continual.main(argv) == 0
    assert "already finished" in capsys.readouterr().out
    assert (run / "task2.ckpt").stat().st_mtime_ns == mtime
    assert json.loads((run / "run_state.json").read_text())["report"] == R


@pytest.mark.slow
def test_same_seed_same_numbers(tmp_path):
    a = continual.run(
        parse_args(TINY + ["--checkpoint_dir", str(tmp_path / "a"), "--num_tasks", "2", "--max_epochs", "1"])
    )
    b = continual.run(
        parse_args(TINY + ["--checkpoint_dir", str(tmp_path / "b"), "--num_tasks", "2", "--max_epochs", "1"])
    )
    assert a.to_dict() == b.to_dict()
    sa = torch.load(tmp_path / "a" / "task1.ckpt", weights_only=True)["state_dict"]
    sb = torch.load(tmp_path / "b" / "task1.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


class _Boom(RuntimeError):
    pass


@pytest.mark.slow
def test_interrupted_task_resumes_mid_task(tmp_path, monkeypatch):
    argv = _args(tmp_path, "--num_tasks", "2", "--max_epochs", "2")
    original = continual._EpochCheckpoint.on_train_epoch_end
    calls = []

    def crash_after_first_epoch_of_task1(self, trainer, pl_module):
        original(self, trainer, pl_module)
        calls.append((self.path.name, trainer.current_epoch))
        if self.path.name == "task1-last.ckpt" and trainer.current_epoch == 0:
            raise _Boom("simulated crash")

    monkeypatch.setattr(continual._EpochCheckpoint, "on_train_epoch_end", crash_after_first_epoch_of_task1)
    with pytest.raises(_Boom):
        main_continual.main(argv)
    run = tmp_path / "run"
    assert (run / "task0.ckpt").exists() and not (run / "task1.ckpt").exists()
    assert (run / "resume" / "task1-last.ckpt").exists()
    task0_mtime = (run / "task0.ckpt").stat().st_mtime_ns
    log_file = run / "logs" / "task1" / "metrics.csv"

    def epochs_logged() -> list[int]:
        import csv

        with open(log_file, newline="") as f:
            return sorted({int(float(r["epoch"])) for r in csv.DictReader(f) if r.get("epoch")})

    assert epochs_logged() == [0]  # the epoch trained before the crash

    calls.clear()
    monkeypatch.setattr(
        continual._EpochCheckpoint,
        "on_train_epoch_end",
        crash_after_first_epoch_of_task1.__wrapped__
        if hasattr(crash_after_first_epoch_of_task1, "__wrapped__")
        else original,
    )
    seen = []

    def record(self, trainer, pl_module):
        seen.append((self.path.name, trainer.current_epoch))
        original(self, trainer, pl_module)

    monkeypatch.setattr(continual._EpochCheckpoint, "on_train_epoch_end", record)
    assert main_continual.main(argv) == 0
    # task 0 was not retrained, task 1 continued at its second epoch
    assert (run / "task0.ckpt").stat().st_mtime_ns == task0_mtime
    assert seen == [("task1-last.ckpt", 1)]
    assert json.loads((run / "run_state.json").read_text())["completed_tasks"] == [0, 1]
    # the resumed task's log joins up: the rows of epoch 0 are kept (Lightning's CSV writer used to delete them)
    assert epochs_logged() == [0, 1]


@pytest.mark.slow
def test_pretrained_model_starts_at_task_idx(tmp_path):
    first = tmp_path / "first"
    assert main_continual.main(TINY + ["--checkpoint_dir", str(first), "--num_tasks", "2", "--max_epochs", "1"]) == 0
    second = tmp_path / "second"
    argv = TINY + [
        "--checkpoint_dir",
        str(second),
        "--num_tasks",
        "2",
        "--max_epochs",
        "1",
        "--task_idx",
        "1",
        "--pretrained_model",
        str(first / "task0.ckpt"),
    ]
    assert main_continual.main(argv) == 0
    assert (second / "task1.ckpt").exists() and not (second / "task0.ckpt").exists()


# --------------------------------------------------------------------- bad input
def _fails(capsys, argv, *needles):
    code = main_continual.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    for n in needles:
        assert n in err, err
    return err


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--method", "nope"], ["unknown --method 'nope'", "barlow_twins"]),
        (["--encoder", "resnet7"], ["unknown --encoder 'resnet7'", "resnet18"]),
        (["--dataset", "mnist"], ["unknown --dataset 'mnist'", "digits"]),
        (["--strategy", "magic"], ["unknown --strategy 'magic'", "finetune"]),
        (["--num_tasks", "11"], ["11", "10"]),
        (["--solarization_prob", "0.1", "0.2", "0.3"], ["--solarization_prob", "one per view"]),
        (["--task_idx", "2"], ["--pretrained_model"]),
    ],
)
def test_bad_arguments_fail_before_work(tmp_path, capsys, extra, needles):
    _fails(capsys, _args(tmp_path, *extra), *needles)
    assert not (tmp_path / "run").exists()


def test_missing_dataset_dir(tmp_path, capsys):
    _fails(
        capsys, _args(tmp_path, "--dataset", "cifar100", "--data_dir", str(tmp_path / "nowhere")), "cifar-100-python"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_corrupt_and_foreign_checkpoints(tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint at all")
    _fails(capsys, _args(tmp_path, "--task_idx", "1", "--pretrained_model", str(bad)), "cannot be read", "corrupt")
    other = tmp_path / "other"
    assert (
        main_continual.main(
            TINY + ["--checkpoint_dir", str(other), "--num_tasks", "2", "--max_epochs", "1", "--method", "simclr"]
        )
        == 0
    )
    capsys.readouterr()
    _fails(
        capsys, _args(tmp_path, "--task_idx", "1", "--pretrained_model", str(other / "task0.ckpt")), "--method simclr"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_existing_run_with_other_arguments_is_not_overwritten(tmp_path, capsys):
    argv = _args(tmp_path, "--num_tasks", "2", "--max_epochs", "1")
    assert main_continual.main(argv) == 0
    run = tmp_path / "run"
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    _fails(
        capsys,
        _args(tmp_path, "--num_tasks", "2", "--max_epochs", "1", "--method", "vicreg"),
        "already holds a run",
        "--name",
    )
    after = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    assert before == after


def test_failed_start_does_not_lock_the_directory_to_its_arguments(tmp_path):
    """A start that failed before it finished a task or saved a checkpoint (issue 10: a bad value only the model or
    the first steps found) leaves only args.json and logs: the corrected command starts the run afresh, and
    rewrites args.json, instead of refusing it as "other arguments". Progress of any kind keeps the refusal."""
    from cassle.run_plan import prepare_run

    run = tmp_path / "run"
    run.mkdir()
    failed = vars(parse_args(_args(tmp_path, "--num_tasks", "2", "--lr", "1e10")))
    (run / "args.json").write_text(json.dumps(failed, default=str))
    (run / "logs").mkdir()
    plan = prepare_run(parse_args(_args(tmp_path, "--num_tasks", "2")))
    assert plan.start_task == 0 and plan.completed == []
    assert plan.restarted == {"lr": (1e10, parse_args(_args(tmp_path)).lr)}
    (run / "resume").mkdir()
    (run / "resume" / "task0-last.ckpt").write_bytes(b"x")  # a mid-task resume point: something to keep
    with pytest.raises(continual.RunError, match="already holds a run with other arguments"):
        prepare_run(parse_args(_args(tmp_path, "--num_tasks", "2")))


def test_a_model_that_fails_on_the_data_stops_before_anything_is_written(tmp_path, capsys, monkeypatch):
    """Issue 10: one forward pass of the built model on two of the dataset's images runs before args.json (or
    anything else) is written, so a model that cannot take the data fails with one line, not a traceback
    after the directory holds the bad arguments (today the first place that met the data was the baseline probe)."""
    from cassle.methods.barlow_twins import BarlowTwins

    def broken(self, x):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x16 and 32x32)")

    monkeypatch.setattr(BarlowTwins, "forward", broken)
    err = _fails(capsys, _args(tmp_path, "--num_tasks", "2"), "fails on digits's images", "(2, 3, 8, 8)", "mat1")
    assert "nothing was written" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_the_trial_forward_changes_no_weight_statistic_or_random_state(tmp_path):
    """The trial pass keeps the run's numbers: weights, BatchNorm running statistics, train mode and the global
    random state are what they were (same seed, same numbers)."""
    from cassle.run_plan import prepare_run

    plan = prepare_run(parse_args(_args(tmp_path, "--num_tasks", "2")))
    model = plan.model_cls.from_config(plan.config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    continual._trial_forward(plan, model)
    assert model.training
    assert torch.equal(torch.get_rng_state(), rng)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_non_run_directory_is_not_used(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "precious.txt").write_text("keep me")
    _fails(capsys, _args(tmp_path), "holds no cassle run")
    assert os.listdir(run) == ["precious.txt"]


def test_another_node_does_not_refuse_the_directory_rank_0_is_filling(tmp_path, monkeypatch):
    """A node started by hand (``NODE_RANK=1``) starts while rank 0 fills the run directory (its lock and logs are
    there, args.json not yet): only rank 0 decides whether the directory is foreign (seen under load as a
    refusal of node 1 in the two-node test)."""
    from cassle.run_plan import prepare_run

    run = tmp_path / "run"
    (run / "logs" / "task0").mkdir(parents=True)
    with pytest.raises(continual.RunError, match="holds no cassle run"):
        prepare_run(parse_args(_args(tmp_path)))
    monkeypatch.setenv("NODE_RANK", "1")
    assert prepare_run(parse_args(_args(tmp_path))).start_task == 0


@pytest.mark.slow
def test_directory_prepared_by_job_launcher_is_a_fresh_run(tmp_path):
    """job_launcher.py writes command.sh / job.sbatch / SLURM logs before the run starts: still a new run."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("command.sh", "job.sbatch", "slurm_jobs.txt", "slurm-7_0.out", "slurm-7_0.err"):
        (run / name).write_text("x")
    assert main_continual.main(_args(tmp_path, "--num_tasks", "2", "--max_epochs", "1", "--probes", "none")) == 0
    assert (run / "task1.ckpt").exists() and (run / "command.sh").read_text() == "x"


PAPER_METHODS = ["byol", "barlow_twins", "mocov2plus", "simclr", "swav", "vicreg"]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["finetune", "cassle"])
@pytest.mark.parametrize("method", PAPER_METHODS)
def test_paper_methods_run_end_to_end(tmp_path, method, strategy, recwarn, capfd):
    """Each of the paper's six methods, fine-tuned and with CaSSLe, through the whole task loop; no "Found N
    module(s) in eval mode" (issue 12: Lightning said so for the CaSSLe teacher at every task)."""
    extra = [
        "--method",
        method,
        "--strategy",
        strategy,
        "--num_tasks",
        "2",
        "--max_epochs",
        "1",
        "--probes",
        "knn",
        "--no_baseline",
    ]
    if method == "mocov2plus":
        extra += ["--queue_size", "128"]
    if method == "swav":
        extra += ["--num_prototypes", "16", "--queue_size", "0"]
    if strategy == "cassle":
        extra += ["--distill_proj_hidden_dim", "32"]
    assert main_continual.main(_args(tmp_path, *extra)) == 0
    run = tmp_path / "run"
    sd = torch.load(run / "task1.ckpt", weights_only=True)["state_dict"]
    has_teacher = any(k.startswith("frozen_backbone.") for k in sd)
    assert has_teacher == (strategy == "cassle")
    header = (run / "logs" / "task1" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert ("train_distill_loss_epoch" in header) == (strategy == "cassle")
    assert json.loads((run / "run_state.json").read_text())["completed_tasks"] == [0, 1]
    printed = "".join(capfd.readouterr()) + "".join(str(w.message) for w in recwarn)
    assert "module(s) in eval mode" not in printed  # the warning (the model summary counts "Modules in eval mode")


def _crash_at(monkeypatch, task: int, epoch: int):
    """Make the run die (like a kill) right after the mid-task checkpoint of ``task`` at ``epoch``."""
    original = continual._EpochCheckpoint.on_train_epoch_end

    def crash(self, trainer, pl_module):
        original(self, trainer, pl_module)
        if self.path.name == f"task{task}-last.ckpt" and trainer.current_epoch == epoch:
            raise _Boom("simulated kill")

    monkeypatch.setattr(continual._EpochCheckpoint, "on_train_epoch_end", crash)
    return original


def _final_state(run: Path) -> tuple[dict, str]:
    sd = torch.load(run / "task1.ckpt", weights_only=True)["state_dict"]
    return sd, (run / "results" / "accuracy_matrix.csv").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra, task, epoch",
    [
        (["--num_workers", "0"], 0, 0),
        (["--num_workers", "2"], 1, 1),  # late in the second task
        (["--num_workers", "0", "--gpu_augment"], 0, 1),
        (["--num_workers", "0", "--strategy", "lump", "--mem_size", "64"], 1, 0),  # the buffer holds task 0
    ],
    ids=["workers0-t0e0", "workers2-t1e1", "gpu_augment-t0e1", "lump-t1e0"],
)
def test_a_killed_run_resumes_to_the_same_numbers(tmp_path, monkeypatch, extra, task, epoch):
    """Every random draw of an epoch (shuffle order, per-sample and batched augmentations, the global RNG,
    the replay generators) is a function of (seed, task, epoch), so a run killed mid-task (at several points:
    task 0 or 1, after epoch 0 or 1 of 3) and resumed from its last mid-task checkpoint ends bit for bit where
    the uninterrupted run ends."""
    argv = [*TINY, "--num_tasks", "2", "--max_epochs", "3", "--probes", "knn", "--no_baseline", *extra]
    argv += ["--train_fraction", "0.5"]  # half of each task's images: the mechanism, at half the cost
    assert main_continual.main([*argv, "--checkpoint_dir", str(tmp_path / "whole")]) == 0
    original = _crash_at(monkeypatch, task=task, epoch=epoch)
    with pytest.raises(_Boom):
        main_continual.main([*argv, "--checkpoint_dir", str(tmp_path / "killed")])
    assert (tmp_path / "killed" / "resume" / f"task{task}-last.ckpt").exists()
    assert not (tmp_path / "killed" / "task1.ckpt").exists()
    monkeypatch.setattr(continual._EpochCheckpoint, "on_train_epoch_end", original)
    assert main_continual.main([*argv, "--checkpoint_dir", str(tmp_path / "killed")]) == 0
    whole, killed = _final_state(tmp_path / "whole"), _final_state(tmp_path / "killed")
    assert killed[1] == whole[1]  # the accuracy matrix, as written
    assert whole[0].keys() == killed[0].keys()
    for k in whole[0]:
        assert torch.equal(whole[0][k], killed[0][k]), k


@pytest.mark.slow
def test_kill_9_mid_task_then_rerun_gives_the_uninterrupted_numbers(tmp_path):
    """The real thing: a main_continual.py process with two DataLoader workers is killed with SIGKILL as soon
    as its first mid-task checkpoint exists; the same command, rerun, ends with the uninterrupted run's
    accuracy matrix and weights."""
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    argv = [*TINY, "--num_tasks", "2", "--max_epochs", "2", "--probes", "knn", "--no_baseline"]
    argv += ["--num_workers", "2", "--train_fraction", "0.5"]
    cmd = [sys.executable, str(root / "main_continual.py"), *argv]
    env = dict(os.environ, PYTHONPATH=str(root))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run([*cmd, "--checkpoint_dir", str(whole)], env=env, check=True, capture_output=True)
    proc = subprocess.Popen([*cmd, "--checkpoint_dir", str(killed)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (killed / "resume" / "task0-last.ckpt").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "no mid-task checkpoint appeared"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the process and its DataLoader workers
    proc.wait()
    assert not (killed / "task1.ckpt").exists()
    subprocess.run([*cmd, "--checkpoint_dir", str(killed)], env=env, check=True, capture_output=True)
    a, b = _final_state(whole), _final_state(killed)
    assert b[1] == a[1]
    for k in a[0]:
        assert torch.equal(a[0][k], b[0][k]), k


@pytest.mark.slow
def test_a_diverging_run_stops_saves_nothing_and_reruns_with_a_lower_lr(tmp_path, capsys):
    run = tmp_path / "run"
    argv = [*TINY, "--checkpoint_dir", str(run), "--num_tasks", "2", "--max_epochs", "2", "--probes", "knn"]
    argv += ["--no_baseline", "--scheduler", "none"]
    assert main_continual.main([*argv, "--lr", "1e30"]) == 2
    err = capsys.readouterr().err
    assert "the training loss became" in err and "in task 0 (epoch 0" in err and "--lr 1e+29" in err
    assert not (run / "task0.ckpt").exists() and not (run / "resume" / "task0-last.ckpt").exists()
    assert json.loads((run / "run_state.json").read_text())["diverged"] == {"task": 0}
    # the divergence left nothing to keep (task 0, no checkpoint): another setting too would start the run
    # afresh (prepare only); the lower lr is accepted as the divergence's fix and becomes the run's
    from cassle.run_plan import prepare_run

    plan = prepare_run(parse_args([*argv, "--lr", "0.01", "--seed", "4"]))
    assert plan.restarted == {"seed": (3, 4)} and plan.changed == {"lr": (1e30, 0.01)}
    assert main_continual.main([*argv, "--lr", "0.01"]) == 0
    assert "continuing with --lr 1e+30 -> 0.01" in capsys.readouterr().out
    assert json.loads((run / "args.json").read_text())["lr"] == 0.01
    state = json.loads((run / "run_state.json").read_text())
    assert state["completed_tasks"] == [0, 1] and "diverged" not in state
    for t in range(2):
        sd = torch.load(run / f"task{t}.ckpt", weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())


@pytest.mark.slow
def test_a_missing_or_truncated_task_checkpoint_is_trained_again(tmp_path, capsys):
    run = tmp_path / "run"
    argv = [*TINY, "--checkpoint_dir", str(run), "--num_tasks", "3", "--max_epochs", "1", "--probes", "knn"]
    argv += ["--no_baseline"]
    assert main_continual.main(argv) == 0
    matrix = (run / "results" / "accuracy_matrix.csv").read_text()
    data = (run / "task2.ckpt").read_bytes()
    (run / "task2.ckpt").write_bytes(data[: len(data) // 3])  # truncated
    (run / "task1.ckpt").unlink()  # and the one before it is gone
    (run / "resume").mkdir()  # and task 1's mid-task checkpoint is unreadable (a disk error, a partial copy)
    (run / "resume" / "task1-last.ckpt").write_bytes(data[: len(data) // 4])
    capsys.readouterr()
    assert main_continual.main(argv) == 0
    out = capsys.readouterr().out
    assert "task2.ckpt is unreadable" in out and "task 2 will be trained again" in out
    assert "task1.ckpt is missing: task 1 will be trained again from task0.ckpt" in out
    assert "task1-last.ckpt is unreadable" in out and "task 1 starts again from its first epoch" in out
    assert "=== task 1/2" in out and "=== task 2/2" in out and "=== task 0/2" not in out
    torch.load(run / "task2.ckpt", weights_only=True)
    # same seed, same numbers: the retrained tasks give the same matrix (exact resume)
    assert (run / "results" / "accuracy_matrix.csv").read_text() == matrix


@pytest.mark.slow
def test_stale_or_missing_results_are_rebuilt_from_the_run_state(tmp_path, capsys):
    run = tmp_path / "run"
    argv = [*TINY, "--checkpoint_dir", str(run), "--num_tasks", "2", "--max_epochs", "1", "--probes", "knn"]
    assert main_continual.main(argv) == 0
    good = {f: (run / "results" / f).read_text() for f in ("accuracy_matrix.csv", "metrics.json")}
    # a kill between run_state.json and results/: an empty last row, a stale metrics.json
    (run / "results" / "accuracy_matrix.csv").write_text(good["accuracy_matrix.csv"].rsplit("\n", 2)[0] + "\n")
    (run / "results" / "metrics.json").unlink()
    capsys.readouterr()
    assert main_continual.main(argv) == 0
    out = capsys.readouterr().out
    assert "rebuilding" in out and "already finished" in out
    assert {f: (run / "results" / f).read_text() for f in good} == good
