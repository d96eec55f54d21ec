"""DINO: self-distillation with a centred, sharpened EMA teacher.

Caron et al., "Emerging Properties in Self-Supervised Vision Transformers",
ICCV 2021 (https://arxiv.org/abs/2104.14294).

Student and teacher map every view to ``K`` prototype scores. The teacher's
scores are *centred* (minus a running mean ``c``) and *sharpened* (a low
temperature ``τ_t``); the student's are softened with ``τ_s``. For every
teacher view ``t`` and every *other* student view ``s`` (paper §3.1)::

    P_t = softmax((g_t(x_t) - c) / τ_t)              (no gradient)
    H(P_t, P_s) = -Σ_k P_t[k] · log softmax(g_s(x_s) / τ_s)[k]
    L = mean over pairs (t, s), s ≠ t, of mean_b H

and after the step the centre follows the teacher's batch mean (paper §3.1, "Avoiding collapse")::

    c ← m · c + (1 - m) · mean over the global batch of g_t(x)

``τ_t`` warms up linearly from ``warmup`` to its final value over the first
epochs (paper, implementation details: 0.04 → 0.07), see :func:`dino_teacher_temperature`.

::

    >>> import torch
    >>> from cassle.losses.dino import dino_center_update, dino_loss_func
    >>> student = [torch.randn(8, 10), torch.randn(8, 10)]   # prototype scores per view
    >>> teacher = [torch.randn(8, 10), torch.randn(8, 10)]
    >>> center = torch.zeros(1, 10)
    >>> loss = dino_loss_func(student, teacher, center, student_temperature=0.1, teacher_temperature=0.04)
    >>> center = dino_center_update(center, teacher, momentum=0.9)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

__all__ = ["dino_center_update", "dino_loss_func", "dino_teacher_temperature"]


def _check_views(name: str, student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> None:
    if len(student) < 2:
        raise ValueError(f"{name}: needs at least 2 student views, got {len(student)}")
    if not 1 <= len(teacher) <= len(student):
        raise ValueError(
            f"{name}: got {len(teacher)} teacher views for {len(student)} student views; "
            "expected between 1 and the number of student views"
        )
    shape = student[0].shape
    if len(shape) != 2 or any(t.shape != shape for t in (*student, *teacher)):
        raise ValueError(
            f"{name}: every student and teacher view must be the same B x K shape, got "
            f"{[tuple(t.shape) for t in student]} and {[tuple(t.shape) for t in teacher]}"
        )


def _check_center(name: str, center: torch.Tensor, k: int) -> None:
    if center.shape not in ((k,), (1, k)):
        raise ValueError(f"{name}: center must have shape ({k},) or (1, {k}), got {tuple(center.shape)}")


def dino_loss_func(
    student_logits: Sequence[torch.Tensor],
    teacher_logits: Sequence[torch.Tensor],
    center: torch.Tensor,
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.07,
) -> torch.Tensor:
    """DINO's cross-entropy between the centred, sharpened teacher and the student, over cross-view pairs.

    Args:
        student_logits: ``V >= 2`` tensors ``B x K`` of student prototype scores, one per view (gradients flow).
        teacher_logits: ``T <= V`` tensors ``B x K`` of teacher scores; entry ``t`` belongs to view ``t``
            (DINO's teacher sees only the global crops: the first views). Detached inside.
        center: ``K`` or ``1 x K`` running centre subtracted from the teacher's scores.
        student_temperature: ``τ_s``.
        teacher_temperature: ``τ_t`` of the current epoch (see :func:`dino_teacher_temperature`).

    Returns:
        Mean over pairs ``(t, s)`` with ``s != t`` of
        ``-mean_b Σ_k softmax((teacher_t - c) / τ_t)[b, k] · log_softmax(student_s / τ_s)[b, k]``.

    Raises:
        ValueError: on fewer than 2 student views, more teacher than student views, mismatched shapes, a centre
            of the wrong shape or a non-positive temperature.
    """
    _check_views("dino_loss_func", student_logits, teacher_logits)
    _check_center("dino_loss_func", center, student_logits[0].shape[1])
    if student_temperature <= 0 or teacher_temperature <= 0:
        raise ValueError(
            f"dino_loss_func: temperatures must be > 0, got student {student_temperature}, "
            f"teacher {teacher_temperature}"
        )
    c = center.detach().reshape(1, -1)
    targets = [torch.softmax((t.detach() - c) / teacher_temperature, dim=-1) for t in teacher_logits]
    log_preds = [torch.log_softmax(s / student_temperature, dim=-1) for s in student_logits]
    terms = [
        -(q * log_p).sum(dim=-1).mean()
        for t, q in enumerate(targets)
        for s, log_p in enumerate(log_preds)
        if s != t  # a view is never its own target
    ]
    return torch.stack(terms).mean()


@torch.no_grad()
def dino_center_update(
    center: torch.Tensor,
    teacher_logits: Sequence[torch.Tensor],
    momentum: float = 0.9,
    world_size: int = 1,
) -> torch.Tensor:
    """The centre after one step: ``momentum · center + (1 - momentum) · global mean of the teacher scores``.

    The mean runs over every row of every teacher view. With ``world_size > 1`` and ``torch.distributed``
    initialised, the sum is all-reduced and divided by ``world_size`` × the local row count (the global batch
    mean for equal per-process batches, as in the paper's code).

    Args:
        center: ``K`` or ``1 x K`` current centre (not modified).
        teacher_logits: ``T`` tensors ``B x K`` of teacher scores.
        momentum: EMA factor ``m`` in ``[0, 1]``.
        world_size: number of processes sharing the batch.

    Returns:
        The new centre, same shape and dtype as ``center``.
    """
    if not teacher_logits:
        raise ValueError("dino_center_update: needs at least one teacher view")
    k = teacher_logits[0].shape[-1]
    if any(t.dim() != 2 or t.shape[1] != k for t in teacher_logits):
        raise ValueError(
            f"dino_center_update: teacher views must be B x K, got {[tuple(t.shape) for t in teacher_logits]}"
        )
    _check_center("dino_center_update", center, k)
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"dino_center_update: momentum must be in [0, 1], got {momentum}")
    rows = torch.cat(list(teacher_logits)).to(torch.promote_types(center.dtype, torch.float32))
    batch_sum = rows.sum(dim=0)
    count = rows.shape[0]
    if world_size > 1 and dist.is_available() and dist.is_initialized():
        dist.all_reduce(batch_sum)
        count = count * world_size
    batch_mean = (batch_sum / count).reshape(center.shape)
    return (momentum * center + (1.0 - momentum) * batch_mean).to(center.dtype)


def dino_teacher_temperature(epoch: int, warmup_temperature: float, temperature: float, warmup_epochs: int) -> float:
    """Teacher temperature of (0-based) ``epoch``: linear warm-up, then constant.

    Epochs ``0 .. warmup_epochs - 1`` take evenly spaced values from ``warmup_temperature`` to ``temperature``
    (both ends included, the paper code's ``linspace``); later epochs use ``temperature``. ``warmup_epochs``
    ``<= 0`` means no warm-up.
    """
    if warmup_temperature <= 0 or temperature <= 0:
        raise ValueError(
            f"dino_teacher_temperature: temperatures must be > 0, got {warmup_temperature} and {temperature}"
        )
    if epoch >= warmup_epochs:
        return float(temperature)
    if warmup_epochs == 1:
        return float(warmup_temperature)
    e = max(int(epoch), 0)
    return float(warmup_temperature + (temperature - warmup_temperature) * e / (warmup_epochs - 1))
