"""Input checks shared by the loss functions: one clear ``ValueError`` naming the loss and the shapes."""

from __future__ import annotations

import torch


def check_pair(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` are 2-D tensors of equal shape."""
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(
            f"{name}: expected two 2-D (batch x dim) tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape != b.shape:
        raise ValueError(f"{name}: both inputs must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
