"""DeepCluster V2's loss and k-means against formulas written out independently (loops, numpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cassle.losses.deepclusterv2 import deepclusterv2_loss_func, spherical_kmeans


# ------------------------------------------------------------------ the loss
def _loop_loss(scores: list[list[np.ndarray]], labels: list[np.ndarray], t: float) -> float:
    """1/H sum_h mean over labelled (view, sample) of -log softmax(s / t)[label], with explicit loops."""
    per_head = []
    for views, lab in zip(scores, labels):
        total, count = 0.0, 0
        for s in views:
            for b in range(s.shape[0]):
                if lab[b] < 0:
                    continue
                logits = s[b] / t
                total += -(logits[lab[b]] - math.log(sum(math.exp(v) for v in logits)))
                count += 1
        per_head.append(total / count if count else 0.0)
    return sum(per_head) / len(per_head)


def _loop_grad(s: np.ndarray, lab: np.ndarray, t: float, count: int, heads: int) -> np.ndarray:
    """d loss / d s for one view of one head: (softmax(s/t) - onehot) / (t * count * heads) on labelled rows."""
    g = np.zeros_like(s)
    for b in range(s.shape[0]):
        if lab[b] < 0:
            continue
        e = np.exp(s[b] / t - (s[b] / t).max())
        p = e / e.sum()
        p[lab[b]] -= 1.0
        g[b] = p / (t * count * heads)
    return g


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    # two heads (5 and 3 prototypes), two views, four samples; sample 2 has no pseudo-label
    scores = [
        [torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2)],
        [torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2)],
    ]
    labels = [torch.tensor([4, 0, -1, 2]), torch.tensor([1, 1, -1, 0])]
    return scores, labels


def test_value_and_gradient_match_the_loop_formula() -> None:
    scores, labels = _inputs()
    t = 0.1
    loss = deepclusterv2_loss_func(scores, labels, temperature=t)
    np_scores = [[s.detach().numpy() for s in views] for views in scores]
    np_labels = [lab.numpy() for lab in labels]
    assert loss.item() == pytest.approx(_loop_loss(np_scores, np_labels, t), rel=1e-12)
    loss.backward()
    for views, lab in zip(scores, np_labels):
        count = 2 * int((lab >= 0).sum())  # labelled (view, sample) pairs of the head
        for s in views:
            np.testing.assert_allclose(s.grad.numpy(), _loop_grad(s.detach().numpy(), lab, t, count, 2), atol=1e-12)
    assert scores[0][0].grad[2].abs().sum() == 0  # the unlabelled sample gets no gradient


def test_gradient_matches_central_finite_differences() -> None:
    scores, labels = _inputs(1)
    t, eps = 0.5, 1e-6
    deepclusterv2_loss_func(scores, labels, temperature=t).backward()
    with torch.no_grad():
        for h, v, b, k in [(0, 0, 0, 4), (0, 1, 3, 1), (1, 0, 1, 1), (1, 1, 0, 2), (0, 0, 2, 0)]:
            s = scores[h][v]
            s[b, k] += eps
            up = deepclusterv2_loss_func(scores, labels, temperature=t).item()
            s[b, k] -= 2 * eps
            down = deepclusterv2_loss_func(scores, labels, temperature=t).item()
            s[b, k] += eps
            assert s.grad[b, k].item() == pytest.approx((up - down) / (2 * eps), abs=1e-8)


def test_hand_computed_uniform_scores() -> None:
    # equal scores: the cross-entropy of any label is log K
    scores = [[torch.zeros(3, 4), torch.zeros(3, 4)]]
    loss = deepclusterv2_loss_func(scores, [torch.tensor([0, 3, 1])], temperature=0.1)
    assert loss.item() == pytest.approx(math.log(4), rel=1e-6)


def test_stacked_tensor_input_equals_lists() -> None:
    g = torch.Generator().manual_seed(2)
    stacked = torch.randn(3, 2, 6, 7, generator=g)  # H x V x B x K
    labels = torch.randint(-1, 7, (3, 6), generator=g)
    as_lists = [[stacked[h, v] for v in range(2)] for h in range(3)]
    a = deepclusterv2_loss_func(stacked, labels, temperature=0.2)
    b = deepclusterv2_loss_func(as_lists, list(labels), temperature=0.2)
    assert torch.allclose(a, b)


def test_no_pseudo_labels_gives_zero_with_zero_gradient() -> None:
    s = torch.randn(4, 5, requires_grad=True)
    loss = deepclusterv2_loss_func([[s, s * 2]], [torch.full((4,), -1)], temperature=0.1)
    assert loss.item() == 0.0 and torch.isfinite(loss)
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() == 0


@pytest.mark.parametrize(
    ("scores", "labels", "temperature", "match"),
    [
        ([], [], 0.1, "at least one prototype head"),
        ([[torch.randn(4, 5)]], [torch.zeros(4, dtype=torch.long)] * 2, 0.1, "2 assignments for 1"),
        ([[torch.randn(4, 5), torch.randn(4, 6)]], [torch.zeros(4, dtype=torch.long)], 0.1, "one shape"),
        ([[torch.randn(4)]], [torch.zeros(4, dtype=torch.long)], 0.1, "B x K"),
        ([[torch.randn(4, 5)]], [torch.zeros(3, dtype=torch.long)], 0.1, r"shape \(4,\)"),
        ([[torch.randn(4, 5)]], [torch.zeros(4)], 0.1, "integer labels"),
        ([[torch.randn(4, 5)]], [torch.tensor([0, 1, 5, 2])], 0.1, "5 prototypes"),
        ([[torch.randn(4, 5)]], [torch.tensor([0, 1, -2, 2])], 0.1, "-1 = none"),
        ([[torch.randn(4, 5)]], [torch.zeros(4, dtype=torch.long)], 0.0, "temperature"),
        ([[]], [torch.zeros(4, dtype=torch.long)], 0.1, "no views"),
    ],
)
def test_bad_inputs_raise(scores, labels, temperature, match) -> None:
    with pytest.raises(ValueError, match=match):
        deepclusterv2_loss_func(scores, labels, temperature=temperature)


# ------------------------------------------------------------------ k-means
def _three_clusters(n_per: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vectors around three orthogonal directions of R^4 (cosine to the centre > 0.95)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(4)[:3]
    x = torch.cat([c + 0.05 * torch.randn(n_per, 4, generator=g) for c in centres])
    return F.normalize(x, dim=1), torch.arange(3).repeat_interleave(n_per)


def _numpy_kmeans(x: np.ndarray, init: np.ndarray, iters: int) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means written out: argmax cosine, then each non-empty cluster's normalised mean."""
    c = init.copy()
    for _ in range(iters):
        lab = np.array([int(np.argmax([row @ ck for ck in c])) for row in x])
        for k in range(len(c)):
            members = x[lab == k]
            if len(members):
                m = members.sum(axis=0)
                c[k] = m / np.linalg.norm(m)
    lab = np.array([int(np.argmax([row @ ck for ck in c])) for row in x])
    return c, lab


def test_kmeans_finds_obvious_clusters() -> None:
    x, truth = _three_clusters()
    # a seed whose starting rows (distinct rows drawn by randperm) lie in three different clusters
    seed = next(
        s
        for s in range(100)
        if len(set(truth[torch.randperm(30, generator=torch.Generator().manual_seed(s))[:3]].tolist())) == 3
    )
    centroids, labels = spherical_kmeans(x, 3, num_iters=10, generator=torch.Generator().manual_seed(seed))
    # the partition is the true one (up to renaming) and each centroid points along its cluster's direction
    assert len(set(labels.tolist())) == 3
    for k in range(3):
        members = truth[labels == k]
        assert len(set(members.tolist())) == 1
        assert F.cosine_similarity(centroids[k], torch.eye(4)[members[0]], dim=0) > 0.99
    assert torch.allclose(centroids.norm(dim=1), torch.ones(3))
    # converged: every centroid is the normalised mean of its members
    for k in range(3):
        assert torch.allclose(centroids[k], F.normalize(x[labels == k].sum(dim=0), dim=0), atol=1e-6)


def test_kmeans_matches_the_numpy_loop_from_the_same_start() -> None:
    g = torch.Generator().manual_seed(3)
    x = F.normalize(torch.randn(40, 5, generator=g, dtype=torch.float64), dim=1)
    centroids, labels = spherical_kmeans(x, 6, num_iters=4, generator=torch.Generator().manual_seed(7))
    start = torch.randperm(40, generator=torch.Generator().manual_seed(7))[:6]  # the documented start: distinct rows
    ref_c, ref_lab = _numpy_kmeans(x.numpy(), x[start].numpy(), 4)
    np.testing.assert_allclose(centroids.numpy(), ref_c, atol=1e-6)
    np.testing.assert_array_equal(labels.numpy(), ref_lab)


def test_kmeans_zero_iterations_labels_by_the_starting_rows() -> None:
    x, _ = _three_clusters(4)
    centroids, labels = spherical_kmeans(x, 2, num_iters=0, generator=torch.Generator().manual_seed(0))
    start = torch.randperm(12, generator=torch.Generator().manual_seed(0))[:2]
    assert torch.equal(centroids, x[start])
    assert torch.equal(labels, (x @ x[start].T).argmax(dim=1))


def test_kmeans_is_seeded_and_keeps_empty_clusters() -> None:
    x, _ = _three_clusters()
    a = spherical_kmeans(x, 5, generator=torch.Generator().manual_seed(1))
    b = spherical_kmeans(x, 5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # 5 centroids for 3 tight clusters: every centroid stays a unit vector, labels stay in range
    assert torch.allclose(a[0].norm(dim=1), torch.ones(5)) and int(a[1].max()) < 5


def test_kmeans_with_fewer_rows_than_clusters_warns() -> None:
    x, _ = _three_clusters(1)  # 3 rows
    with pytest.warns(UserWarning, match="3 rows for 5 clusters"):
        centroids, labels = spherical_kmeans(x, 5, generator=torch.Generator().manual_seed(0))
    assert centroids.shape == (5, 4) and torch.allclose(centroids.norm(dim=1), torch.ones(5))
    assert sorted(labels.tolist()) == sorted(set(labels.tolist()))  # three rows, three distinct clusters


def test_kmeans_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="2-D"):
        spherical_kmeans(torch.randn(3), 2)
    with pytest.raises(ValueError, match="num_clusters"):
        spherical_kmeans(torch.randn(3, 2), 0)
    with pytest.raises(ValueError, match="num_iters"):
        spherical_kmeans(torch.randn(3, 2), 2, num_iters=-1)


# ------------------------------------------------------------------ distributed form
def _kmeans_on_shards(rank: int, world_size: int, x: torch.Tensor, k: int, iters: int) -> tuple:
    shard = x[: len(x) // 2] if rank == 0 else x[len(x) // 2 :]
    return spherical_kmeans(shard, k, num_iters=iters, generator=torch.Generator().manual_seed(5), world_size=2)


def test_distributed_kmeans_equals_kmeans_of_the_union() -> None:
    """Two gloo ranks with one half of the bank each: the all-reduced k-means of the whole bank, started from
    rows of rank 0's half (the reference's convention)."""
    spawn = pytest.importorskip("tests.distributed.spawn")
    g = torch.Generator().manual_seed(11)
    x = F.normalize(torch.randn(24, 4, generator=g, dtype=torch.float64), dim=1)
    (c0, l0), (c1, l1) = spawn.run_ranks(_kmeans_on_shards, x, 4, 3)
    start = torch.randperm(12, generator=torch.Generator().manual_seed(5))[:4]
    ref_c, ref_lab = _numpy_kmeans(x.numpy(), x[:12][start].numpy(), 3)
    assert torch.equal(c0, c1)
    np.testing.assert_allclose(c0.numpy(), ref_c, atol=1e-9)
    np.testing.assert_array_equal(torch.cat([l0, l1]).numpy(), ref_lab)
