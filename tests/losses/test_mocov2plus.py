import math

import pytest
import torch
import torch.nn.functional as F

from cassle.losses import mocov2plus_loss_func


def test_hand_computed_single_sample():
    q = torch.tensor([[2.0, 0.0]])
    k = torch.tensor([[1.0, 0.0]])  # q.k = 1
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])  # q.n = 0, -1
    t = 0.5
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(0.0) + math.exp(-2.0)))
    assert mocov2plus_loss_func(q, k, queue, t).item() == pytest.approx(expected, rel=1e-6)


def test_matches_cross_entropy_built_by_hand():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(4, 8, generator=g, dtype=torch.float64)
    k = torch.randn(4, 8, generator=g, dtype=torch.float64)
    queue = F.normalize(torch.randn(16, 8, generator=g, dtype=torch.float64), dim=1)
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    rows = []
    for i in range(4):
        rows.append(torch.cat([(qn[i] @ kn[i]).view(1), queue @ qn[i]]))
    logits = torch.stack(rows) / 0.2
    expected = F.cross_entropy(logits, torch.zeros(4, dtype=torch.long))
    got = mocov2plus_loss_func(q, k, queue, temperature=0.2)
    assert got.item() == pytest.approx(expected.item(), rel=1e-10)


def test_gradient_only_to_query():
    q = torch.randn(4, 8, requires_grad=True)
    k = torch.randn(4, 8, requires_grad=True)
    queue = torch.randn(10, 8, requires_grad=True)
    mocov2plus_loss_func(q, k, queue).backward()
    assert q.grad.abs().sum() > 0
    assert k.grad is None and queue.grad is None


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        mocov2plus_loss_func(torch.randn(4, 8), torch.randn(4, 7), torch.randn(10, 8))
    with pytest.raises(ValueError, match="queue"):
        mocov2plus_loss_func(torch.randn(4, 8), torch.randn(4, 8), torch.randn(8, 10))
