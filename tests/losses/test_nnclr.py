"""NNCLR loss against the paper's InfoNCE written out with explicit loops: value, gradient, the gathered form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cassle.losses.nnclr import nnclr_loss_func


def _reference(nn: np.ndarray, p: np.ndarray, temperature: float, offset: int = 0) -> float:
    """mean_i -log(exp(nn_i·p_{offset+i}/T) / sum_k exp(nn_i·p_k/T)) with unit-norm rows, by loops."""
    total = 0.0
    for i in range(nn.shape[0]):
        a = nn[i] / math.sqrt(float(nn[i] @ nn[i]))
        sims = [float(a @ (p[k] / math.sqrt(float(p[k] @ p[k])))) / temperature for k in range(p.shape[0])]
        denom = sum(math.exp(s) for s in sims)
        total += -math.log(math.exp(sims[offset + i]) / denom)
    return total / nn.shape[0]


def test_hand_computed_two_samples():
    # unit vectors: nn_0 = e0, nn_1 = e1; p_0 = e0, p_1 = -e0 (scaled: the loss normalises)
    nn = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[3.0, 0.0], [-1.0, 0.0]])
    t = 0.5
    row0 = -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(-2.0)))  # sims 1, -1
    row1 = -math.log(math.exp(0.0) / (math.exp(0.0) + math.exp(0.0)))  # sims 0, 0
    assert nnclr_loss_func(nn, p, temperature=t).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_matches_loop_formula_on_random_input():
    g = torch.Generator().manual_seed(0)
    nn = torch.randn(5, 7, generator=g, dtype=torch.float64)
    p = torch.randn(5, 7, generator=g, dtype=torch.float64)
    for t in (0.1, 0.2, 1.0):
        expected = _reference(nn.numpy(), p.numpy(), t)
        assert nnclr_loss_func(nn, p, temperature=t).item() == pytest.approx(expected, rel=1e-10)


def test_gradient_matches_finite_differences_of_the_formula_and_skips_the_neighbours():
    g = torch.Generator().manual_seed(1)
    nn = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    t = 0.3
    nnclr_loss_func(nn, p, temperature=t).backward()
    assert nn.grad is None  # the neighbour is a lookup: no gradient flows into it
    base = p.detach().numpy()
    eps = 1e-6
    numeric = np.zeros_like(base)
    for i in range(base.shape[0]):
        for j in range(base.shape[1]):
            up, down = base.copy(), base.copy()
            up[i, j] += eps
            down[i, j] -= eps
            nn_np = nn.detach().numpy()
            numeric[i, j] = (_reference(nn_np, up, t) - _reference(nn_np, down, t)) / (2 * eps)
    assert np.allclose(p.grad.numpy(), numeric, atol=1e-7)


def test_offset_selects_this_process_positives_in_a_gathered_batch():
    """Two simulated processes: each holds half of the neighbours and the gathered predictions; their mean
    loss is the one-process loss of the global batch, and each equals the formula with shifted positives."""
    g = torch.Generator().manual_seed(2)
    nn = torch.randn(6, 5, generator=g, dtype=torch.float64)
    p = torch.randn(6, 5, generator=g, dtype=torch.float64)
    rank0 = nnclr_loss_func(nn[:3], p, temperature=0.2, offset=0)
    rank1 = nnclr_loss_func(nn[3:], p, temperature=0.2, offset=3)
    assert rank1.item() == pytest.approx(_reference(nn[3:].numpy(), p.numpy(), 0.2, offset=3), rel=1e-10)
    whole = nnclr_loss_func(nn, p, temperature=0.2)
    assert ((rank0 + rank1) / 2).item() == pytest.approx(whole.item(), rel=1e-10)


def test_perfect_neighbours_give_low_loss_and_wrong_ones_high():
    nn = torch.eye(4)
    good = nnclr_loss_func(nn, torch.eye(4), temperature=0.1).item()
    bad = nnclr_loss_func(nn, torch.eye(4).roll(1, dims=0), temperature=0.1).item()
    assert good < 0.01 < 10 < bad


def test_bad_inputs_raise_naming_the_problem():
    with pytest.raises(ValueError, match="2-D"):
        nnclr_loss_func(torch.randn(4), torch.randn(4, 3))
    with pytest.raises(ValueError, match="same width"):
        nnclr_loss_func(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(ValueError, match="offset 2 with 4 neighbours"):
        nnclr_loss_func(torch.randn(4, 3), torch.randn(4, 3), offset=2)
    with pytest.raises(ValueError, match="offset"):
        nnclr_loss_func(torch.randn(4, 3), torch.randn(8, 3), offset=-1)
    with pytest.raises(ValueError, match="temperature"):
        nnclr_loss_func(torch.randn(4, 3), torch.randn(4, 3), temperature=0.0)
