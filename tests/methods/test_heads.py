"""The shared MLP heads: layer structure and output shapes."""

import pytest
import torch
import torch.nn as nn

from cassle.methods.heads import mlp2, mlp2_nobn, mlp3, mlp3_bnout


def _kinds(m: nn.Sequential) -> list[str]:
    return [type(x).__name__ for x in m]


def test_layer_structure():
    assert _kinds(mlp2(4, 8, 3)) == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert _kinds(mlp2_nobn(4, 8, 3)) == ["Linear", "ReLU", "Linear"]
    assert _kinds(mlp3(4, 8, 3)) == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear"]
    head = mlp3_bnout(4, 8, 3)
    assert _kinds(head) == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear", "BatchNorm1d"]
    assert head[0].bias is None and head[-1].weight is None  # bias-free hidden linear, non-affine output BN
    assert _kinds(mlp3_bnout(4, 8, 3, layers=2)) == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    with pytest.raises(ValueError, match="at least 2"):
        mlp3_bnout(4, 8, 3, layers=1)


@pytest.mark.parametrize("build", [mlp2, mlp2_nobn, mlp3, mlp3_bnout])
def test_output_shape(build):
    assert build(5, 16, 7)(torch.randn(6, 5)).shape == (6, 7)
