"""MAE loss and patchify against independent loop computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cassle.losses import mae_loss_func, patchify


def test_patchify_layout_matches_loops():
    imgs = torch.arange(2 * 3 * 4 * 4, dtype=torch.float64).reshape(2, 3, 4, 4)
    p = 2
    got = patchify(imgs, p)
    assert got.shape == (2, 4, p * p * 3)
    for b in range(2):
        for gi in range(2):
            for gj in range(2):
                n = gi * 2 + gj
                expect = [imgs[b, c, gi * p + r, gj * p + s] for r in range(p) for s in range(p) for c in range(3)]
                assert torch.equal(got[b, n], torch.stack(expect))


def _numpy_mae(pred, target, mask, norm):
    total, count = 0.0, 0.0
    for b in range(pred.shape[0]):
        for n in range(pred.shape[1]):
            if not mask[b, n]:
                continue
            t = target[b, n]
            if norm:
                t = (t - t.mean()) / np.sqrt(t.var(ddof=1) + 1e-6)
            total += np.mean((pred[b, n] - t) ** 2)
            count += 1
    return total / count


@pytest.mark.parametrize("norm", [False, True])
def test_matches_numpy_reference(norm):
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(3, 8, 12)), rng.normal(size=(3, 8, 12))
    mask = (rng.random((3, 8)) < 0.6).astype(np.float64)
    mask[0, 0] = 1
    got = mae_loss_func(torch.from_numpy(pred), torch.from_numpy(target), torch.from_numpy(mask), norm_pix_loss=norm)
    assert got.item() == pytest.approx(_numpy_mae(pred, target, mask, norm), rel=1e-9)


def test_known_value_and_visible_patches_ignored():
    pred = torch.zeros(1, 2, 4)
    target = torch.stack([torch.full((4,), 2.0), torch.full((4,), 100.0)]).unsqueeze(0)
    # only patch 0 is masked: its error is 2² = 4; patch 1's huge error is ignored
    assert mae_loss_func(pred, target, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(4.0)


def test_errors():
    with pytest.raises(ValueError, match="divisible"):
        patchify(torch.zeros(1, 3, 5, 5), 2)
    with pytest.raises(ValueError, match="no patch is masked"):
        mae_loss_func(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="mask must be"):
        mae_loss_func(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.zeros(2, 2))
