"""cassle/fileio.py: atomic writes leave either the old or the new file, no temp file, and respect the umask."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cassle import fileio
from cassle.errors import StorageError
from cassle.fileio import (
    atomic_torch_save,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    read_json_object,
    storage_error,
)


def test_text_json_and_torch_round_trip(tmp_path):
    atomic_write_text(tmp_path / "a" / "x.txt", "héllo\n")
    assert (tmp_path / "a" / "x.txt").read_text(encoding="utf-8") == "héllo\n"
    atomic_write_json(tmp_path / "m.json", {"b": 1, "a": [1.5]})
    assert (tmp_path / "m.json").read_text() == '{\n  "a": [\n    1.5\n  ],\n  "b": 1\n}\n'
    atomic_torch_save({"w": torch.arange(3)}, tmp_path / "c.ckpt")
    assert torch.equal(torch.load(tmp_path / "c.ckpt", weights_only=True)["w"], torch.arange(3))


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "r.csv"
    atomic_write_text(target, "old\n")

    def boom(fh):
        fh.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, boom)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_permissions_follow_the_umask(tmp_path, umask, expected):
    before = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
        atomic_torch_save({}, tmp_path / "f.ckpt")
    finally:
        os.umask(before)
    for name in ("f.txt", "f.ckpt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected
    atomic_write_text(tmp_path / "run.sh", "#!/bin/sh\n", mode=0o755)
    assert stat.S_IMODE((tmp_path / "run.sh").stat().st_mode) == 0o755


# --------------------------------------------------------------------------- the machine's own faults (issue 10)


class _FullDisk:
    """A file on a disk that fills up after ``room`` bytes: every later write raises ENOSPC, as the kernel does."""

    def __init__(self, fh, room: int) -> None:
        self._fh, self.room = fh, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def _fill_disk(monkeypatch, room: int = 100) -> None:
    real = fileio._open_temp
    monkeypatch.setattr(fileio, "_open_temp", lambda fd, tmp, binary: _FullDisk(real(fd, tmp, binary), room))


def test_a_full_disk_is_one_line_naming_the_file_and_the_old_file_survives(tmp_path, monkeypatch):
    old = tmp_path / "task0.ckpt"
    atomic_torch_save({"w": torch.ones(3)}, old)
    _fill_disk(monkeypatch)
    # torch.save on its own turns the ENOSPC into "RuntimeError: [enforce fail at inline_container.cc] unexpected pos"
    with pytest.raises(StorageError) as e:
        atomic_torch_save({"w": torch.zeros(10_000)}, old)
    msg = str(e.value)
    assert "\n" not in msg and "no space left" in msg and str(old) in msg and "nothing written earlier was lost" in msg
    assert "free there" in msg and "inline_container" not in msg
    with pytest.raises(StorageError, match="no space left.*m.json"):
        atomic_write_json(tmp_path / "m.json", {"x": "y" * 1000})
    assert torch.equal(torch.load(old, weights_only=True)["w"], torch.ones(3))  # the earlier file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["task0.ckpt"]  # no temporary file left


def test_a_read_only_folder_is_one_line_naming_the_path(tmp_path, monkeypatch):
    def read_only(*a, **k):  # what mkstemp meets on a file system mounted read-only
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / ".x.tmp"))

    monkeypatch.setattr(fileio.tempfile, "mkstemp", read_only)
    with pytest.raises(StorageError) as e:
        atomic_write_text(tmp_path / "results" / "metrics.json", "{}")
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "results" / "metrics.json") in msg and "read-only" in msg
    assert "--checkpoint_dir" in msg


def test_storage_error_translates_only_the_machines_faults(tmp_path):
    full = storage_error(OSError(errno.EDQUOT, "Disk quota exceeded", str(tmp_path / "logs" / "metrics.csv")))
    assert isinstance(full, StorageError) and "quota" in str(full) and "metrics.csv" in str(full)
    denied = storage_error(PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x")))
    assert "may not write" in str(denied)
    assert storage_error(FileNotFoundError(errno.ENOENT, "No such file")) is None
    assert storage_error(RuntimeError("other")) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux permissions")
def test_a_really_read_only_folder(tmp_path):
    """The real kernel error, not a simulated one: a 0555 folder, written by a process without root's override."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    script = (
        "from cassle.fileio import atomic_write_text\n"
        "from cassle.errors import StorageError\n"
        "try:\n"
        f"    atomic_write_text({str(ro / 'a.json')!r}, 'x')\n"
        "except StorageError as e:\n"
        "    print(e)\n"
    )
    out = _unprivileged([sys.executable, "-c", script])
    assert f"cannot write {ro / 'a.json'}" in out and "Permission denied" in out
    assert list(ro.iterdir()) == []


def _unprivileged(cmd: list[str]) -> str:
    """Run ``cmd`` as this user; as root, without the capability that lets root write anywhere (``setpriv``)."""
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot drop root's write-anywhere capability")
        cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *cmd]
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=120, check=False)
    return done.stdout + done.stderr


# --------------------------------------------------------------------------- JSON files that are not what they claim


@pytest.mark.parametrize(
    "content, needle",
    [
        (b'{"a": "caf\xe9"}', r"not UTF-8 text \(byte 0xe9 at position 10\)"),
        (b"[1, 2]", "holds a list, not a JSON object"),
        (b"{broken", "not valid JSON"),
    ],
)
def test_read_json_object_refuses_what_is_not_a_utf8_json_object(tmp_path, content, needle):
    (tmp_path / "f.json").write_bytes(content)
    with pytest.raises(ValueError, match=needle):
        read_json_object(tmp_path / "f.json")
    assert read_json_object(_written(tmp_path / "ok.json", {"a": 1})) == {"a": 1}


def _written(path: Path, obj) -> Path:
    atomic_write_json(path, obj)
    return path


@pytest.mark.slow
def test_main_continual_on_a_full_disk_says_so_keeps_the_earlier_tasks_and_reruns(tmp_path, monkeypatch, capsys):
    """Issue 10: the disk fills while task 1's checkpoint is written. Today's traceback ('[enforce fail at
    inline_container.cc:672] unexpected pos') becomes one line naming the file; task 0's checkpoint and results are
    untouched, and once space is back the same command finishes the run."""
    import main_continual
    from tests.helpers import TINY

    run = tmp_path / "run"
    argv = [*TINY, "--num_tasks", "2", "--max_epochs", "1", "--probes", "knn", "--no_baseline"]
    argv += ["--checkpoint_dir", str(run)]
    real = fileio._open_temp

    def fills_at_task1(fd, tmp, binary):
        fh = real(fd, tmp, binary)
        return _FullDisk(fh, 1000) if Path(tmp).name.startswith(".task1.ckpt.") else fh

    monkeypatch.setattr(fileio, "_open_temp", fills_at_task1)
    assert main_continual.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "inline_container" not in err
    err = err.strip().splitlines()[-1]  # the one error line (Lightning's INFO lines come before it)
    assert err.startswith("error: no space left on the device writing")
    assert str(run / "task1.ckpt") in err and "nothing written earlier was lost" in err
    task0 = (run / "task0.ckpt").read_bytes()
    assert not (run / "task1.ckpt").exists() and not list(run.glob(".*.tmp"))
    monkeypatch.setattr(fileio, "_open_temp", real)  # space is back
    assert main_continual.main(argv) == 0
    assert (run / "task0.ckpt").read_bytes() == task0  # task 0 was not trained again
    assert (run / "task1.ckpt").exists()
