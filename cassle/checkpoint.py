"""Checkpoint files: atomic writes, ``weights_only=True`` loads, clear errors.

Two kinds of file live in a run directory:

* ``task{t}.ckpt`` — our own format (see :func:`task_checkpoint`): the model's
  ``state_dict`` (strategy modules such as a frozen teacher included), the
  strategy's extra state, the method/strategy/encoder names and the run's
  arguments. This is what ``--pretrained_model`` and ``main_linear.py`` read.
* ``resume/task{t}-last.ckpt`` — Lightning's full training state (optimizer,
  scheduler, epoch), written through :class:`AtomicCheckpointIO` so a crash
  mid-write never leaves a truncated file behind.

``--pretrained_model`` and ``main_linear.py`` also read *foreign* checkpoints
(:func:`foreign_checkpoint`): a Lightning checkpoint of solo-learn (backbone
under ``backbone.*``) or of the CaSSLe repository (``encoder.*``), or a plain
dict of such tensors. Only the backbone is taken; its architecture comes from
the command line (``--encoder``, ``--base_width``, ``--crop_size``) and must fit
the tensors exactly (:func:`check_backbone_state`). Their ResNet-18 is
torchvision's with ``fc`` an identity and, on CIFAR, a 3x3 ``conv1`` and no
max-pool: the same parameter names and shapes as ours.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from cassle.errors import CheckpointError  # noqa: F401  (re-exported)
from cassle.fileio import atomic_torch_save, atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: F401  (re-exported)

FORMAT = "cassle-task-checkpoint"
VERSION = 1

#: ``format`` of what :func:`load_task_checkpoint` returns for a checkpoint another framework wrote
FOREIGN = "foreign"
#: where other frameworks keep the backbone in a Lightning ``state_dict``: solo-learn (and cassle) name the module
#: ``backbone``, the CaSSLe repository ``encoder`` (its momentum copies, ``momentum_*``, are not taken)
FOREIGN_PREFIXES: tuple[str, ...] = ("backbone.", "encoder.")
#: the ``method`` a foreign checkpoint's results record
FOREIGN_METHOD = "unknown (foreign checkpoint)"
#: :attr:`CheckpointError.reason` of a file refused for the Python objects it holds
PICKLED = "holds Python objects beyond tensors"


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
            raise CheckpointError.because(
                PICKLED,
                f"{what} {path} {PICKLED} and plain containers: loading it could run "
                "code, so it is refused (weights_only=True). Use a checkpoint written by cassle, or convert it "
                "where you trust its origin.",
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
    path: str | os.PathLike,
    method: str | None = None,
    encoder: str | None = None,
    allow_foreign: bool = False,
) -> dict[str, Any]:
    """Load and check a ``task{t}.ckpt``; with ``method``/``encoder`` given, they must match.

    With ``allow_foreign`` (``--pretrained_model``, ``main_linear.py``), a checkpoint without cassle's
    ``format`` is read as :func:`foreign_checkpoint` with the architecture ``encoder``; a file refused for its
    Python objects gets the one line that converts a trusted copy.
    """
    try:
        ckpt = safe_torch_load(path, "checkpoint")
    except CheckpointError as e:
        if allow_foreign and e.reason == PICKLED:
            raise CheckpointError(
                f"checkpoint {path} {PICKLED} and plain containers (solo-learn's hyper_parameters are OmegaConf "
                "objects): loading it could run code, so it is refused (weights_only=True). If you trust the file, "
                f"keep only its weights with: {conversion_command(path)} and pass the new file."
            ) from None
        raise
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "state_dict" not in ckpt:
        if allow_foreign:
            return foreign_checkpoint(ckpt, path, encoder)
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


def conversion_command(path: str | os.PathLike) -> str:
    """The shell line that re-saves only the ``state_dict`` of a trusted checkpoint (next to it, ``-weights``)."""
    src = Path(path)
    dst = src.with_name(f"{src.stem}-weights{src.suffix or '.ckpt'}")
    code = (
        f"import torch; c = torch.load({str(src)!r}, map_location='cpu', weights_only=False); "
        f"torch.save({{'state_dict': c['state_dict']}}, {str(dst)!r})"
    )
    return f'python -c "{code}"'


def foreign_checkpoint(content: Any, path: str | os.PathLike, encoder: str | None) -> dict[str, Any]:
    """A checkpoint of another framework as a task checkpoint holding only ``backbone.*`` tensors.

    ``content`` is a Lightning checkpoint (``state_dict``) or a plain dict of tensors; its backbone is the
    tensors under the first of :data:`FOREIGN_PREFIXES` that has any (prefix replaced by ``backbone.``);
    everything else (projector, momentum copies, classifier, optimizer state) is dropped. ``method`` and
    ``strategy`` are unknown (``None``), ``encoder`` is the one given on the command line.
    """
    sd = content.get("state_dict", content) if isinstance(content, dict) else {}
    sd = sd if isinstance(sd, dict) else {}
    tensors = {k: v for k, v in sd.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    for prefix in FOREIGN_PREFIXES:
        found = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if found:
            break
    else:
        heads = sorted({k.split(".")[0] for k in tensors})
        seen = f"its tensors are under {', '.join(h + '.*' for h in heads[:5])}" if heads else "it holds no tensors"
        raise CheckpointError(
            f"{path} holds no backbone tensors (no 'backbone.*' keys as cassle and solo-learn write, nor "
            f"'encoder.*' as the CaSSLe repository does; {seen}): pass the checkpoint of a trained backbone"
        )
    if encoder is None:
        raise CheckpointError(
            f"{path} is a foreign checkpoint (not written by cassle: {len(found)} '{prefix}*' tensors, no "
            "architecture recorded): pass --encoder with the architecture it was trained with (e.g. --encoder "
            "resnet18), and --base_width / --crop_size where they differ from the defaults"
        )
    return {
        "format": FOREIGN,
        "foreign": True,
        "foreign_prefix": prefix,
        "method": None,
        "strategy": None,
        "encoder": encoder,
        "task_idx": None,
        "args": {},
        "state_dict": {f"backbone.{k}": v for k, v in found.items()},
        "strategy_state": {},
    }


def _backbone_shapes(encoder: str, crop_size: int, base_width: int | None) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer shapes of ``build_backbone(encoder, crop_size, base_width)``, built on the meta device."""
    from cassle.backbones import build_backbone

    with torch.device("meta"):
        net = build_backbone(encoder, int(crop_size), base_width)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def fitting_architecture(state: dict[str, torch.Tensor], crop_size: int) -> str | None:
    """The ``--encoder [--base_width W] [--crop_size C]`` whose backbone has exactly the names and shapes of
    ``state`` (``None``: no shipped encoder fits). Widths tried: each variant's default and the one ``conv1`` or
    ``cls_token`` shows; crop sizes: ``crop_size`` and the other ResNet stem's (32 or 224)."""
    from cassle.backbones import BACKBONES
    from cassle.backbones.resnet import SMALL_IMAGE_MAX

    want = {k: tuple(v.shape) for k, v in state.items()}
    widths: list[int | None] = [None]
    for key in ("conv1.weight", "cls_token"):
        if key in state and state[key].ndim >= 1:
            widths.append(int(state[key].shape[0 if key == "conv1.weight" else -1]))
    crops = [int(crop_size)]
    conv1 = state.get("conv1.weight")
    if conv1 is not None and conv1.ndim == 4:
        small = conv1.shape[-1] == 3
        if small != (crop_size <= SMALL_IMAGE_MAX):
            crops.append(32 if small else 224)
    for name in BACKBONES:
        for width in widths:
            for crop in crops:
                try:
                    fits = _backbone_shapes(name, crop, width) == want
                except Exception:  # noqa: BLE001 - an encoder that cannot take this width or size does not fit
                    fits = False
                if fits:
                    extra = (f" --base_width {width}" if width is not None else "") + (
                        f" --crop_size {crop}" if crop != crop_size else ""
                    )
                    return f"--encoder {name}{extra}"
    return None


def check_backbone_state(
    encoder: str,
    crop_size: int,
    base_width: int | None,
    state: dict[str, torch.Tensor],
    path: str = "checkpoint",
    foreign: bool = False,
) -> None:
    """Raise :class:`CheckpointError` unless ``state`` (backbone keys, no prefix) has exactly the tensor names and
    shapes of ``build_backbone(encoder, crop_size, base_width)``. The message names a few missing and unexpected
    keys, or the first shape mismatch, and the arguments that fit (:func:`fitting_architecture`)."""
    try:
        own = _backbone_shapes(encoder, crop_size, base_width)
    except ValueError as e:
        raise CheckpointError(f"cannot build the checkpoint's encoder: {e}") from None
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatch = next((k for k in own if k in state and tuple(state[k].shape) != own[k]), None)
    if not (missing or unexpected or mismatch):
        return
    fits = fitting_architecture(state, crop_size)
    if fits is not None:
        fix = f"its tensors fit {fits}: pass that"
    elif foreign:
        fix = (
            "pass the --encoder it was trained with, and the --base_width / --crop_size that match it "
            "(--crop_size <= 64 builds the CIFAR stem: 3x3 conv1, no max-pool)"
        )
    else:
        fix = "pass the --crop_size / --base_width the run used (they default to the checkpoint's)"

    def few(keys: list[str]) -> str:
        return ", ".join(f"'backbone.{k}'" for k in keys[:3]) + (", ..." if len(keys) > 3 else "")

    if missing or unexpected:
        parts = [f"lacks {len(missing)} backbone tensors of {encoder} (e.g. {few(missing)})"] if missing else []
        if unexpected:
            parts.append(f"has {len(unexpected)} backbone tensors that {encoder} lacks (e.g. {few(unexpected)})")
        raise CheckpointError(f"{path} {' and '.join(parts)}; it is of another architecture or incomplete: {fix}")
    raise CheckpointError(
        f"{path}: checkpoint tensor 'backbone.{mismatch}' has shape {tuple(state[mismatch].shape)} but {encoder} expects "
        f"{own[mismatch]}; {fix}"
    )


def load_weights(model, ckpt: dict[str, Any]) -> None:
    """Load a task checkpoint's weights into ``model``.

    A foreign checkpoint (:func:`foreign_checkpoint`) loads the backbone (and
    a momentum backbone) alone, strictly. Otherwise keys the model does not
    have (e.g. a teacher of another strategy) are ignored; missing keys are
    allowed only for strategy-owned modules, which the strategy creates at
    task start. Shape mismatches raise.
    """
    if ckpt.get("foreign"):  # the backbone only (checked by prepare_run); the momentum copy starts from it
        state = {k[len("backbone.") :]: v for k, v in ckpt["state_dict"].items()}
        model.backbone.load_state_dict(state, strict=True)
        if isinstance(getattr(model, "momentum_backbone", None), torch.nn.Module):
            model.momentum_backbone.load_state_dict(state, strict=True)
        print(
            f"loaded the backbone of a foreign checkpoint ({len(state)} tensors); projector and strategy state "
            "start untrained"
        )
        return
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
