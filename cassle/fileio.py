"""Atomic file writes: the one helper every result, checkpoint and launcher file goes through.

A file is filled in a temporary sibling (``.<name>.<random>.tmp``) and renamed
over the target with ``os.replace``: a reader (or a run killed mid-write)
never sees a half-written file, and no temporary file is left when the write
fails. The file gets the permissions a plain ``open()`` would give (``0o666``
minus the user's umask; ``mode`` overrides), so colleagues sharing a cluster
folder can read results.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, write: Callable[[Any], None], binary: bool = False, mode: int | None = None) -> None:
    """Fill ``path`` atomically: ``write(fh)`` writes into a temporary file of the same folder, then ``os.replace``.

    Text files are UTF-8 with no newline translation. The parent folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": "", "encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, (0o666 & ~_umask()) if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: PathLike, data: bytes, mode: int | None = None) -> None:
    atomic_write(path, lambda fh: fh.write(data), binary=True, mode=mode)


def atomic_write_text(path: PathLike, text: str, mode: int | None = None) -> None:
    atomic_write(path, lambda fh: fh.write(text), mode=mode)


def atomic_write_json(path: PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    import torch

    atomic_write(path, lambda fh: torch.save(obj, fh), binary=True)


__all__ = ["atomic_torch_save", "atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]
