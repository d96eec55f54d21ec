import math

import pytest
import torch

from cassle.losses import byol_loss_func


def test_identical_vectors_give_zero():
    p = torch.tensor([[1.0, 2.0], [-3.0, 0.5]])
    for simplified in (True, False):
        assert byol_loss_func(p, p.clone(), simplified).item() == pytest.approx(0.0, abs=1e-6)


def test_orthogonal_and_opposite_hand_computed():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z = torch.tensor([[0.0, 3.0], [0.0, -1.0]])  # row 0 orthogonal (cos 0), row 1 opposite (cos -1)
    # 2 - 2 * mean(0, -1) = 3
    for simplified in (True, False):
        assert byol_loss_func(p, z, simplified).item() == pytest.approx(3.0, abs=1e-6)


def test_matches_numpy_reference_and_both_forms_agree():
    g = torch.Generator().manual_seed(0)
    p = torch.randn(5, 7, generator=g, dtype=torch.float64)
    z = torch.randn(5, 7, generator=g, dtype=torch.float64)
    pn, zn = p.numpy(), z.numpy()
    cos = [float(pn[i] @ zn[i] / math.sqrt((pn[i] @ pn[i]) * (zn[i] @ zn[i]))) for i in range(5)]
    expected = 2 - 2 * sum(cos) / 5
    assert byol_loss_func(p, z, True).item() == pytest.approx(expected, rel=1e-10)
    assert byol_loss_func(p, z, False).item() == pytest.approx(expected, rel=1e-10)


def test_gradient_reaches_p_not_z():
    p = torch.randn(4, 3, requires_grad=True)
    z = torch.randn(4, 3, requires_grad=True)
    for simplified in (True, False):
        p.grad = None
        byol_loss_func(p, z, simplified).backward()
        assert p.grad is not None and p.grad.abs().sum() > 0
        assert z.grad is None


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        byol_loss_func(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(ValueError, match="2-D"):
        byol_loss_func(torch.randn(4), torch.randn(4))
