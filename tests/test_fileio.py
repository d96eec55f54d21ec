"""cassle/fileio.py: atomic writes leave either the old or the new file, no temp file, and respect the umask."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from cassle.fileio import atomic_torch_save, atomic_write, atomic_write_json, atomic_write_text


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
