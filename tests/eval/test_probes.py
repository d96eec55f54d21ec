"""Tests for cassle.eval.probes."""

import math

import pytest
import torch

from cassle.eval.probes import PROBES, knn_accuracy, linear_accuracy, ridge_accuracy


def _clusters(n_per_class=20, num_classes=4, dim=8, seed=0, labels=None):
    g = torch.Generator().manual_seed(seed)
    centers = torch.eye(dim)[:num_classes] * 10
    x = torch.cat([c + 0.5 * torch.randn(n_per_class, dim, generator=g) for c in centers])
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    if labels is not None:
        y = torch.as_tensor(labels)[y]
    return x, y


@pytest.mark.parametrize("name", sorted(PROBES))
def test_every_probe_is_perfect_on_separable_clusters(name):
    # sparse, non-contiguous class ids must work too
    tr_f, tr_y = _clusters(seed=0, labels=[3, 7, 8, 20])
    te_f, te_y = _clusters(seed=1, labels=[3, 7, 8, 20])
    assert PROBES[name](tr_f, tr_y, te_f, te_y) == 100.0


def test_knn_weighted_vote_by_hand():
    # cos sims to the query [5, 0]: 1.0 (class 0), 0.8 (1), 0.6 (1), 0.0 (0)
    tr_f = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 3.0]])
    tr_y = torch.tensor([0, 1, 1, 0])
    te_f, te_y = torch.tensor([[5.0, 0.0]]), torch.tensor([1])
    # T=1, k=3: class 0 gets e^1 = 2.718, class 1 gets e^.8 + e^.6 = 4.048 -> predicts 1
    assert knn_accuracy(tr_f, tr_y, te_f, te_y, k=3, temperature=1.0) == 100.0
    # T=0.07 sharpens: e^(1/.07) > e^(.8/.07) + e^(.6/.07) -> predicts 0
    assert knn_accuracy(tr_f, tr_y, te_f, te_y, k=3, temperature=0.07) == 0.0
    # k=1: nearest neighbour only -> class 0
    assert knn_accuracy(tr_f, tr_y, te_f, te_y, k=1, temperature=1.0) == 0.0
    # k=100 is clipped to 4: class 0 gets e^1 + e^0 = 3.718 < 4.048 -> still 1
    assert knn_accuracy(tr_f, tr_y, te_f, te_y, k=100, temperature=1.0) == 100.0


def test_knn_chunking_does_not_change_the_result():
    g = torch.Generator().manual_seed(3)
    tr_f, te_f = torch.randn(50, 6, generator=g), torch.randn(37, 6, generator=g)
    tr_y, te_y = torch.randint(0, 3, (50,), generator=g), torch.randint(0, 3, (37,), generator=g)
    full = knn_accuracy(tr_f, tr_y, te_f, te_y, k=5, batch_size=1024)
    assert knn_accuracy(tr_f, tr_y, te_f, te_y, k=5, batch_size=4) == full
    assert knn_accuracy(tr_f, tr_y, te_f, te_y, k=5, batch_size=1) == full
    assert 0.0 <= full <= 100.0


def test_ridge_separable_and_partial():
    tr_f, tr_y = _clusters(num_classes=3, seed=0)
    te_f, te_y = _clusters(num_classes=3, seed=1)
    te_y = te_y.clone()
    te_y[:15] = 2  # 15 of 60 test labels are wrong -> 75 %
    assert ridge_accuracy(tr_f, tr_y, te_f, te_y, alpha=1.0) == pytest.approx(75.0)
    assert ridge_accuracy(tr_f.numpy(), tr_y.numpy(), te_f.numpy(), te_y.numpy()) == pytest.approx(75.0)


def test_linear_is_deterministic():
    g = torch.Generator().manual_seed(5)
    tr_f, te_f = torch.randn(40, 5, generator=g), torch.randn(20, 5, generator=g)
    tr_y, te_y = torch.randint(0, 3, (40,), generator=g), torch.randint(0, 3, (20,), generator=g)
    a = linear_accuracy(tr_f, tr_y, te_f, te_y, max_iter=30)
    b = linear_accuracy(tr_f, tr_y, te_f, te_y, max_iter=30)
    assert a == b


def test_linear_works_under_inference_mode():
    tr_f, tr_y = _clusters(num_classes=2, seed=0)
    te_f, te_y = _clusters(num_classes=2, seed=1)
    with torch.inference_mode():
        assert linear_accuracy(tr_f * 1, tr_y, te_f * 1, te_y) == 100.0


@pytest.mark.parametrize("name", sorted(PROBES))
def test_single_class_train_predicts_that_class(name):
    tr_f, tr_y = torch.randn(6, 3), torch.full((6,), 3)
    te_f, te_y = torch.randn(4, 3), torch.tensor([3, 3, 1, 2])
    assert PROBES[name](tr_f, tr_y, te_f, te_y) == 50.0


@pytest.mark.parametrize("name", sorted(PROBES))
def test_empty_test_is_nan(name):
    tr_f, tr_y = _clusters(num_classes=2)
    assert math.isnan(PROBES[name](tr_f, tr_y, torch.empty(0, 8), torch.empty(0, dtype=torch.long)))


def test_clear_errors():
    f, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="3 targets"):
        knn_accuracy(f, y[:3], f, y)
    with pytest.raises(ValueError, match="dimension"):
        ridge_accuracy(f, y, torch.randn(4, 2), y)
    with pytest.raises(ValueError, match="k must be"):
        knn_accuracy(f, y, f, y, k=0)
    with pytest.raises(ValueError, match="empty training set"):
        knn_accuracy(torch.empty(0, 3), torch.empty(0, dtype=torch.long), f, y)
