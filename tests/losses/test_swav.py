import numpy as np
import pytest
import torch

from cassle.losses import sinkhorn, swav_loss_func


def _numpy_sinkhorn(scores, iters, eps):
    q = np.exp(scores / eps).T  # K x B, as in the SwAV paper's code
    k, b = q.shape
    q = q / q.sum()
    for _ in range(iters):
        q = q / q.sum(axis=1, keepdims=True) / k
        q = q / q.sum(axis=0, keepdims=True) / b
    return (q * b).T


def test_sinkhorn_matches_numpy_and_marginals():
    rng = np.random.default_rng(0)
    scores = rng.uniform(-1, 1, size=(12, 4))
    got = sinkhorn(torch.from_numpy(scores), num_iters=3, epsilon=0.05)
    np.testing.assert_allclose(got.numpy(), _numpy_sinkhorn(scores, 3, 0.05), rtol=1e-9)
    np.testing.assert_allclose(got.sum(dim=1).numpy(), np.ones(12), rtol=1e-9)
    # with enough iterations the prototypes are equally used: B/K each
    many = sinkhorn(torch.from_numpy(scores), num_iters=50, epsilon=0.5)
    np.testing.assert_allclose(many.sum(dim=0).numpy(), np.full(4, 3.0), rtol=1e-4)


def test_sinkhorn_is_stable_for_large_scores_and_has_no_grad():
    scores = torch.tensor([[100.0, 0.0], [0.0, 100.0]], requires_grad=True)
    q = sinkhorn(scores, epsilon=0.05)
    assert torch.isfinite(q).all() and not q.requires_grad
    assert torch.allclose(q, torch.eye(2), atol=1e-6)
    # a prototype no sample is close to must not produce NaNs
    q = sinkhorn(torch.tensor([[50.0, -50.0], [50.0, -50.0]]), epsilon=0.05)
    assert torch.isfinite(q).all()
    assert torch.allclose(q.sum(dim=1), torch.ones(2))


def test_swav_loss_loop_reference():
    g = torch.Generator().manual_seed(0)
    preds = [torch.randn(5, 6, generator=g, dtype=torch.float64) for _ in range(4)]
    assignments = [torch.softmax(torch.randn(5, 6, generator=g, dtype=torch.float64), 1) for _ in range(2)]
    t = 0.1
    total, count = 0.0, 0
    for a in range(2):
        for v in range(4):
            if v == a:
                continue
            for b in range(5):
                logits = preds[v][b].numpy() / t
                log_sm = logits - np.log(np.exp(logits).sum())
                total += -(assignments[a][b].numpy() * log_sm).sum() / 5
            count += 1
    got = swav_loss_func(preds, assignments, temperature=t)
    assert got.item() == pytest.approx(total / count, rel=1e-10)


def test_swav_hand_computed_uniform():
    # uniform predictions: CE with any distribution target = log K
    preds = [torch.zeros(2, 3, requires_grad=True), torch.zeros(2, 3, requires_grad=True)]
    targets = [torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])] * 2
    loss = swav_loss_func(preds, targets)
    assert loss.item() == pytest.approx(np.log(3), rel=1e-6)
    loss.backward()
    assert preds[0].grad.abs().sum() > 0


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        swav_loss_func([torch.randn(2, 3)], [torch.randn(2, 3)])
    with pytest.raises(ValueError):
        swav_loss_func([torch.randn(2, 3), torch.randn(2, 4)], [torch.randn(2, 3)])
    with pytest.raises(ValueError):
        sinkhorn(torch.randn(3))
