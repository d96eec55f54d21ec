import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cassle.losses import (
    DISTILL_LOSSES,
    barlow_loss_func,
    contrastive_distill,
    decorrelative_distill,
    knowledge_distill,
    predictive_distill,
    predictive_mse_distill,
)


def _inputs(seed=0, b=6, d=5):
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(b, d, generator=g, dtype=torch.float64)
    z = torch.randn(b, d, generator=g, dtype=torch.float64)
    return p, z


def test_registry_names():
    assert set(DISTILL_LOSSES) == {
        "predictive",
        "predictive_mse",
        "contrastive",
        "decorrelative",
        "knowledge",
    }


def test_predictive_hand_computed():
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    z = torch.tensor([[0.0, 5.0], [2.0, 2.0]])  # cos 0 and 1
    assert predictive_distill(p, z).item() == pytest.approx(2 - 2 * 0.5, abs=1e-6)


def test_predictive_mse_matches_numpy():
    p, z = _inputs()
    expected = np.mean((p.numpy() - z.numpy()) ** 2)
    assert predictive_mse_distill(p, z).item() == pytest.approx(expected, rel=1e-12)


def _loop_cross_infonce(anchors, cands, t):
    total = 0.0
    n = len(anchors)
    for i in range(n):
        logits = [float(anchors[i] @ cands[j]) / t for j in range(n)]
        total += -(logits[i] - math.log(sum(math.exp(v) for v in logits)))
    return total / n


def test_contrastive_matches_loop_reference():
    p, z = _inputs(1)
    pn = [v / v.norm() for v in p]
    zn = [v / v.norm() for v in z]
    expected = (_loop_cross_infonce(pn, zn, 0.2) + _loop_cross_infonce(zn, pn, 0.2)) / 2
    assert contrastive_distill(p, z, temperature=0.2).item() == pytest.approx(expected, rel=1e-10)


def test_contrastive_aligned_beats_shuffled():
    p, _ = _inputs(2)
    aligned = contrastive_distill(p, 3 * p, 0.2)
    shuffled = contrastive_distill(p, p.roll(1, dims=0), 0.2)
    assert aligned < shuffled


def test_decorrelative_is_barlow():
    p, z = _inputs(3)
    got = decorrelative_distill(p, z, lamb=0.1, scale_loss=0.5)
    assert got.item() == pytest.approx(barlow_loss_func(p, z, 0.1, 0.5).item(), rel=1e-12)


def test_knowledge_matches_loop_and_hand_case():
    p, z = _inputs(4)
    t = 0.1
    total = 0.0
    for i in range(p.shape[0]):
        q = np.exp(z[i].numpy() / t)
        q /= q.sum()
        lp = p[i].numpy() / t
        lp = lp - np.log(np.exp(lp).sum())
        total += -(q * lp).sum()
    assert knowledge_distill(p, z, t).item() == pytest.approx(total / p.shape[0], rel=1e-10)
    # uniform student against any teacher: log K
    assert knowledge_distill(torch.zeros(2, 4), torch.randn(2, 4)).item() == pytest.approx(math.log(4), rel=1e-6)


@pytest.mark.parametrize("name", sorted(DISTILL_LOSSES))
def test_gradient_reaches_p_not_frozen(name):
    p = torch.randn(8, 4, requires_grad=True)
    z = torch.randn(8, 4, requires_grad=True)
    loss = DISTILL_LOSSES[name](p, z)
    assert loss.dim() == 0
    loss.backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None


@pytest.mark.parametrize("name", sorted(DISTILL_LOSSES))
def test_shape_mismatch_raises(name):
    with pytest.raises(ValueError):
        DISTILL_LOSSES[name](torch.randn(8, 4), torch.randn(8, 3))


def test_contrastive_uses_only_cross_pairs():
    # logits are p·zᵀ only (no p·p or z·z pairs); the z->p term is its transpose
    p = F.normalize(torch.randn(4, 3, dtype=torch.float64), dim=1)
    z = F.normalize(torch.randn(4, 3, dtype=torch.float64), dim=1)
    logits = p @ z.T / 0.5
    expected = (F.cross_entropy(logits, torch.arange(4)) + F.cross_entropy(logits.T, torch.arange(4))) / 2
    assert contrastive_distill(p, z, 0.5).item() == pytest.approx(expected.item(), rel=1e-12)
