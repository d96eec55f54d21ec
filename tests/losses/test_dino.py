"""DINO loss, centre update and teacher-temperature schedule against independent numpy formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cassle.losses.dino as dino_mod
from cassle.losses.dino import dino_center_update, dino_loss_func, dino_teacher_temperature


def _np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _np_dino(student, teacher, center, ts, tt):
    """Paper eq.: sum over teacher views t and student views s != t, explicit loops over samples."""
    total, pairs = 0.0, 0
    for t, tv in enumerate(teacher):
        for s, sv in enumerate(student):
            if s == t:
                continue
            per_sample = []
            for b in range(sv.shape[0]):
                q = _np_softmax((tv[b] - center) / tt)
                log_p = np.log(_np_softmax(sv[b] / ts))
                per_sample.append(-(q * log_p).sum())
            total += np.mean(per_sample)
            pairs += 1
    return total / pairs


def _np_dino_grad(student, teacher, center, ts, tt):
    """d L / d student_s[b] = sum_{t != s} (softmax(student_s[b] / ts) - q_t[b]) / (ts * B * pairs)."""
    n_pairs = sum(1 for t in range(len(teacher)) for s in range(len(student)) if s != t)
    grads = []
    for s, sv in enumerate(student):
        g = np.zeros_like(sv)
        bsz = sv.shape[0]
        for t, tv in enumerate(teacher):
            if t == s:
                continue
            for b in range(bsz):
                q = _np_softmax((tv[b] - center) / tt)
                g[b] += (_np_softmax(sv[b] / ts) - q) / (ts * bsz * n_pairs)
        grads.append(g)
    return grads


def _inputs(n_student: int, n_teacher: int, b: int = 4, k: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    student = [rng.normal(size=(b, k)) for _ in range(n_student)]
    teacher = [rng.normal(size=(b, k)) for _ in range(n_teacher)]
    center = rng.normal(scale=0.3, size=(k,))
    return student, teacher, center


@pytest.mark.parametrize(("n_student", "n_teacher"), [(2, 2), (3, 2), (3, 1)])
def test_value_and_gradient_match_independent_formula(n_student: int, n_teacher: int) -> None:
    student, teacher, center = _inputs(n_student, n_teacher)
    ts, tt = 0.1, 0.04
    s_t = [torch.tensor(s, requires_grad=True) for s in student]
    t_t = [torch.tensor(t, requires_grad=True) for t in teacher]
    loss = dino_loss_func(s_t, t_t, torch.tensor(center).reshape(1, -1), ts, tt)
    assert loss.item() == pytest.approx(_np_dino(student, teacher, center, ts, tt), rel=1e-10)
    loss.backward()
    for got, want in zip(s_t, _np_dino_grad(student, teacher, center, ts, tt)):
        if n_teacher == 1 and got is s_t[0]:  # view 0 is only a teacher view here: no pair trains it
            assert got.grad is None and not want.any()
            continue
        np.testing.assert_allclose(got.grad.numpy(), want, rtol=1e-8, atol=1e-12)
    assert all(t.grad is None for t in t_t)  # the teacher is a target, never trained by the loss


def test_gradient_matches_finite_differences() -> None:
    student, teacher, center = _inputs(2, 2, b=3, k=4, seed=1)
    t_t = [torch.tensor(t) for t in teacher]
    c = torch.tensor(center)
    s_t = [torch.tensor(s, requires_grad=True) for s in student]
    dino_loss_func(s_t, t_t, c, 0.2, 0.05).backward()
    eps = 1e-6
    for v in range(2):
        for b in range(3):
            for k in range(4):
                plus = [s.copy() for s in student]
                minus = [s.copy() for s in student]
                plus[v][b, k] += eps
                minus[v][b, k] -= eps
                fd = (_np_dino(plus, teacher, center, 0.2, 0.05) - _np_dino(minus, teacher, center, 0.2, 0.05)) / (
                    2 * eps
                )
                assert s_t[v].grad[b, k].item() == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_hand_computed_uniform_student() -> None:
    # a uniform student gives cross-entropy log K for any teacher distribution
    student = [torch.zeros(2, 3), torch.zeros(2, 3)]
    teacher = [torch.randn(2, 3), torch.randn(2, 3)]
    loss = dino_loss_func(student, teacher, torch.zeros(3))
    assert loss.item() == pytest.approx(np.log(3), rel=1e-6)


def test_centre_is_subtracted_and_sharpening_follows_temperature() -> None:
    student, teacher, center = _inputs(2, 2, seed=2)
    s = [torch.tensor(x) for x in student]
    t = [torch.tensor(x) for x in teacher]
    shift = torch.tensor([0.5, -1.0, 2.0, 0.0, 3.0], dtype=torch.float64)
    # shifting teacher scores and centre by the same vector changes nothing
    a = dino_loss_func(s, t, torch.tensor(center), 0.1, 0.07)
    b = dino_loss_func(s, [x + shift for x in t], torch.tensor(center) + shift, 0.1, 0.07)
    assert a.item() == pytest.approx(b.item(), rel=1e-12)
    # but a different centre changes the targets
    c = dino_loss_func(s, t, torch.tensor(center) + shift, 0.1, 0.07)
    assert abs(c.item() - a.item()) > 1e-3


def test_centre_update_matches_formula_and_leaves_input() -> None:
    rng = np.random.default_rng(3)
    teacher = [rng.normal(size=(4, 6)) for _ in range(2)]
    center = rng.normal(size=(1, 6))
    c = torch.tensor(center)
    new = dino_center_update(c, [torch.tensor(t) for t in teacher], momentum=0.9)
    rows = np.concatenate(teacher)
    want = 0.9 * center + 0.1 * rows.sum(axis=0, keepdims=True) / rows.shape[0]
    np.testing.assert_allclose(new.numpy(), want, rtol=1e-12)
    assert torch.equal(c, torch.tensor(center)) and new.shape == (1, 6)
    # momentum 1 keeps the centre, momentum 0 takes the batch mean
    assert torch.equal(dino_center_update(c, [torch.tensor(t) for t in teacher], momentum=1.0), c)
    mean = dino_center_update(c, [torch.tensor(t) for t in teacher], momentum=0.0)
    np.testing.assert_allclose(mean.numpy()[0], rows.mean(axis=0), rtol=1e-12)


def test_centre_update_uses_the_global_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes: all_reduce adds the other rank's sum; the centre moves to the mean of both batches."""
    local = [torch.tensor([[1.0, 0.0], [3.0, 2.0]])]
    other = torch.tensor([[5.0, 4.0], [7.0, 6.0]])
    calls = []

    def fake_all_reduce(x: torch.Tensor) -> None:
        calls.append(x.shape)
        x.add_(other.sum(dim=0))

    monkeypatch.setattr(dino_mod.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dino_mod.dist, "all_reduce", fake_all_reduce)
    new = dino_center_update(torch.zeros(1, 2), local, momentum=0.5, world_size=2)
    global_mean = torch.cat([local[0], other]).mean(dim=0, keepdim=True)
    assert torch.allclose(new, 0.5 * global_mean) and calls == [torch.Size([2])]
    # one process: no collective call
    calls.clear()
    dino_center_update(torch.zeros(1, 2), local, momentum=0.5, world_size=1)
    assert calls == []


def test_teacher_temperature_schedule_endpoints() -> None:
    warm, final, n = 0.04, 0.07, 30
    sched = [dino_teacher_temperature(e, warm, final, n) for e in range(n + 5)]
    assert sched[0] == pytest.approx(warm) and sched[n - 1] == pytest.approx(final)
    np.testing.assert_allclose(sched[:n], np.linspace(warm, final, n), rtol=1e-12)
    assert all(t == pytest.approx(final) for t in sched[n:])
    assert dino_teacher_temperature(0, warm, final, 0) == final  # no warm-up
    assert dino_teacher_temperature(0, warm, final, 1) == warm  # linspace(w, t, 1) = [w]
    assert dino_teacher_temperature(1, warm, final, 1) == final
    with pytest.raises(ValueError, match="temperatures must be > 0"):
        dino_teacher_temperature(0, 0.0, final, 10)


def test_bad_inputs_raise() -> None:
    two = [torch.randn(2, 3), torch.randn(2, 3)]
    with pytest.raises(ValueError, match="at least 2 student views"):
        dino_loss_func(two[:1], two[:1], torch.zeros(3))
    with pytest.raises(ValueError, match="teacher views"):
        dino_loss_func(two, two + two[:1], torch.zeros(3))
    with pytest.raises(ValueError, match="same B x K shape"):
        dino_loss_func([torch.randn(2, 3), torch.randn(2, 4)], two, torch.zeros(3))
    with pytest.raises(ValueError, match="center must have shape"):
        dino_loss_func(two, two, torch.zeros(4))
    with pytest.raises(ValueError, match="temperatures must be > 0"):
        dino_loss_func(two, two, torch.zeros(3), student_temperature=0.0)
    with pytest.raises(ValueError, match="momentum"):
        dino_center_update(torch.zeros(1, 3), two, momentum=1.5)
    with pytest.raises(ValueError, match="B x K"):
        dino_center_update(torch.zeros(1, 3), [torch.randn(3)])
    with pytest.raises(ValueError, match="center must have shape"):
        dino_center_update(torch.zeros(2, 3), two)


def _centre_on_rank(rank: int, world_size: int, rows: torch.Tensor) -> torch.Tensor:
    """Rank ``r`` holds rows ``r::world_size`` split into two teacher views."""
    mine = rows[rank::world_size]
    half = mine.shape[0] // 2
    return dino_center_update(torch.ones(1, rows.shape[1]), [mine[:half], mine[half:]], 0.9, world_size=world_size)


def test_centre_update_across_two_gloo_processes() -> None:
    spawn = pytest.importorskip("tests.distributed.spawn")
    rows = torch.randn(8, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    per_rank = spawn.run_ranks(_centre_on_rank, rows, world_size=2)
    want = 0.9 * torch.ones(1, 3, dtype=torch.float64) + 0.1 * rows.mean(dim=0, keepdim=True)
    for got in per_rank:  # every rank ends with the same centre: the global batch mean's EMA
        assert torch.allclose(got, want.float(), atol=1e-6)
