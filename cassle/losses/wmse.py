"""W-MSE loss: MSE between positives after whitening sub-batches of the projections.

Ermolov et al., "Whitening for Self-Supervised Representation Learning", ICML 2021
(https://arxiv.org/abs/2007.06346).

The ``N`` rows of every view's projections are split, by one random permutation shared by the views, into
sub-batches of ``w`` rows (``w`` larger than the projection width ``D``, so that the sub-batch
covariance is full rank). Each view's sub-batch is whitened by the inverse of the Cholesky factor of its
covariance (:func:`whiten`)::

    Σ = (1 - ε) · cov(V) + ε · I = L Lᵀ,      W(V) = (V - mean V) · L⁻ᵀ      (so cov W(V) = I)

and the whitened positives are compared with the MSE of their l2-normalised vectors,
``2 - 2 · mean cos(W(V_a)_i, W(V_b)_i)`` (:func:`normalized_mse`), averaged over the view pairs and over
``whitening_iters`` random partitions (:func:`wmse_loss_func`). Whitening needs no negatives and prevents the
collapse that the MSE alone would find.

::

    >>> import torch
    >>> from cassle.losses.wmse import whiten, wmse_loss_func
    >>> v1, v2 = torch.randn(16, 4), torch.randn(16, 4)
    >>> torch.allclose(torch.cov(whiten(v1).T), torch.eye(4), atol=1e-4)
    True
    >>> loss = wmse_loss_func([v1, v2], whitening_size=8)  # two sub-batches of 8 rows, in [0, 4]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cassle.losses.checks import check_pair

__all__ = ["normalized_mse", "subbatch_partition", "whiten", "wmse_loss_func"]


def whiten(x: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Cholesky whitening of one sub-batch: ``(x - mean x) · L⁻ᵀ`` with ``L Lᵀ = (1 - eps) cov(x) + eps I``.

    The covariance is the unbiased one (``/ (n - 1)``), as in the reference ``Whitening2d``. Computed in at
    least float32 (autocast off), as the reference does under mixed precision; differentiable.

    Args:
        x: ``n x D`` rows of one view's sub-batch, ``n >= 2``.
        eps: shrinkage towards the identity in ``[0, 1)`` (the reference's ``w_eps``, 0 by default).

    Returns:
        ``n x D`` whitened rows (dtype at least float32) with identity sample covariance when ``eps`` is 0.

    Raises:
        ValueError: ``x`` not 2-D with at least 2 rows, ``eps`` outside ``[0, 1)``, or a covariance that is
            not positive definite (fewer than ``D + 1`` rows, or collapsed projections): raise the sub-batch
            size or ``eps``.
    """
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"whiten: expected an n x D sub-batch with n >= 2 rows, got shape {tuple(x.shape)}")
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"whiten: eps must be in [0, 1), got {eps}")
    n, d = x.shape
    with torch.autocast(device_type=x.device.type, enabled=False):
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        centred = xf - xf.mean(dim=0, keepdim=True)
        eye = torch.eye(d, dtype=xf.dtype, device=xf.device)
        cov = (1.0 - eps) * (centred.T @ centred) / (n - 1) + eps * eye
        chol, info = torch.linalg.cholesky_ex(cov)
        if int(info) != 0:
            raise ValueError(
                f"whiten: the {d} x {d} covariance of a sub-batch of {n} rows is not positive definite "
                "(the sub-batch needs more rows than the projection has dimensions, and projections that have "
                "not collapsed): raise --whitening_size or set --whitening_eps > 0"
            )
        inv_chol = torch.linalg.solve_triangular(chol, eye, upper=False)  # L⁻¹
        return centred @ inv_chol.T


def normalized_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``mean_i ||a_i/|a_i| - b_i/|b_i|||² = 2 - 2 · mean_i cos(a_i, b_i)``; gradients flow into both inputs.

    Raises:
        ValueError: ``a`` and ``b`` are not 2-D tensors of the same shape.
    """
    check_pair("normalized_mse", a, b)
    return 2 - 2 * (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(dim=-1).mean()


def subbatch_partition(n: int, whitening_size: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """A random partition of ``range(n)`` into ``n // whitening_size`` sub-batches of (near) equal size.

    With ``whitening_size`` dividing ``n`` every sub-batch has exactly ``whitening_size`` rows (the
    reference's ``randperm(n).view(-1, w)``); otherwise the remainder is spread over the sub-batches, which
    then hold ``w`` or ``w + 1`` rows (the reference refuses such batches).

    Raises:
        ValueError: ``whitening_size`` not in ``[2, n]``.
    """
    if not 2 <= whitening_size <= n:
        raise ValueError(f"subbatch_partition: whitening_size must be in [2, {n}] (the batch), got {whitening_size}")
    perm = torch.randperm(n, generator=generator)
    return list(torch.tensor_split(perm, n // whitening_size))


def wmse_loss_func(
    views: Sequence[torch.Tensor],
    whitening_size: int,
    whitening_iters: int = 1,
    eps: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The W-MSE objective of ``V >= 2`` views' projections.

    For each of ``whitening_iters`` random partitions (:func:`subbatch_partition`, shared by the views) every
    view's sub-batches are whitened (:func:`whiten`), then :func:`normalized_mse` is taken for every pair of
    views; the result is the mean over iterations and pairs.

    Args:
        views: ``V`` tensors ``N x D`` (row ``i`` of every view is the same image).
        whitening_size: rows per sub-batch ``w`` (``2 <= w <= N``; ``w > D`` for a full-rank covariance).
        whitening_iters: number of random partitions (the reference's ``w_iter``, 1).
        eps: shrinkage of :func:`whiten`.
        generator: the torch generator of the permutations (the global one when ``None``).

    Returns:
        Scalar loss in ``[0, 4]``.

    Raises:
        ValueError: fewer than 2 views, views of different shapes, ``whitening_iters < 1``, or a bad
            ``whitening_size`` / ``eps`` (see :func:`subbatch_partition`, :func:`whiten`).
    """
    if len(views) < 2:
        raise ValueError(f"wmse_loss_func: needs at least 2 views, got {len(views)}")
    for v in views[1:]:
        check_pair("wmse_loss_func", views[0], v)
    if whitening_iters < 1:
        raise ValueError(f"wmse_loss_func: whitening_iters must be at least 1, got {whitening_iters}")
    n = views[0].shape[0]
    losses = []
    for _ in range(whitening_iters):
        parts = subbatch_partition(n, whitening_size, generator)
        whitened = []
        for v in views:
            out = torch.empty(v.shape, dtype=torch.promote_types(v.dtype, torch.float32), device=v.device)
            for idx in parts:
                idx = idx.to(v.device)
                out = out.index_copy(0, idx, whiten(v[idx], eps))
            whitened.append(out)
        for a in range(len(views) - 1):
            for b in range(a + 1, len(views)):
                losses.append(normalized_mse(whitened[a], whitened[b]))
    return torch.stack(losses).mean()
