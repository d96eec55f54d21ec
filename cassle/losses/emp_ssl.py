"""EMP-SSL loss: patch invariance to the image's mean embedding + total coding rate.

Tong et al., "EMP-SSL: Towards Self-Supervised Learning in One Training Epoch",
2023 (https://arxiv.org/abs/2304.03977).

Every image is cut into ``n`` crops ("patches") whose projections ``z_1..z_n``
(``B x D`` each, L2-normalised by the method) are pulled towards their mean
``z̄``, while the total coding rate (Ma et al., MCR², NeurIPS 2020) of each
crop's batch of embeddings is maximised so the embeddings do not collapse::

    loss = -invariance_weight * mean_i mean_b cos(z_i[b], z̄[b])
           - tcr_weight * mean_i TCR(z_i)
    TCR(Z) = ½ logdet(I_D + D / (B ε) Zᵀ Z)

    >>> import torch
    >>> import torch.nn.functional as F
    >>> from cassle.losses import emp_ssl_loss_func
    >>> z = [F.normalize(torch.randn(16, 8), dim=1) for _ in range(4)]
    >>> loss = emp_ssl_loss_func(z, invariance_weight=200.0, eps=0.2)

``ε`` enters as the official implementation writes it, ``D / (B ε)`` with
``ε = 0.2`` (the paper's equation squares it: pass ``eps=0.2 ** 2`` for that
value). The loss works on the batch it receives.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def total_coding_rate(z: torch.Tensor, eps: float = 0.2) -> torch.Tensor:
    """Total coding rate ``½ logdet(I + D/(B ε) ZᵀZ)`` of the rows of ``z`` (``B x D``), ε as in the official code.

    Computed on the smaller of the two Gram matrices (``logdet(I + c ZᵀZ) =
    logdet(I + c Z Zᵀ)``) in float32 or better.
    """
    if z.dim() != 2:
        raise ValueError(f"total_coding_rate: expected a B x D matrix, got shape {tuple(z.shape)}")
    if eps <= 0:
        raise ValueError(f"total_coding_rate: eps must be positive, got {eps}")
    b, d = z.shape
    zf = z if z.dtype in (torch.float32, torch.float64) else z.float()
    scale = d / (b * eps)
    gram = zf.T @ zf if d <= b else zf @ zf.T
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return 0.5 * torch.logdet(eye + scale * gram)


def emp_ssl_loss_func(
    z: Sequence[torch.Tensor],
    invariance_weight: float = 200.0,
    tcr_weight: float = 1.0,
    eps: float = 0.2,
) -> torch.Tensor:
    """EMP-SSL objective of ``n`` crops' projections.

    Args:
        z: ``n >= 2`` tensors ``B x D``, the (normalised) projections of crop
            ``i`` of every image in the batch (same image order in each).
        invariance_weight: weight of the cosine invariance term (paper: 200).
        tcr_weight: weight of the total coding rate term (paper: 1).
        eps: distortion ``ε`` of the coding rate (paper: 0.2).

    Returns:
        ``-invariance_weight * mean_i mean_b cos(z_i, z̄) - tcr_weight * mean_i TCR(z_i)``.
    """
    z = list(z)
    if len(z) < 2:
        raise ValueError(f"emp_ssl_loss_func: needs at least 2 crops per image, got {len(z)}")
    shape = z[0].shape
    if len(shape) != 2 or any(zi.shape != shape for zi in z):
        raise ValueError(
            f"emp_ssl_loss_func: every crop must be a B x D tensor of the same shape, got {[tuple(zi.shape) for zi in z]}"
        )
    if shape[0] < 1:
        raise ValueError("emp_ssl_loss_func: empty batch")
    mean = torch.stack(z).mean(dim=0)
    invariance = torch.stack([F.cosine_similarity(zi, mean, dim=1).mean() for zi in z]).mean()
    tcr = torch.stack([total_coding_rate(zi, eps) for zi in z]).mean()
    return -invariance_weight * invariance - tcr_weight * tcr
