"""Feature extraction from a frozen backbone.

The probes of :mod:`cassle.eval.probes` work on features, not on images: this
module streams an evaluation loader through a backbone once and collects the
outputs on the CPU.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["extract_features"]


def _resolve_device(backbone: nn.Module, device: str | torch.device | None) -> torch.device:
    """Return ``device`` if given, else the device of the backbone's first parameter (CPU if none)."""
    if device is not None:
        return torch.device(device)
    for p in backbone.parameters():
        return p.device
    for b in backbone.buffers():
        return b.device
    return torch.device("cpu")


def extract_features(
    backbone: nn.Module,
    loader: Iterable | None,
    device: str | torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """Run ``backbone`` over every batch of ``loader`` and collect the features.

    Args:
        backbone: module mapping ``B×3×S×S`` images to ``B×D`` features.
        loader: iterable of evaluation batches ``(images, targets)`` (see
            ``docs/contracts.md``); ``None`` or an empty loader gives empty
            tensors.
        device: where to run the backbone; defaults to the device of its
            parameters. The backbone itself is not moved: put it on ``device``
            first.

    Returns:
        ``(features, targets)``: a float32 CPU tensor ``N×D`` and a CPU
        LongTensor ``N``. For an empty loader: ``0×0`` and ``0``.

    The backbone is switched to eval mode (batch-norm running statistics,
    no dropout) under :func:`torch.inference_mode`, and its previous
    train/eval mode is restored afterwards, even if a batch raises.
    """
    empty = (torch.empty(0, 0, dtype=torch.float32), torch.empty(0, dtype=torch.long))
    if loader is None:
        return empty
    dev = _resolve_device(backbone, device)
    # remember every submodule's mode, so a partly frozen model comes back exactly as it was
    modes = [(m, m.training) for m in backbone.modules()]
    feats: list[Tensor] = []
    targets: list[Tensor] = []
    backbone.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                if not isinstance(batch, (list, tuple)) or len(batch) < 2:
                    raise ValueError(
                        f"extract_features expects evaluation batches (images, targets); got {type(batch).__name__}"
                    )
                images, y = batch[0], batch[1]
                out = backbone(images.to(dev, non_blocking=True))
                if isinstance(out, dict):  # a method's forward returning {"feats": ...}
                    out = out["feats"]
                feats.append(out.detach().flatten(1).float().cpu())
                targets.append(torch.as_tensor(y).detach().long().cpu().reshape(-1))
    finally:
        for m, mode in modes:
            m.train(mode)
    if not feats:
        return empty
    return torch.cat(feats), torch.cat(targets)
