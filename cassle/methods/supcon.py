"""SupCon — Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020
(https://arxiv.org/abs/2004.11362).

SimCLR's loss with class labels as positive ids: every view of every sample of
the same class is a positive. Unlabelled samples (``target == -1``) fall back
to SimCLR (only their own other view is a positive).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from cassle.methods.base import METHODS
from cassle.methods.simclr import SimCLR


@METHODS.register("supcon")
class SupCon(SimCLR):
    """Supervised contrastive learning (projector 2048 -> 256, temperature 0.2)."""

    log_name: ClassVar[str] = "supcon"

    def positive_ids(self, indexes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Class targets; unlabelled rows get a unique negative id ``-(index + 2)``."""
        targets = targets.long()
        return torch.where(targets >= 0, targets, -(indexes.long() + 2))
