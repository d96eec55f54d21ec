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
