import pytest
import torch

from cassle.losses import simsiam_loss_func


def test_hand_computed_cases():
    p = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    assert simsiam_loss_func(p, 3 * p).item() == pytest.approx(-1.0, abs=1e-6)
    z = torch.tensor([[1.0, -1.0], [1.0, 1.0]])  # cos 0 and cos 1/sqrt(2)
    assert simsiam_loss_func(p, z).item() == pytest.approx(-(2**-0.5) / 2, abs=1e-6)


def test_loop_reference():
    g = torch.Generator().manual_seed(1)
    p = torch.randn(6, 4, generator=g, dtype=torch.float64)
    z = torch.randn(6, 4, generator=g, dtype=torch.float64)
    total = 0.0
    for i in range(6):
        total += float(p[i].dot(z[i]) / (p[i].norm() * z[i].norm()))
    assert simsiam_loss_func(p, z).item() == pytest.approx(-total / 6, rel=1e-10)


def test_gradient_reaches_p_not_z():
    p = torch.randn(4, 3, requires_grad=True)
    z = torch.randn(4, 3, requires_grad=True)
    simsiam_loss_func(p, z).backward()
    assert p.grad.abs().sum() > 0
    assert z.grad is None


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        simsiam_loss_func(torch.randn(3, 4), torch.randn(2, 4))
