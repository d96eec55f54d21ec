"""cassle/rundir.py: one process per run directory (an OS lock that dies with its holder)."""

from __future__ import annotations

import subprocess
import sys

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


def test_temp_files_of_interrupted_writes_are_cleaned(tmp_path):
    (tmp_path / "resume").mkdir()
    stale = [tmp_path / ".task0.ckpt.abc123.tmp", tmp_path / "resume" / ".task1-last.ckpt.x.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    (tmp_path / "task0.ckpt").write_bytes(b"kept")
    assert sorted(clean_temp_files(tmp_path)) == sorted(stale)
    assert not any(p.exists() for p in stale) and (tmp_path / "task0.ckpt").exists()
