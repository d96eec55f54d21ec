"""Helpers shared by the end-to-end tests (imported by tests, never a test module itself)."""

from __future__ import annotations

#: the smallest main_continual.py run on the embedded digits (resnet9 of width 4 at 8 px)
TINY = ['--dataset', 'digits', '--encoder', 'resnet9', '--base_width', '4', '--crop_size', '8', '--method', 'barlow_twins', '--proj_hidden_dim', '32', '--output_dim', '32', '--batch_size', '64', '--lr', '0.05', '--warmup_epochs', '0', '--num_workers', '0', '--no_progress_bar', '--probes', 'knn', 'ridge', '--seed', '3']  # fmt: skip


#: the CaSSLe distillation family each shipped method is meant to have (its paper's / the reference's, or the
#: experiment written in its docstring): pins the methods' own ``family`` declarations; a new method is covered by
#: the registry-driven tests without an entry here
PUBLISHED_FAMILIES = {
    "barlow_twins": "decorrelative",
    "byol": "predictive",
    "simsiam": "predictive",
    "nnbyol": "predictive",
    "nnsiam": "predictive",
    "emp_ssl": "predictive",
    "ressl": "predictive",
    "vicreg": "predictive_mse",
    "vibcreg": "predictive_mse",
    "simclr": "contrastive",
    "supcon": "contrastive",
    "mocov2plus": "contrastive",
    "mocov3": "contrastive",
    "nnclr": "contrastive",
    "all4one": "contrastive",
    "wmse": "decorrelative",
    "swav": "knowledge",
    "dino": "knowledge",
    "deepclusterv2": "knowledge",
    "mae": "reconstructive",
}


def perturbed_backbone_state(encoder: str, crop_size: int, base_width: int, seed: int) -> dict:
    """The state of a freshly built backbone whose BatchNorm running statistics were moved off their defaults
    (so a load that skipped them, or changed them, shows): what the checkpoint-writing tests save."""
    import torch
    from torch import nn

    from cassle.backbones import build_backbone

    torch.manual_seed(seed)
    backbone = build_backbone(encoder, crop_size, base_width)
    with torch.no_grad():
        for m in backbone.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.9, 1.1)
    return {k: v.clone() for k, v in backbone.state_dict().items()}


def write_foreign_checkpoint(path, encoder="resnet9", crop_size=8, base_width=4, prefix="backbone.", **top):
    """A Lightning checkpoint as solo-learn (``backbone.*``) or CaSSLe (``encoder.*``, ``prefix``) write it: the
    ``state_dict`` of the whole module (backbone with BN statistics moved, projector, momentum copy, classifier)
    plus Lightning's bookkeeping, no cassle ``format``. Returns the backbone's state (what must be loaded)."""
    import torch

    state = perturbed_backbone_state(encoder, crop_size, base_width, seed=11)
    sd = {f"{prefix}{k}": v for k, v in state.items()}
    sd |= {f"momentum_{prefix}{k}": torch.zeros_like(v) for k, v in state.items()}  # must be ignored
    sd |= {"projector.0.weight": torch.randn(8, 8), "classifier.weight": torch.randn(10, 8)}
    ckpt = {"epoch": 9, "global_step": 90, "pytorch-lightning_version": "1.9.0", "state_dict": sd, **top}
    torch.save(ckpt, path)
    return state


def central_differences(f, x, eps: float = 1e-6):
    """The gradient of the scalar ``f`` at the numpy array ``x`` by central differences (float64 tests compare
    autograd with it, ``f`` being an independent formula written from a paper)."""
    import numpy as np

    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        grad[idx] = (f(xp) - f(xm)) / (2 * eps)
    return grad
