"""EMP-SSL loss against an independent numpy computation (eigenvalues of the other Gram matrix)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cassle.losses import emp_ssl_loss_func, total_coding_rate


def _numpy_tcr(z: np.ndarray, eps: float) -> float:
    # Sylvester: logdet(I_D + c ZᵀZ) = sum log(1 + c λ) over eigenvalues λ of Z Zᵀ (B x B)
    b, d = z.shape
    lam = np.linalg.eigvalsh(z @ z.T)
    return 0.5 * float(np.sum(np.log1p(d / (b * eps) * np.clip(lam, 0, None))))


def _numpy_emp(zs: list[np.ndarray], inv_w: float, tcr_w: float, eps: float) -> float:
    n, b = len(zs), zs[0].shape[0]
    mean = sum(zs) / n
    cos = 0.0
    for z in zs:
        for i in range(b):
            cos += z[i] @ mean[i] / (np.linalg.norm(z[i]) * np.linalg.norm(mean[i]))
    cos /= n * b
    tcr = sum(_numpy_tcr(z, eps) for z in zs) / n
    return -inv_w * cos - tcr_w * tcr


def test_tcr_hand_computed_orthonormal_rows():
    # B = D = 2, Z = I: ZᵀZ = I, TCR = ½ · 2 · log(1 + 2/(2·0.2)) = log(6)  (the official code's ε, not ε²)
    z = torch.eye(2, dtype=torch.float64)
    assert total_coding_rate(z, eps=0.2).item() == pytest.approx(math.log(6.0), rel=1e-12)


def test_tcr_repeated_basis_closed_form():
    # Z = k copies of the D-dim identity (B = kD): ZᵀZ = k·I, scale D/(kD·ε): TCR = D/2 · log(1 + 1/ε)
    d, k, eps = 5, 3, 0.2
    z = torch.eye(d, dtype=torch.float64).repeat(k, 1)
    assert total_coding_rate(z, eps=eps).item() == pytest.approx(d / 2 * math.log(1 + 1 / eps), rel=1e-12)


def test_identical_crops_give_perfect_invariance():
    z = F.normalize(torch.randn(6, 4, dtype=torch.float64), dim=1)
    loss = emp_ssl_loss_func([z, z.clone(), z.clone()], invariance_weight=200.0, tcr_weight=0.0)
    assert loss.item() == pytest.approx(-200.0, rel=1e-12)


@pytest.mark.parametrize("b,d", [(6, 4), (3, 5)])
def test_matches_numpy_reference(b, d):
    rng = np.random.default_rng(1)
    zs = [rng.normal(size=(b, d)) for _ in range(4)]
    zs = [z / np.linalg.norm(z, axis=1, keepdims=True) for z in zs]
    got = emp_ssl_loss_func([torch.from_numpy(z) for z in zs], invariance_weight=200.0, tcr_weight=1.0, eps=0.2)
    assert got.item() == pytest.approx(_numpy_emp(zs, 200.0, 1.0, 0.2), rel=1e-9)


def test_fixed_input_value():
    # a fixed, hand-checkable input: two crops of a 2-sample batch in 2-D
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    z2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    # mean rows are (½, ½): cos = 1/√2 for every row; both crops are orthonormal: TCR = log 6
    expected = -200.0 / math.sqrt(2.0) - math.log(6.0)
    assert emp_ssl_loss_func([z1, z2]).item() == pytest.approx(expected, rel=1e-12)


def test_differentiable_and_errors():
    z = [torch.randn(8, 4, requires_grad=True) for _ in range(3)]
    emp_ssl_loss_func(z).backward()
    assert all(zi.grad.abs().sum() > 0 for zi in z)
    with pytest.raises(ValueError, match="at least 2 crops"):
        emp_ssl_loss_func([torch.randn(4, 3)])
    with pytest.raises(ValueError, match="same shape"):
        emp_ssl_loss_func([torch.randn(4, 3), torch.randn(4, 2)])
    with pytest.raises(ValueError, match="eps"):
        total_coding_rate(torch.randn(4, 3), eps=0.0)
