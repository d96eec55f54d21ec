"""Buffer policies: what each keeps, what it replays, determinism, checkpoint round trip."""

from __future__ import annotations

import io

import pytest
import torch

from cassle.buffers import BUFFERS, build_buffer, minred_keep


def _stream(n: int, start: int = 0, feats: bool = False) -> dict[str, torch.Tensor]:
    ids = torch.arange(start, start + n)
    out = {
        "images": (ids % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous(),
        "targets": ids % 3,
        "indexes": ids,
    }
    if feats:
        g = torch.Generator().manual_seed(start)
        out["feats"] = torch.randn(n, 8, generator=g)
    return out


def _feed(buf, total: int, batch: int = 7) -> None:
    for s in range(0, total, batch):
        buf.add(**_stream(min(batch, total - s), s, feats=buf.kind == "minred"))


def test_fifo_keeps_the_newest():
    buf = build_buffer("fifo", 10, seed=0)
    _feed(buf, 33)
    assert len(buf) == 10 and buf.num_seen == 33
    assert sorted(buf.data["indexes"].tolist()) == list(range(23, 33))
    # images and targets travel with their index
    assert torch.equal(buf.data["images"][:, 0, 0, 0].long(), buf.data["indexes"] % 256)
    assert torch.equal(buf.data["targets"], buf.data["indexes"] % 3)
    pos, got = buf.sample(4)
    assert len(set(pos.tolist())) == 4 and set(got["indexes"].tolist()) <= set(range(23, 33))
    # one batch larger than the memory keeps its own newest part
    big = build_buffer("fifo", 5)
    big.add(**_stream(12))
    assert sorted(big.data["indexes"].tolist()) == list(range(7, 12))


def test_fifo_last_replays_the_newest():
    buf = build_buffer("fifo_last", 10)
    _feed(buf, 33)
    _, got = buf.sample(3)
    assert got["indexes"].tolist() == [32, 31, 30]


def test_fifo_samples_uniformly_from_memory():
    buf = build_buffer("fifo", 10, seed=1)
    _feed(buf, 10)
    counts = torch.zeros(10)
    for _ in range(500):
        counts[buf.sample(2)[1]["indexes"]] += 1
    assert counts.min() > 60 and counts.max() < 140  # expected 100 each


def test_reservoir_keeps_each_sample_with_probability_mem_over_n():
    """Algorithm R: after N samples, each is in memory with probability M/N (fixed seeds)."""
    M, N, runs = 20, 100, 300
    hits = torch.zeros(N)
    for seed in range(runs):
        buf = build_buffer("reservoir", M, seed=seed)
        _feed(buf, N, batch=13)
        assert len(buf) == M and len(set(buf.data["indexes"].tolist())) == M
        hits[buf.data["indexes"]] += 1
    p = hits / runs
    expected = M / N
    sd = (expected * (1 - expected) / runs) ** 0.5
    assert (p - expected).abs().max() < 5 * sd  # no sample is favoured
    # the first and the last quarter of the stream are equally represented
    assert abs(p[:25].mean() - p[75:].mean()) < 0.05


def test_reservoir_fills_before_replacing():
    buf = build_buffer("reservoir", 10)
    buf.add(**_stream(6))
    assert len(buf) == 6 and sorted(buf.data["indexes"][:6].tolist()) == list(range(6))
    buf.add(**_stream(4, 6))
    assert sorted(buf.data["indexes"].tolist()) == list(range(10))


def test_minred_drops_a_duplicate_first():
    feats = torch.eye(6)[:5].clone()  # 5 orthogonal samples
    feats = torch.cat([feats, feats[2:3] + 1e-3])  # sample 5 duplicates sample 2
    kept = minred_keep(feats, 5)
    assert len(kept) == 5 and (2 in kept.tolist()) != (5 in kept.tolist())
    assert {0, 1, 3, 4} <= set(kept.tolist())


def test_minred_buffer_removes_the_most_redundant():
    buf = build_buffer("minred", 4)
    f = torch.eye(8)
    fields = _stream(4)
    fields["feats"] = f[:4]
    buf.add(**fields)
    new = _stream(2, 4)
    new["feats"] = torch.stack([f[5], f[1] * 2])  # a fresh direction and a copy of sample 1
    buf.add(**new)
    kept = sorted(buf.data["indexes"].tolist())
    assert len(kept) == 4 and 4 in kept  # the fresh sample stays
    assert (1 in kept) != (5 in kept)  # exactly one of the duplicate pair went
    # stored fields stay aligned after the reshuffle
    assert torch.equal(buf.data["targets"], buf.data["indexes"] % 3)
    with pytest.raises(ValueError, match="feats"):
        build_buffer("minred", 4).add(**_stream(2))


@pytest.mark.parametrize("kind", sorted(BUFFERS))
def test_state_dict_round_trip_and_same_seed_same_contents(kind):
    a, b = build_buffer(kind, 8, seed=3), build_buffer(kind, 8, seed=3)
    _feed(a, 40)
    _feed(b, 40)
    for k in a.data:
        assert torch.equal(a.data[k], b.data[k]), k
    blob = io.BytesIO()
    torch.save(a.state_dict(), blob)
    blob.seek(0)
    c = build_buffer(kind, 8, seed=99)
    c.load_state_dict(torch.load(blob, weights_only=True))
    assert len(c) == len(a) and c.num_seen == 40
    for k in a.data:
        assert torch.equal(a.data[k], c.data[k]), k
    # the generator continues identically after the restore
    _feed(a, 9)
    _feed(c, 9)
    assert torch.equal(a.sample(5)[0], c.sample(5)[0])
    with pytest.raises(ValueError, match="--buffer_type"):
        build_buffer("fifo" if kind != "fifo" else "reservoir", 8).load_state_dict(a.state_dict())


def test_bad_arguments():
    with pytest.raises(ValueError, match="--mem_size"):
        build_buffer("fifo", 0)
    with pytest.raises(ValueError, match="unknown --buffer_type 'lifo'"):
        build_buffer("lifo", 10)


def test_update_overwrites_a_field():
    buf = build_buffer("fifo", 4)
    s = _stream(4)
    s["reps"] = torch.zeros(4, 3)
    buf.add(**s)
    buf.update(torch.tensor([1, 3]), "reps", torch.ones(2, 3))
    assert buf.data["reps"].sum(1).tolist() == [0, 3, 0, 3]
