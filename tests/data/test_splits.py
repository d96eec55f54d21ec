"""Task splits: class, data and domain incremental."""

from __future__ import annotations

import pytest
import torch

from cassle.data.splits import TaskSplit, make_splits

NUM_CLASSES = 6
TRAIN_T = torch.arange(60) % NUM_CLASSES  # 10 samples per class
TEST_T = torch.arange(30) % NUM_CLASSES  # 5 per class


def _cat_sorted(parts: list[torch.Tensor]) -> torch.Tensor:
    return torch.sort(torch.cat(parts)).values


def test_class_split_disjoint_covering_and_consistent() -> None:
    s = make_splits(TRAIN_T, TEST_T, num_tasks=3, strategy="class", seed=0)
    assert isinstance(s, TaskSplit) and s.strategy == "class" and s.num_tasks == 3
    assert [len(c) for c in s.task_classes] == [2, 2, 2]
    assert sorted(c for cs in s.task_classes for c in cs) == list(range(NUM_CLASSES))
    # disjoint and covering: every train sample in exactly one task
    assert torch.equal(_cat_sorted(s.train_indices), torch.arange(60))
    assert torch.equal(_cat_sorted(s.test_indices), torch.arange(30))
    for classes, tr, te in zip(s.task_classes, s.train_indices, s.test_indices):
        assert tr.dtype == torch.long
        assert set(TRAIN_T[tr].tolist()) == set(classes)
        assert set(TEST_T[te].tolist()) == set(classes)
        assert len(tr) == 20 and len(te) == 10


def test_class_split_uneven_groups_sizes_differ_by_at_most_one() -> None:
    s = make_splits(TRAIN_T, None, num_tasks=4, strategy="class", seed=3)
    sizes = sorted(len(c) for c in s.task_classes)
    assert sizes == [1, 1, 2, 2]
    assert s.test_indices == [] and not s.has_test


def test_class_split_seeded() -> None:
    a = make_splits(TRAIN_T, TEST_T, 6, "class", seed=7)
    b = make_splits(TRAIN_T, TEST_T, 6, "class", seed=7)
    assert a.task_classes == b.task_classes
    assert all(torch.equal(x, y) for x, y in zip(a.train_indices, b.train_indices))
    orders = {tuple(c[0] for c in make_splits(TRAIN_T, TEST_T, 6, "class", seed=s).task_classes) for s in range(5)}
    assert len(orders) > 1, "different seeds must give different class orders"
    # the global RNG does not influence the split
    torch.manual_seed(123)
    c = make_splits(TRAIN_T, TEST_T, 6, "class", seed=7)
    assert c.task_classes == a.task_classes


def test_class_split_errors() -> None:
    with pytest.raises(ValueError, match=r"num_tasks=7.*6"):
        make_splits(TRAIN_T, TEST_T, 7, "class", seed=0)
    with pytest.raises(ValueError, match="split_strategy data"):
        make_splits(torch.full((10,), -1), None, 2, "class", seed=0)
    with pytest.raises(ValueError, match="unknown split_strategy"):
        make_splits(TRAIN_T, TEST_T, 2, "classes", seed=0)
    with pytest.raises(ValueError, match="at least 1"):
        make_splits(TRAIN_T, TEST_T, 0, "class", seed=0)


def test_data_split_equal_chunks_full_test() -> None:
    s = make_splits(TRAIN_T, TEST_T, 4, "data", seed=1)
    sizes = [len(i) for i in s.train_indices]
    assert sizes == [15, 15, 15, 15]
    assert torch.equal(_cat_sorted(s.train_indices), torch.arange(60))
    for te in s.test_indices:
        assert torch.equal(te, torch.arange(30))
    assert s.task_classes == [list(range(NUM_CLASSES))] * 4
    # random, not contiguous chunks
    assert not torch.equal(s.train_indices[0], torch.arange(15))
    # uneven: sizes differ by at most one
    u = make_splits(TRAIN_T, None, 7, "data", seed=1)
    assert max(len(i) for i in u.train_indices) - min(len(i) for i in u.train_indices) <= 1
    assert sum(len(i) for i in u.train_indices) == 60


def test_data_split_unlabelled_ok_and_seeded() -> None:
    t = torch.full((20,), -1)
    a = make_splits(t, None, 2, "data", seed=5)
    b = make_splits(t, None, 2, "data", seed=5)
    c = make_splits(t, None, 2, "data", seed=6)
    assert a.task_classes == [[], []]
    assert torch.equal(a.train_indices[0], b.train_indices[0])
    assert not torch.equal(a.train_indices[0], c.train_indices[0])
    with pytest.raises(ValueError, match="larger than the number of training samples"):
        make_splits(t, None, 21, "data", seed=5)


def test_domain_split_one_domain_per_task() -> None:
    train_d = torch.arange(60) // 20  # domains 0,1,2
    test_d = torch.arange(30) // 10
    s = make_splits(TRAIN_T, TEST_T, 3, "domain", seed=0, train_domains=train_d, test_domains=test_d)
    assert s.task_domains == [0, 1, 2]
    for d, tr, te in zip(range(3), s.train_indices, s.test_indices):
        assert torch.equal(tr, torch.arange(20 * d, 20 * (d + 1)))
        assert torch.equal(te, torch.arange(10 * d, 10 * (d + 1)))
    assert s.task_classes == [list(range(NUM_CLASSES))] * 3
    o = make_splits(TRAIN_T, TEST_T, 2, "domain", 0, train_d, test_d, domain_order=[2, 0])
    assert o.task_domains == [2, 0]
    assert set(train_d[o.train_indices[0]].tolist()) == {2}
    assert set(test_d[o.test_indices[1]].tolist()) == {0}


def test_domain_split_errors() -> None:
    train_d = torch.arange(60) // 20
    with pytest.raises(ValueError, match="needs a dataset with domains"):
        make_splits(TRAIN_T, TEST_T, 2, "domain", seed=0)
    with pytest.raises(ValueError, match=r"num_tasks=4.*domains \(3\)"):
        make_splits(TRAIN_T, None, 4, "domain", 0, train_domains=train_d)
    with pytest.raises(ValueError, match="lacks"):
        make_splits(TRAIN_T, None, 1, "domain", 0, train_domains=train_d, domain_order=[5])
    with pytest.raises(ValueError, match="test set too"):
        make_splits(TRAIN_T, TEST_T, 2, "domain", 0, train_domains=train_d)


def test_subsample_train_is_seeded_stratified_and_keeps_test() -> None:
    from cassle.data.splits import subsample_train

    s = make_splits(TRAIN_T, TEST_T, num_tasks=3, strategy="class", seed=0)
    a = subsample_train(s, TRAIN_T, 0.3, seed=1)
    b = subsample_train(s, TRAIN_T, 0.3, seed=1)
    c = subsample_train(s, TRAIN_T, 0.3, seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a.train_indices, b.train_indices))
    assert any(not torch.equal(x, y) for x, y in zip(a.train_indices, c.train_indices))
    for full, sub in zip(s.train_indices, a.train_indices):
        assert bool(torch.isin(sub, full).all())  # a subset of the task, ascending, no repeats
        assert torch.equal(sub, torch.unique(sub))
        counts = torch.bincount(TRAIN_T[sub], minlength=NUM_CLASSES)
        assert sorted(set(counts[counts > 0].tolist())) == [3]  # round(0.3 * 10) of every class
    assert a.test_indices is s.test_indices and a.task_classes == s.task_classes
    assert subsample_train(s, TRAIN_T, 1.0, seed=1) is s
    with pytest.raises(ValueError, match="train_fraction"):
        subsample_train(s, TRAIN_T, 0.0, seed=1)
