"""cassle/rundir.py: one process per run directory (an OS lock that dies with its holder)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import main_continual
from cassle.errors import RunError
from cassle.rundir import LOCK_FILE, clean_temp_files, is_launcher_file, run_lock
from tests.helpers import TINY


def test_second_holder_is_refused_naming_the_first(tmp_path):
    with run_lock(tmp_path / "run"):
        with pytest.raises(RunError, match=r"in use by pid \d+ on"):
            with run_lock(tmp_path / "run"):
                pass
    with run_lock(tmp_path / "run"):  # released: the next one gets it
        pass
    assert is_launcher_file(LOCK_FILE)  # the lock alone does not make a directory "another run"


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    code = (
        "import os, sys; from cassle.rundir import run_lock\n"
        f"with run_lock({str(tmp_path / 'run')!r}):\n    os.kill(os.getpid(), 9)\n"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    assert (tmp_path / "run" / LOCK_FILE).exists()
    with run_lock(tmp_path / "run"):
        pass


def test_main_continual_refuses_a_directory_in_use(tmp_path, capsys):
    run_dir = tmp_path / "run"
    with run_lock(run_dir):
        code = main_continual.main(TINY + ["--num_tasks", "1", "--max_epochs", "1", "--checkpoint_dir", str(run_dir)])
    assert code == 2
    assert "in use by pid" in capsys.readouterr().err
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE]  # nothing of the run was written


@pytest.mark.slow
def test_two_runs_started_together_on_one_directory_leave_one_complete_run_and_one_refusal(tmp_path):
    """Two real ``main_continual.py`` processes on one ``--checkpoint_dir``, started at the same moment (before the
    lock, one crashed in the CSV logger and ``metrics.csv`` lost a row; started apart, the second resumed from the
    first's checkpoint and both wrote the same files): exactly one trains, the other stops with the lock's message."""
    repo = Path(__file__).resolve().parent.parent
    run = tmp_path / "run"
    argv = [*TINY, "--num_tasks", "2", "--max_epochs", "2", "--probes", "knn", "--checkpoint_dir", str(run)]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(repo / "main_continual.py"), *argv],
            cwd=repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], "\n=====\n".join(o[-2000:] for o in outs)
    winner, loser = (outs[0], outs[1]) if codes[0] == 0 else (outs[1], outs[0])
    assert "is in use by pid" in loser and "one process per run directory" in loser and "Traceback" not in loser
    assert "=== task" not in loser  # it stopped before training
    assert "Done." in winner
    assert json.loads((run / "run_state.json").read_text())["completed_tasks"] == [0, 1]
    rows = list(csv.reader((run / "results" / "accuracy_matrix.csv").open()))
    assert len(rows) >= 3 and all(cell != "" for row in rows[1:] for cell in row)  # every task's row is filled
    for task in range(2):  # every epoch of every task logged, its epoch-level row once
        with open(run / "logs" / f"task{task}" / "metrics.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("epoch")]
        ends = [int(float(r["epoch"])) for r in rows if any(k.endswith("_loss_epoch") and v for k, v in r.items())]
        assert ends == [0, 1], (task, ends)


def test_temp_files_of_interrupted_writes_are_cleaned(tmp_path):
    (tmp_path / "resume").mkdir()
    stale = [tmp_path / ".task0.ckpt.abc123.tmp", tmp_path / "resume" / ".task1-last.ckpt.x.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    (tmp_path / "task0.ckpt").write_bytes(b"kept")
    assert sorted(clean_temp_files(tmp_path)) == sorted(stale)
    assert not any(p.exists() for p in stale) and (tmp_path / "task0.ckpt").exists()
