"""cassle/checkpoint.py: loading is weights-only and every unreadable file is one clear CheckpointError."""

from __future__ import annotations

import pickle

import pytest
import torch

from cassle.checkpoint import CheckpointError, safe_torch_load


def test_round_trip(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "ok.ckpt")
    assert torch.equal(safe_torch_load(tmp_path / "ok.ckpt")["w"], torch.ones(2))


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        safe_torch_load(tmp_path / "nope.ckpt")


def test_empty_file_is_a_clear_error_not_an_index_error(tmp_path):
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.ckpt.*(empty|0 bytes)"):
        safe_torch_load(tmp_path / "empty.ckpt")


def test_truncated_file(tmp_path):
    torch.save({"w": torch.ones(1000)}, tmp_path / "t.ckpt")
    data = (tmp_path / "t.ckpt").read_bytes()
    (tmp_path / "t.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        safe_torch_load(tmp_path / "t.ckpt")


class _Bomb:
    def __reduce__(self):
        return (print, ("this would run",))


def test_pickle_bomb_refused_with_the_whole_warning(tmp_path):
    path = tmp_path / "bomb.ckpt"
    torch.save({"x": _Bomb()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError) as e:
        safe_torch_load(path)
    msg = str(e.value)
    assert "bomb.ckpt" in msg and "could run code" in msg and len(msg) < 600
