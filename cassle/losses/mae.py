"""MAE reconstruction loss: per-patch MSE on the masked patches only.

He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022
(https://arxiv.org/abs/2111.06377).

The image is cut into ``p x p`` patches (:func:`patchify`, row-major, pixels
ordered ``(row, col, channel)`` inside a patch); the decoder predicts every
patch's pixels and the loss is the mean squared error per patch, averaged over
the *masked* patches. With ``norm_pix_loss`` each target patch is first
standardised by its own mean and variance (the paper's better-performing
variant)::

    >>> import torch
    >>> from cassle.losses import mae_loss_func, patchify
    >>> imgs = torch.randn(2, 3, 16, 16)
    >>> target = patchify(imgs, 4)                 # 2 x 16 x 48
    >>> mask = torch.zeros(2, 16); mask[:, :12] = 1  # 1 = masked
    >>> loss = mae_loss_func(torch.randn(2, 16, 48), target, mask)
"""

from __future__ import annotations

import torch


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``B x C x H x W`` -> ``B x N x (p·p·C)`` with ``N = (H/p)(W/p)`` patches in row-major order."""
    if imgs.dim() != 4:
        raise ValueError(f"patchify: expected B x C x H x W images, got shape {tuple(imgs.shape)}")
    b, c, h, w = imgs.shape
    p = int(patch_size)
    if p <= 0 or h % p or w % p:
        raise ValueError(f"patchify: image size {h}x{w} is not divisible by the patch size {p}")
    x = imgs.reshape(b, c, h // p, p, w // p, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # b, gh, gw, p, p, c
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def mae_loss_func(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    norm_pix_loss: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Masked-patch reconstruction loss.

    Args:
        pred: ``B x N x P`` predicted pixels of every patch.
        target: ``B x N x P`` true pixels (:func:`patchify` of the images).
        mask: ``B x N``, 1 for masked (to reconstruct) patches, 0 for visible ones.
        norm_pix_loss: standardise each target patch (mean 0, variance 1, with
            ``eps`` added to the unbiased variance) before the error.

    Returns:
        ``sum_{b,n} mask · mean_P (pred - target)² / sum mask``.
    """
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(
            f"mae_loss_func: pred and target must both be B x N x P, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if mask.shape != pred.shape[:2]:
        raise ValueError(f"mae_loss_func: mask must be B x N = {tuple(pred.shape[:2])}, got {tuple(mask.shape)}")
    mask = mask.to(pred.dtype)
    if float(mask.sum()) <= 0:
        raise ValueError("mae_loss_func: no patch is masked (mask_ratio must be > 0 in training)")
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + eps) ** 0.5
    per_patch = (pred - target).pow(2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()
