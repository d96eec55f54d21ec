"""The shared FIFO of past vectors: ring order, empty vs random start, labels, nearest neighbour, checkpoints."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cassle.methods.queue import FeatureQueue, upgrade_legacy_queue


def test_push_wraps_around_and_keeps_the_newest_size_rows():
    q = FeatureQueue(size=4, dim=2, init="zeros")
    assert q.rows().shape == (0, 2)
    q.push(torch.tensor([[1.0, 0], [2, 0], [3, 0]]))
    assert q.rows()[:, 0].tolist() == [1, 2, 3] and int(q.ptr) == 3 and int(q.count) == 3
    q.push(torch.tensor([[4.0, 0], [5, 0]]))
    # ring: 5 overwrote the oldest (1); the queue holds the last four pushed
    assert sorted(q.rows()[:, 0].tolist()) == [2, 3, 4, 5] and int(q.ptr) == 1 and int(q.count) == 4
    q.push(torch.arange(10.0).repeat(2, 1).T)  # more than size: the last four
    assert sorted(q.rows()[:, 0].tolist()) == [6, 7, 8, 9]


def test_random_start_is_full_of_unit_vectors_and_slots_are_separate():
    torch.manual_seed(0)
    q = FeatureQueue(size=5, dim=3, slots=2)
    assert q.rows(0).shape == (5, 3) and torch.allclose(q.rows(1).norm(dim=1), torch.ones(5))
    new = torch.stack([torch.full((2, 3), 7.0), torch.full((2, 3), 9.0)])
    q.push(new)
    assert (q.queue[0, :2] == 7).all() and (q.queue[1, :2] == 9).all()
    with pytest.raises(ValueError, match="2 x n x 3"):
        q.push(torch.zeros(2, 3))


def test_labels_follow_their_rows():
    q = FeatureQueue(size=3, dim=2, init="zeros", labels=True)
    q.push(torch.eye(2), labels=torch.tensor([4, 7]))
    assert q.row_labels().tolist() == [4, 7]
    q.push(torch.ones(2, 2), labels=torch.tensor([1, 2]))
    assert sorted(q.row_labels().tolist()) == [1, 2, 7]


def test_nearest_is_the_cosine_nearest_row():
    q = FeatureQueue(size=3, dim=2, init="zeros")
    q.push(torch.tensor([[1.0, 0.0], [0.0, 5.0], [-1.0, -1.0]]))
    z = torch.tensor([[0.1, 3.0], [2.0, 0.1], [-3.0, -2.0]], requires_grad=True)
    nn_, idx = q.nearest(z)
    assert idx.tolist() == [1, 0, 2] and not nn_.requires_grad
    with pytest.raises(RuntimeError, match="empty queue"):
        FeatureQueue(2, 2, init="zeros").nearest(z)


def test_state_dict_round_trip_resumes_the_same_queue():
    a = FeatureQueue(size=4, dim=2, init="zeros", labels=True)
    a.push(torch.randn(3, 2), labels=torch.tensor([0, 1, 2]))
    b = FeatureQueue(size=4, dim=2, init="zeros", labels=True)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.queue, b.queue) and int(b.ptr) == 3 and int(b.count) == 3
    b.push(torch.ones(2, 2))
    assert int(b.ptr) == 1 and int(b.count) == 4


class _Holder(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.queue = FeatureQueue(**kw)
        self.register_load_state_dict_pre_hook(upgrade_legacy_queue)


def test_a_moco_checkpoint_from_before_the_queue_module_loads():
    old = {"queue": F.normalize(torch.randn(6, 3), dim=1), "queue_ptr": torch.tensor(4)}
    m = _Holder(size=6, dim=3)
    m.load_state_dict(dict(old))
    assert torch.equal(m.queue.queue[0], old["queue"]) and int(m.queue.ptr) == 4 and int(m.queue.count) == 6


def test_a_swav_checkpoint_from_before_the_queue_module_keeps_fifo_order():
    # legacy SwAV: newest row first, zeros = empty; rows 3, 2, 1 were pushed in the order 1, 2, 3
    old = torch.zeros(2, 4, 2)
    old[:, :3, 0] = torch.tensor([3.0, 2.0, 1.0])
    m = _Holder(size=4, dim=2, slots=2, init="zeros")
    m.load_state_dict({"queue": old})
    assert int(m.queue.count) == 3 and m.queue.rows(0)[:, 0].tolist() == [1, 2, 3]
    m.queue.push(torch.full((2, 2, 2), 4.0))  # fills the empty row, then overwrites the oldest (1)
    assert sorted(m.queue.rows(0)[:, 0].tolist()) == [2, 3, 4, 4]
    assert 1.0 not in m.queue.rows(1)[:, 0].tolist()


def test_a_push_without_labels_marks_the_overwritten_rows_unknown():
    q = FeatureQueue(size=3, dim=2, init="zeros", labels=True)
    q.push(torch.eye(2), labels=torch.tensor([4, 7]))
    q.push(torch.ones(2, 2))  # overwrites row 2 (empty) and row 0 (label 4)
    assert q.labels.tolist() == [-1, 7, -1]
    with pytest.raises(ValueError, match="one entry per pushed vector"):
        q.push(torch.ones(2, 2), labels=torch.tensor([1, 2, 3]))


def test_nearest_on_a_hand_made_support_set_returns_the_stored_row_and_its_label():
    q = FeatureQueue(size=4, dim=3, init="zeros", labels=True)
    support = F.normalize(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]]), dim=1)
    q.push(support, labels=torch.tensor([0, 1, 2, 3]))
    # cosine, not dot product: [5, 4.9, 0] is closest to [1, 1, 0] in angle
    z = torch.tensor([[5.0, 4.9, 0.0], [0.1, 0.0, 2.0], [0.0, 3.0, 0.5], [0.2, 0.0, 0.0]])
    nn_, idx = q.nearest(z)
    assert idx.tolist() == [3, 2, 1, 0]
    assert torch.equal(nn_, support[[3, 2, 1, 0]])
    # the nn-accuracy diagnostic: labels of the neighbours vs the queries' labels, unlabelled left out
    assert q.label_agreement(idx, torch.tensor([3, 0, 1, -1])).item() == pytest.approx(2 / 3)
    assert q.label_agreement(idx, torch.full((4,), -1)) is None
    assert FeatureQueue(size=2, dim=3).label_agreement(idx, torch.zeros(4, dtype=torch.long)) is None
    with pytest.raises(ValueError, match="same shape"):
        q.label_agreement(idx, torch.zeros(3, dtype=torch.long))


def test_random_rows_of_a_labelled_queue_never_agree():
    torch.manual_seed(0)
    q = FeatureQueue(size=6, dim=4, labels=True)
    _, idx = q.nearest(torch.randn(5, 4))
    assert q.label_agreement(idx, torch.zeros(5, dtype=torch.long)).item() == 0.0


def test_k_nearest_are_sorted_by_cosine_and_the_first_is_the_nearest() -> None:
    q = FeatureQueue(size=4, dim=2, init="zeros")
    q.push(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0]]))
    z = torch.tensor([[1.0, 0.1]])
    rows, idx = q.nearest(z, k=3)
    assert rows.shape == (1, 3, 2) and idx.tolist() == [[0, 2, 1]]
    assert torch.equal(q.nearest(z)[1], idx[:, 0])
