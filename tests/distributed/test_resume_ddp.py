"""``main_continual.py --accelerator cpu --devices 2``, killed with SIGKILL after a mid-task checkpoint and rerun,
ends with the uninterrupted two-rank run's accuracy matrix, weights and per-rank replay buffers.

The two-process version of ``tests/test_continual.py``'s kill-9 test: the command is started as a user starts it
(Lightning's DDP launcher starts rank 1 as a child process), the whole process group is killed as soon as the
first mid-task checkpoint of the second task exists, and the same command is run again. With LUMP replay, the
rerun restores each rank's own buffer and replay generator (from ``task0.ckpt``, then from the mid-task
checkpoint) and both ranks' data shards, augmentations and mixing weights continue where they stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import TINY

REPO = Path(__file__).resolve().parents[2]
ARGV = [*TINY, "--num_tasks", "2", "--max_epochs", "2", "--probes", "knn", "--no_baseline", "--accelerator", "cpu"]
ARGV += ["--devices", "2", "--strategy", "lump", "--mem_size", "48", "--train_fraction", "0.5"]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for var in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env


def _final(run: Path) -> tuple[dict, dict, str]:
    ckpt = torch.load(run / "task1.ckpt", weights_only=True)
    return ckpt["state_dict"], ckpt["strategy_state"], (run / "results" / "accuracy_matrix.csv").read_text()


@pytest.mark.slow
def test_kill_9_of_a_two_rank_run_then_rerun_gives_the_uninterrupted_numbers(tmp_path):
    cmd = [sys.executable, str(REPO / "main_continual.py"), *ARGV]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = subprocess.run([*cmd, "--checkpoint_dir", str(whole)], env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    proc = subprocess.Popen([*cmd, "--checkpoint_dir", str(killed)], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    mid_task = killed / "resume" / "task1-last.ckpt"
    deadline = time.monotonic() + 300
    try:
        while not mid_task.exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "no mid-task checkpoint of task 1 appeared"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # both ranks (rank 1 is rank 0's child, in its process group)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert (killed / "task0.ckpt").exists() and not (killed / "task1.ckpt").exists()
    state = torch.load(mid_task, weights_only=True)
    assert state["epoch"] == 0, "killed after the last epoch's checkpoint: nothing left to resume mid-task"
    assert len(state["strategy_state"]["buffer_per_rank"]) == 2

    rerun = subprocess.run([*cmd, "--checkpoint_dir", str(killed)], env=_env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert "resuming task 1" in rerun.stderr + rerun.stdout
    assert "=== task 0/" not in rerun.stdout  # task 0 is not trained again

    (sd_a, ss_a, matrix_a), (sd_b, ss_b, matrix_b) = _final(whole), _final(killed)
    assert matrix_b == matrix_a  # the accuracy matrix, as written
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), k
    # every rank ends with the buffer and replay generator of the uninterrupted run
    for key in ("buffer_per_rank", "replay_generator_per_rank"):
        assert len(ss_a[key]) == len(ss_b[key]) == 2
    for r in range(2):
        a, b = ss_a["buffer_per_rank"][r], ss_b["buffer_per_rank"][r]
        assert a["num_seen"] == b["num_seen"] and torch.equal(a["generator"], b["generator"]), r
        for k in a["data"]:
            assert torch.equal(a["data"][k], b["data"][k]), (r, k)
        assert torch.equal(ss_a["replay_generator_per_rank"][r], ss_b["replay_generator_per_rank"][r]), r
    assert not torch.equal(ss_a["buffer_per_rank"][0]["data"]["indexes"], ss_a["buffer_per_rank"][1]["data"]["indexes"])
