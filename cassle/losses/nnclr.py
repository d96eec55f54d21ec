"""NNCLR loss: InfoNCE with the nearest neighbour from a support set as the positive.

Dwibedi et al., "With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning of Visual
Representations", ICCV 2021 (https://arxiv.org/abs/2104.14548).

For sample ``i`` of a batch, ``nn_i = NN(z_i, Q)`` is the support-set row nearest to view 1's projection (a
lookup, so no gradient reaches it) and ``p_k`` the predictions of view 2 of every sample ``k`` of the batch.
With l2-normalised vectors and temperature ``tau``::

    L_i = -log( exp(nn_i · p_i / tau) / sum_k exp(nn_i · p_k / tau) ),      L = mean_i L_i

The method symmetrises it, ``(L(nn_1, p_2) + L(nn_2, p_1)) / 2``. On several processes ``p`` is the global
batch (gathered, with gradients) and ``nn`` this process's rows; ``offset`` says where this process's samples
sit in ``p`` (``rank * B``), as solo-learn's multi-GPU form does. The mean of the per-process losses is then
the single-process loss of the global batch::

    >>> import torch
    >>> from cassle.losses.nnclr import nnclr_loss_func
    >>> nn, p = torch.randn(8, 16), torch.randn(8, 16)
    >>> loss = nnclr_loss_func(nn, p, temperature=0.1)
    >>> bool(loss > 0)
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nnclr_loss_func(nn: torch.Tensor, p: torch.Tensor, temperature: float = 0.1, offset: int = 0) -> torch.Tensor:
    """NNCLR's InfoNCE of nearest neighbours against predictions.

    Args:
        nn: ``B x D`` nearest neighbours of one view's projections (detached inside: the lookup carries no
            gradient).
        p: ``M x D`` predictions of the other view, ``M >= B``: this process's batch, or the global batch
            gathered from every process (gradients flow).
        temperature: softmax temperature (the paper's 0.1; the method's CIFAR default is 0.2).
        offset: row of ``p`` that is the positive of ``nn``'s first row; row ``i`` of ``nn`` pairs with row
            ``offset + i`` of ``p`` (``rank * B`` for a gathered ``p``).

    Returns:
        Scalar loss, the mean over the ``B`` rows of ``nn``.

    Raises:
        ValueError: for tensors that are not 2-D, different widths, an ``offset`` that puts a positive outside
            ``p``, or a temperature that is not positive.
    """
    if nn.dim() != 2 or p.dim() != 2:
        raise ValueError(
            f"nnclr_loss_func: nn and p must be 2-D (batch x dim), got shapes {tuple(nn.shape)} and {tuple(p.shape)}"
        )
    if nn.shape[1] != p.shape[1]:
        raise ValueError(f"nnclr_loss_func: nn and p must have the same width, got {nn.shape[1]} and {p.shape[1]}")
    b, m = nn.shape[0], p.shape[0]
    if offset < 0 or offset + b > m:
        raise ValueError(
            f"nnclr_loss_func: offset {offset} with {b} neighbours needs rows {offset}..{offset + b - 1} of p, "
            f"which has {m} rows"
        )
    if temperature <= 0:
        raise ValueError(f"nnclr_loss_func: temperature must be > 0, got {temperature}")
    logits = F.normalize(nn.detach(), dim=-1) @ F.normalize(p, dim=-1).T / temperature
    positives = torch.arange(offset, offset + b, device=p.device)
    return F.cross_entropy(logits, positives)
