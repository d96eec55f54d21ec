"""Checkpoint files: atomic writes, ``weights_only=True`` loads, clear errors.

Two kinds of file live in a run directory:

* ``task{t}.ckpt`` — our own format (see :func:`task_checkpoint`): the model's
  ``state_dict`` (strategy modules such as a frozen teacher included), the
  strategy's extra state, the method/strategy/encoder names and the run's
  arguments. This is what ``--pretrained_model`` and ``main_linear.py`` read.
* ``resume/task{t}-last.ckpt`` — Lightning's full training state (optimizer,
  scheduler, epoch), written through :class:`AtomicCheckpointIO` so a crash
  mid-write never leaves a truncated file behind.
"""

from __future__ import annotations

import json
import os
import pickle
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from cassle.errors import CheckpointError  # noqa: F401  (re-exported)
from cassle.fileio import atomic_torch_save, atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: F401  (re-exported)

FORMAT = "cassle-task-checkpoint"
VERSION = 1


def safe_torch_load(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """``torch.load(weights_only=True)`` with one clear error for missing or corrupt files."""
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError.because("is missing", f"{what} {path} does not exist")
    if os.path.getsize(path) == 0:
        raise CheckpointError.because(
            "is empty (0 bytes)",
            f"{what} {path} is empty (0 bytes): a write was cut off. Delete it (a rerun then restarts that task) "
            "or pass another file.",
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e) or "Unsupported class" in str(
            e
        ):  # an object that would run code (torch < 2.4 says "class")
            raise CheckpointError(
                f"{what} {path} holds Python objects beyond tensors and plain containers: loading it could run "
                "code, so it is refused (weights_only=True). Use a checkpoint written by cassle, or convert it "
                "where you trust its origin."
            ) from None
        raise _unreadable(what, path, e) from None
    except Exception as e:  # truncated zip, not a torch file...
        raise _unreadable(what, path, e) from None


def _unreadable(what: str, path: str, e: Exception) -> CheckpointError:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    detail = [ln for ln in lines if "Unsupported" in ln or "load key" in ln or "zip" in ln.lower()]
    first = (detail or lines or [""])[0][:200]
    reason = f"{type(e).__name__}{': ' + first if first else ''}"
    return CheckpointError.because(
        f"is unreadable ({reason})",
        f"{what} {path} cannot be read ({reason}). It is corrupt, truncated, or not a torch checkpoint: delete it "
        "(a rerun then restarts that task) or pass another file.",
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that writes atomically and loads with ``weights_only=True``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return safe_torch_load(path, "resume checkpoint")


def task_checkpoint(model, task_idx: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """The content of ``task{t}.ckpt`` for a model that just finished task ``task_idx``."""
    strategy_state = model.strategy_state_dict() if hasattr(model, "strategy_state_dict") else {}
    return {
        "format": FORMAT,
        "version": VERSION,
        "method": cfg["method"],
        "strategy": cfg["strategy"],
        "encoder": cfg["encoder"],
        "task_idx": int(task_idx),
        "args": json.loads(json.dumps(cfg, default=str)),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "strategy_state": strategy_state,
    }


def load_task_checkpoint(
    path: str | os.PathLike, method: str | None = None, encoder: str | None = None
) -> dict[str, Any]:
    """Load and check a ``task{t}.ckpt``; with ``method``/``encoder`` given, they must match."""
    ckpt = safe_torch_load(path, "checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{path} is not a cassle task checkpoint (expected a taskK.ckpt written by main_continual.py)"
        )
    if method is not None and ckpt["method"] != method:
        raise CheckpointError(
            f"{path} was trained with --method {ckpt['method']}, not --method {method}; "
            f"pass --method {ckpt['method']} or a checkpoint of {method}"
        )
    if encoder is not None and ckpt["encoder"] != encoder:
        raise CheckpointError(
            f"{path} holds a {ckpt['encoder']} encoder, not {encoder}; pass --encoder {ckpt['encoder']}"
        )
    return ckpt


def load_weights(model, ckpt: dict[str, Any]) -> None:
    """Load a task checkpoint's weights into ``model``.

    Keys the model does not have (e.g. a teacher of another strategy) are
    ignored; missing keys are allowed only for strategy-owned modules, which
    the strategy creates at task start. Shape mismatches raise.
    """
    own = model.state_dict()
    sd = {k: v for k, v in ckpt["state_dict"].items() if k in own}
    for k, v in sd.items():
        if own[k].shape != v.shape:
            raise CheckpointError(
                f"checkpoint tensor '{k}' has shape {tuple(v.shape)} but the model expects {tuple(own[k].shape)}; "
                "pass the same --encoder / --proj_hidden_dim / --output_dim as the run that wrote it"
            )
    missing = [k for k in own if k not in sd]
    core = [k for k in missing if k.startswith(("backbone.", "projector."))]
    if core:
        raise CheckpointError(f"checkpoint lacks {len(core)} backbone/projector tensors (e.g. '{core[0]}')")
    model.load_state_dict(sd, strict=False)
    if hasattr(model, "load_strategy_state_dict") and ckpt.get("strategy_state"):
        model.load_strategy_state_dict(ckpt["strategy_state"])
