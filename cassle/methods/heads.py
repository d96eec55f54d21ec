"""The MLP heads of the SSL methods, in one place (projectors, predictors, the strategies' predictors).

Each builder returns an ``nn.Sequential``: :func:`mlp2` (``Linear → BN → ReLU → Linear``), :func:`mlp2_nobn`
(no BN), :func:`mlp3` (two hidden layers) and :func:`mlp3_bnout` (MoCo v3's form: bias-free hidden linears and a
non-affine BN on the output). A method names its head in ``build_projector``; no list of users is kept here.
"""

from __future__ import annotations

import torch.nn as nn

__all__ = ["mlp2", "mlp2_nobn", "mlp3", "mlp3_bnout"]


def _hidden(in_dim: int, out_dim: int, bn: bool, bias: bool = True, act: type[nn.Module] = nn.ReLU) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim, bias=bias)]
    if bn:
        layers.append(nn.BatchNorm1d(out_dim))
    layers.append(nn.ReLU(inplace=True) if act is nn.ReLU else act())
    return layers


def mlp2(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """``Linear -> BatchNorm1d -> ReLU -> Linear``."""
    return nn.Sequential(*_hidden(in_dim, hidden_dim, bn=True), nn.Linear(hidden_dim, out_dim))


def mlp2_nobn(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """``Linear -> ReLU -> Linear``."""
    return nn.Sequential(*_hidden(in_dim, hidden_dim, bn=False), nn.Linear(hidden_dim, out_dim))


def mlp3(in_dim: int, hidden_dim: int, out_dim: int, act: type[nn.Module] = nn.ReLU, bn: bool = True) -> nn.Sequential:
    """``(Linear -> BatchNorm1d -> act) x 2 -> Linear`` (``act``: ReLU; DINO's head uses GELU; ``bn=False`` drops the
    BatchNorms)."""
    return nn.Sequential(
        *_hidden(in_dim, hidden_dim, bn=bn, act=act),
        *_hidden(hidden_dim, hidden_dim, bn=bn, act=act),
        nn.Linear(hidden_dim, out_dim),
    )


def mlp3_bnout(in_dim: int, hidden_dim: int, out_dim: int, layers: int = 3) -> nn.Sequential:
    """``(Linear -> BatchNorm1d -> ReLU) x (layers - 1) -> Linear -> BatchNorm1d(affine=False)``: MoCo v3's
    projector (``layers`` 3) and predictor (``layers`` 2); the hidden linears have no bias (BN follows)."""
    if layers < 2:
        raise ValueError(f"mlp3_bnout needs at least 2 layers, got {layers}")
    mods: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        mods += _hidden(dim, hidden_dim, bn=True, bias=False)
        dim = hidden_dim
    mods += [nn.Linear(dim, out_dim, bias=False), nn.BatchNorm1d(out_dim, affine=False)]
    return nn.Sequential(*mods)
