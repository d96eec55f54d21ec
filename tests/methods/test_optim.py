"""LARS and the warm-up cosine schedule, checked against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from cassle.methods.optim import LARS, build_optimizer, build_scheduler, warmup_cosine_value


def _lrs_over(sched: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list:
    opt = sched.optimizer
    out = []
    for _ in range(steps + 1):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def test_warmup_cosine_values() -> None:
    w = torch.nn.Parameter(torch.zeros(2))
    c = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [w]}, {"params": [c], "lr": 0.5}], lr=1.0)
    sched = build_scheduler("warmup_cosine", opt, total_steps=100, warmup_steps=10, warmup_start_lr=0.1, min_lr=0.01)
    lrs = _lrs_over(sched, 100)
    assert lrs[0] == pytest.approx([0.1, 0.1])  # warmup start (absolute)
    assert lrs[5] == pytest.approx([0.55, 0.3])  # halfway through warm-up
    assert lrs[10] == pytest.approx([1.0, 0.5])  # end of warm-up: each group's lr
    assert lrs[55][0] == pytest.approx(0.01 + 0.99 * 0.5)  # half of the cosine
    assert lrs[100] == pytest.approx([0.01, 0.01])  # min_lr at the end
    assert all(a[0] >= b[0] for a, b in zip(lrs[10:], lrs[11:]))  # monotone decay


def test_cosine_has_no_warmup_and_static_lr_groups_stay_constant() -> None:
    w, s = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [w]}, {"params": [s], "static_lr": True}], lr=0.2)
    lrs = _lrs_over(build_scheduler("cosine", opt, total_steps=10, warmup_steps=5), 10)
    assert lrs[0] == pytest.approx([0.2, 0.2])
    assert lrs[10][0] == pytest.approx(0.0, abs=1e-12)
    assert all(row[1] == pytest.approx(0.2) for row in lrs)


def test_warmup_cosine_value_function() -> None:
    assert warmup_cosine_value(0, 2.0, 4, 8) == 0.0
    assert warmup_cosine_value(4, 2.0, 4, 8) == pytest.approx(2.0)
    assert warmup_cosine_value(6, 2.0, 4, 8) == pytest.approx(1.0)
    assert warmup_cosine_value(50, 2.0, 4, 8, min_lr=0.1) == pytest.approx(0.1)


def test_schedulers_none_and_unknown() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert build_scheduler("none", opt, total_steps=10) is None
    with pytest.raises(ValueError, match="warmup_cosine"):
        build_scheduler("poly", opt, total_steps=10)
    with pytest.raises(ValueError, match="milestones"):
        build_scheduler("step", opt, total_steps=10)


def _one_lars_step(w0, g, wd=0.0, eta=0.02, lr=1.0, clip=False, exclude=False, momentum=0.0):
    p = torch.nn.Parameter(torch.tensor(w0))
    opt = LARS([p], lr=lr, momentum=momentum, weight_decay=wd, eta=eta, clip_lr=clip, exclude_bias_n_norm=exclude)
    p.grad = torch.tensor(g)
    opt.step()
    return p.detach()


def test_lars_trust_ratio_hand_case() -> None:
    # ||w|| = 5, ||g|| = 1 -> q = 0.02 * 5 / 1 = 0.1
    new = _one_lars_step([[3.0, 4.0]], [[0.6, 0.8]])
    assert torch.allclose(new, torch.tensor([[3.0 - 0.06, 4.0 - 0.08]]))
    # with decay: d = g + 0.1 w = [0.9, 1.2], ||d|| = 1.5, q = 0.1 / 1.5
    new = _one_lars_step([[3.0, 4.0]], [[0.6, 0.8]], wd=0.1)
    assert torch.allclose(new, torch.tensor([[3.0 - 0.06, 4.0 - 0.08]]))
    # trust ratio exposed as a function
    q = LARS.trust_ratio(torch.tensor([3.0, 4.0]), torch.tensor([0.6, 0.8]), 0.02, 1.0, False)
    assert q.item() == pytest.approx(0.1)


def test_lars_clip_caps_adaptive_lr() -> None:
    # q = 0.02 * 5 / 0.01 = 10; with clip and lr = 0.5: min(10 / 0.5, 1) = 1 -> plain SGD
    new = _one_lars_step([[3.0, 4.0]], [[0.006, 0.008]], lr=0.5, clip=True)
    assert torch.allclose(new, torch.tensor([[3.0 - 0.003, 4.0 - 0.004]]))


def test_lars_excludes_bias_and_norm_params() -> None:
    # 1-D tensor, excluded: plain SGD step without weight decay
    new = _one_lars_step([3.0, 4.0], [0.6, 0.8], wd=0.5, lr=0.1, exclude=True)
    assert torch.allclose(new, torch.tensor([3.0 - 0.06, 4.0 - 0.08]))
    # same tensor, not excluded: trust ratio and decay apply
    d = torch.tensor([0.6, 0.8]) + 0.5 * torch.tensor([3.0, 4.0])
    q = 0.02 * 5.0 / d.norm()
    new = _one_lars_step([3.0, 4.0], [0.6, 0.8], wd=0.5, lr=0.1, exclude=False)
    assert torch.allclose(new, torch.tensor([3.0, 4.0]) - 0.1 * q * d)
    # a matrix is never excluded
    new = _one_lars_step([[3.0, 4.0]], [[0.6, 0.8]], exclude=True)
    assert torch.allclose(new, torch.tensor([[2.94, 3.92]]))


def test_lars_momentum_accumulates() -> None:
    p = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))
    opt = LARS([p], lr=1.0, momentum=0.9, eta=0.02)
    p.grad = torch.tensor([[0.6, 0.8]])
    opt.step()
    first = torch.tensor([[0.06, 0.08]])
    w1 = torch.tensor([[3.0, 4.0]]) - first
    opt.step()  # same gradient, new norm of w
    d = torch.tensor([[0.6, 0.8]]) * (0.02 * w1.norm() / 1.0)
    assert torch.allclose(p.detach(), w1 - (0.9 * first + d), atol=1e-6)


def test_build_optimizer_kinds_and_errors() -> None:
    params = [{"name": "a", "params": [torch.nn.Parameter(torch.zeros(2, 2))]}]
    assert isinstance(build_optimizer("sgd", params, lr=0.1, weight_decay=0), torch.optim.SGD)
    assert isinstance(build_optimizer("lars", params, lr=0.1, weight_decay=0), LARS)
    assert isinstance(build_optimizer("adamw", params, lr=0.1, weight_decay=0), torch.optim.AdamW)
    assert build_optimizer("sgd", params, lr=0.1, weight_decay=0).param_groups[0]["name"] == "a"
    with pytest.raises(ValueError, match="sgd, lars, adamw"):
        build_optimizer("rmsprop", params, lr=0.1, weight_decay=0)
    with pytest.raises(ValueError):
        LARS(params, lr=0.1, eta=0.0)
    assert math.isclose(LARS(params, lr=0.1).defaults["eta"], 0.02)
