"""Atomic file writes: the one helper every result, checkpoint and launcher file goes through.

A file is filled in a temporary sibling (``.<name>.<random>.tmp``) and renamed
over the target with ``os.replace``: a reader (or a run killed mid-write)
never sees a half-written file, and no temporary file is left when the write
fails. The file gets the permissions a plain ``open()`` would give (``0o666``
minus the user's umask; ``mode`` overrides), so colleagues sharing a cluster
folder can read results.

A write the machine refuses — the disk (or quota) is full, the folder is
read-only or not ours — raises :class:`cassle.errors.StorageError`: one line
naming the file, the reason and the fix, saying that the file keeps its
previous content. :func:`storage_error` turns such an ``OSError`` raised
anywhere else (a logger's plain ``open``) into the same error.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cassle.errors import ArgumentError, StorageError

PathLike = str | os.PathLike

#: errnos of a full disk or quota, and of a folder this process may not write
_FULL = {errno.ENOSPC, errno.EDQUOT}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def _free_space(path: Path) -> str:
    for folder in (path, *path.parents):
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            continue
        return f"{free / 2**20:.1f} MiB free there" if free < 2**30 else f"{free / 2**30:.1f} GiB free there"
    return "free space unknown"


def storage_error(e: BaseException, path: PathLike | None = None) -> StorageError | None:
    """The one-line :class:`StorageError` for an ``OSError`` of a full disk / quota or a read-only / forbidden
    folder (``path``: the file being written, default the error's own filename); ``None`` for any other error."""
    if isinstance(e, StorageError):
        return e
    if not isinstance(e, OSError) or e.errno not in _FULL | _READ_ONLY:
        return None
    target = Path(path if path is not None else (e.filename or "?"))
    kept = (
        f"{target.name} is unchanged (it is written atomically) and nothing written earlier was lost"
        if path is not None
        else "files written earlier are intact"
    )
    if e.errno in _FULL:
        what = "disk quota exceeded" if e.errno == errno.EDQUOT else "no space left on the device"
        return StorageError(
            f"{what} writing {target} ({_free_space(target.parent)}): {kept}. Free some space there and rerun the "
            "same command (a continual run resumes from its last saved checkpoint)"
        )
    why = "the file system is read-only" if e.errno == errno.EROFS else "this user may not write in that folder"
    return StorageError(
        f"cannot write {target}: {why} ({e.strerror}); {kept}. Pass a writable --checkpoint_dir (or make the "
        "folder writable) and rerun the same command"
    )


class _RecordingWriter:
    """A binary file whose write errors are remembered: ``torch.save`` replaces an ``OSError`` of its file
    (a full disk) by ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``."""

    def __init__(self, fh) -> None:
        self._fh = fh
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._fh.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name: str):
        return getattr(self._fh, name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _open_temp(fd: int, tmp: str, binary: bool):
    """The temporary file of :func:`atomic_write`, opened on its descriptor (tests wrap it to fill the disk)."""
    return os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": "", "encoding": "utf-8"}))


def atomic_write(path: PathLike, write: Callable[[Any], None], binary: bool = False, mode: int | None = None) -> None:
    """Fill ``path`` atomically: ``write(fh)`` writes into a temporary file of the same folder, then ``os.replace``.

    Text files are UTF-8 with no newline translation. The parent folder is created if needed. A full disk or
    a read-only folder raises :class:`StorageError` (one line; ``path`` keeps its previous content).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise (storage_error(e, path) or e) from None
    try:
        with _open_temp(fd, tmp, binary) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, (0o666 & ~_umask()) if mode is None else mode)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        known = storage_error(e, path)
        if known is not None:
            raise known from None
        raise


def atomic_write_bytes(path: PathLike, data: bytes, mode: int | None = None) -> None:
    atomic_write(path, lambda fh: fh.write(data), binary=True, mode=mode)


def atomic_write_text(path: PathLike, text: str, mode: int | None = None) -> None:
    atomic_write(path, lambda fh: fh.write(text), mode=mode)


def atomic_write_json(path: PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    import torch

    def write(fh) -> None:
        rec = _RecordingWriter(fh)
        try:
            torch.save(obj, rec)
        except RuntimeError as e:
            if rec.error is not None:  # the file's own error (ENOSPC...), hidden by torch's zip writer
                raise rec.error from e
            raise

    atomic_write(path, write, binary=True)


def read_json_object(path: PathLike) -> dict[str, Any]:
    """The JSON object (dict) in ``path``; a missing or unreadable file, text that is not UTF-8, invalid JSON or
    JSON of another type (a list) raise one ``ValueError`` naming the file and the problem (callers add the fix)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path} is not UTF-8 text (byte 0x{data[e.start]:02x} at position {e.start}): save it as UTF-8 JSON"
        ) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    if not isinstance(obj, dict):
        kind = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(type(obj), "a number")
        raise ValueError(f"{path} holds {kind}, not a JSON object ({{...}})")
    return obj


def check_writable(path: str | os.PathLike, fix: str = "pass a writable --checkpoint_dir (or run elsewhere)") -> None:
    """``path`` (or the folder it would be created in) can be written by this process: a read-only run directory
    is one line now, naming it, not a traceback at the first write."""
    target = Path(os.path.abspath(path))
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        where = "is" if existing == target else f"would be created in {existing}, which is"
        raise ArgumentError(f"{path} {where} not writable (a read-only folder, or another user's): {fix}")


__all__ = [
    "check_writable",
    "StorageError",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "read_json_object",
    "storage_error",
]
