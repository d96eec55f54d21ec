"""Every error cassle raises on purpose, in one module at the bottom of the package.

Each is a ``ValueError`` whose message names the problem and the fix; the
entry points catch :class:`CassleError` and print it as one line (no
traceback) before any work starts. The modules that raise them re-export
their own (``from cassle.checkpoint import CheckpointError`` keeps working).
"""

from __future__ import annotations


class CassleError(ValueError):
    """Base of cassle's own errors: a bad input or state, with the fix in the message.

    Raised in a DataLoader worker, it reaches the main process rebuilt from the worker's whole traceback
    (``Caught DatasetError in DataLoader worker process 0. Original Traceback ...``); the rebuilt error keeps
    only the original one-line message, so the entry points still print one line."""

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str) and args[0].startswith("Caught ") and "Traceback" in args[0]:
            last = [ln for ln in args[0].splitlines() if ln.strip()][-1]
            prefix = f"{type(self).__module__}.{type(self).__qualname__}: "
            if last.startswith(prefix):
                args = (last[len(prefix) :],)
        super().__init__(*args)


class ArgumentError(CassleError):
    """A bad command-line value; the message names the problem and the fix."""


class CheckpointError(CassleError):
    """A checkpoint that cannot be used; the message says why and what to do."""

    #: what is wrong with the file, without the advice ("missing", "empty (0 bytes)", "OSError: ..."): for a
    #: caller that handles the error itself and says what it does instead
    reason: str = ""

    @classmethod
    def because(cls, reason: str, message: str) -> CheckpointError:
        err = cls(message)
        err.reason = reason
        return err


class DatasetError(CassleError):
    """A dataset is missing, incomplete or malformed; the message says how to fix it."""


class DaliUnavailableError(CassleError):
    """``--dali`` was asked for but NVIDIA DALI is not installed."""


class RunError(CassleError):
    """A run that cannot start; the message names the problem and the fix."""


class DivergedError(RunError):
    """The training loss became non-finite; the message says what was kept and how to rerun."""


class StorageError(CassleError):
    """The machine refused a write: the disk or quota is full, or the folder is read-only; the message names
    the file and says that what was written before is intact."""


class LinearEvalError(CassleError):
    """A linear evaluation that cannot start; the message names the problem and the fix."""


class SweepError(CassleError):
    """A bad sweep config; the message names the problem and the fix."""


class LauncherError(CassleError):
    """A problem with the script or the launcher options; the message says what to fix."""


__all__ = [
    "ArgumentError",
    "CassleError",
    "DivergedError",
    "CheckpointError",
    "DaliUnavailableError",
    "DatasetError",
    "LauncherError",
    "LinearEvalError",
    "RunError",
    "StorageError",
    "SweepError",
]
