import math

import pytest
import torch
import torch.nn.functional as F

from cassle.losses import simclr_loss_func


def _double_loop(z, idx, t):
    z = [v / math.sqrt(float(v @ v)) for v in z.double()]
    m = len(z)
    per_anchor = []
    for i in range(m):
        denom = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(m) if k != i)
        pos = [j for j in range(m) if j != i and int(idx[j]) == int(idx[i])]
        if not pos:
            continue
        terms = [float(z[i] @ z[j]) / t - math.log(denom) for j in pos]
        per_anchor.append(-sum(terms) / len(terms))
    return sum(per_anchor) / len(per_anchor)


def test_two_views_matches_double_loop():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(10, 6, generator=g)
    idx = torch.arange(5).repeat(2)
    got = simclr_loss_func(z, idx, temperature=0.2)
    assert got.item() == pytest.approx(_double_loop(z, idx, 0.2), rel=1e-5)


def test_one_positive_equals_nt_xent_cross_entropy():
    g = torch.Generator().manual_seed(3)
    b = 4
    z = torch.randn(2 * b, 5, generator=g, dtype=torch.float64)
    zn = F.normalize(z, dim=1)
    logits = zn @ zn.T / 0.5
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(b, 2 * b), torch.arange(b)])
    expected = F.cross_entropy(logits, targets)
    got = simclr_loss_func(z, torch.arange(b).repeat(2), temperature=0.5)
    assert got.item() == pytest.approx(expected.item(), rel=1e-10)


def test_supcon_targets_and_anchor_without_positive():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(7, 4, generator=g)
    targets = torch.tensor([0, 1, 0, 2, 1, 0, 3])  # classes 2 and 3 have a single row
    got = simclr_loss_func(z, targets, temperature=0.3)
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(_double_loop(z, targets, 0.3), rel=1e-5)


def test_no_positive_at_all_is_zero_and_differentiable():
    z = torch.randn(3, 4, requires_grad=True)
    loss = simclr_loss_func(z, torch.arange(3))
    assert loss.item() == 0.0
    loss.backward()
    assert z.grad is not None


def test_three_views_and_gradient():
    z = torch.randn(9, 4, requires_grad=True)
    idx = torch.arange(3).repeat(3)
    loss = simclr_loss_func(z, idx, temperature=0.2)
    assert loss.item() == pytest.approx(_double_loop(z.detach(), idx, 0.2), rel=1e-5)
    loss.backward()
    assert z.grad.abs().sum() > 0


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        simclr_loss_func(torch.randn(4, 3), torch.arange(5))
    with pytest.raises(ValueError):
        simclr_loss_func(torch.randn(4), torch.arange(4))
