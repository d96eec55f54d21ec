"""ReSSL loss: match the student's relation to a queue with the teacher's sharper one.

Zheng et al., "ReSSL: Relational Self-Supervised Learning with Weak Augmentation", NeurIPS 2021
(https://arxiv.org/abs/2107.09282).

With ``q`` the student's projection of the strongly augmented view, ``k`` the momentum teacher's projection
of the weakly augmented view and ``Q`` a queue of ``K`` past teacher projections (all l2-normalised), the
relations of a sample to the queue are two distributions over the ``K`` rows::

    p_i = softmax_j(k · Q_j / T_k)      (teacher, no gradient, sharper: T_k < T_q)
    s_i = softmax_j(q · Q_j / T_q)      (student)
    loss = - mean_i  sum_j  p_ij log s_ij

::

    >>> import torch
    >>> from cassle.losses.ressl import ressl_loss_func
    >>> q, k, queue = torch.randn(8, 16), torch.randn(8, 16), torch.randn(64, 16)
    >>> loss = ressl_loss_func(q, k, queue, temperature_q=0.1, temperature_k=0.04)
    >>> bool(loss > 0)
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cassle.losses.checks import check_pair

__all__ = ["ressl_loss_func"]


def _wide(x: torch.Tensor) -> torch.dtype:
    """At least float32 for the softmaxes (half-precision logits / 0.04 lose too many digits)."""
    return torch.promote_types(x.dtype, torch.float32)


def ressl_loss_func(
    q: torch.Tensor,
    k: torch.Tensor,
    queue: torch.Tensor,
    temperature_q: float = 0.1,
    temperature_k: float = 0.04,
) -> torch.Tensor:
    """Cross-entropy between the teacher's and the student's relation distributions over ``queue``.

    Args:
        q: ``B x D`` student projections of the strong view (gradients flow); l2-normalised here.
        k: ``B x D`` teacher projections of the weak view; detached and l2-normalised here.
        queue: ``K x D`` past teacher projections (detached; the method stores unit-norm rows and they are
            normalised again here, which changes nothing for them).
        temperature_q: student temperature (paper and solo-learn: 0.1).
        temperature_k: teacher temperature, smaller than ``temperature_q`` for a sharper target (0.04).

    Returns:
        Scalar loss ``- mean_i sum_j p_ij log s_ij``.

    Raises:
        ValueError: ``q``/``k`` not the same ``B x D``, ``queue`` not ``K x D`` with ``K >= 1``, or a
            temperature that is not > 0.
    """
    check_pair("ressl_loss_func", q, k)
    if queue.dim() != 2 or queue.shape[0] < 1 or queue.shape[1] != q.shape[1]:
        raise ValueError(
            f"ressl_loss_func: queue must be K x D (K >= 1) with the D of q, got {tuple(queue.shape)} "
            f"for q {tuple(q.shape)}"
        )
    if not temperature_q > 0 or not temperature_k > 0:
        raise ValueError(
            f"ressl_loss_func: temperatures must be > 0, got temperature_q={temperature_q}, "
            f"temperature_k={temperature_k}"
        )
    bank = F.normalize(queue.detach(), dim=-1)
    student = F.normalize(q, dim=-1) @ bank.to(q.dtype).T
    with torch.no_grad():
        teacher = F.normalize(k.detach(), dim=-1) @ bank.to(k.dtype).T
        target = F.softmax(teacher.to(_wide(teacher)) / temperature_k, dim=1)
    log_s = F.log_softmax(student.to(_wide(student)) / temperature_q, dim=1)
    return -(target * log_s).sum(dim=1).mean()
