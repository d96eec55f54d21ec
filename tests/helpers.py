"""Helpers shared by the end-to-end tests (imported by tests, never a test module itself)."""

from __future__ import annotations

#: the smallest main_continual.py run on the embedded digits (resnet9 of width 4 at 8 px)
TINY = ['--dataset', 'digits', '--encoder', 'resnet9', '--base_width', '4', '--crop_size', '8', '--method', 'barlow_twins', '--proj_hidden_dim', '32', '--output_dim', '32', '--batch_size', '64', '--lr', '0.05', '--warmup_epochs', '0', '--num_workers', '0', '--no_progress_bar', '--probes', 'knn', 'ridge', '--seed', '3']  # fmt: skip
