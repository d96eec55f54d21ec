"""All4One loss terms against formulas written out with numpy loops (values and gradients)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cassle.losses.all4one import all4one_loss_func, feature_contrast_loss, neighbour_contrast_loss
from tests.helpers import central_differences


# ------------------------------------------------------- independent formulas
def _np_contrast(u: np.ndarray, v: np.ndarray, temperature: float, offset: int = 0) -> float:
    """-1/B sum_i log( exp(cos(u_i, v_{offset+i}) / T) / sum_j exp(cos(u_i, v_j) / T) )."""
    total = 0.0
    for i in range(u.shape[0]):
        sims = [float(u[i] @ v[j]) / (np.linalg.norm(u[i]) * np.linalg.norm(v[j])) / temperature for j in range(len(v))]
        total += -(sims[offset + i] - np.log(sum(np.exp(s) for s in sims)))
    return total / u.shape[0]


def _np_feature(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """0.5 sqrt(mean (C_ii - 1)^2) + 0.5 sqrt(mean_{i != j} C_ij^2), columns scaled to unit norm over the batch."""
    on, off = [], []
    for t, z in pairs:
        n, d = t.shape
        c = np.zeros((d, d))
        for i in range(d):
            for j in range(d):
                c[i, j] = sum(t[k, i] * z[k, j] for k in range(n)) / (np.linalg.norm(t[:, i]) * np.linalg.norm(z[:, j]))
        on.append(np.mean([(c[i, i] - 1) ** 2 for i in range(d)]))
        off.append(np.mean([c[i, j] ** 2 for i in range(d) for j in range(d) if i != j]))
    return 0.5 * np.sqrt(np.mean(on)) + 0.5 * np.sqrt(np.mean(off))


# ----------------------------------------------------------- neighbour / centroid contrast
def test_contrast_hand_computed() -> None:
    # orthogonal unit anchors; candidates equal to them: logits = I / T
    u = torch.eye(2, dtype=torch.float64)
    got = neighbour_contrast_loss(u, 3 * u, temperature=0.5)  # candidate scale does not matter (cosine)
    assert got.item() == pytest.approx(-np.log(np.exp(2) / (np.exp(2) + 1)), rel=1e-12)


def test_contrast_value_and_gradient_match_numpy() -> None:
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(4, 3)), rng.normal(size=(6, 3))
    ut = torch.from_numpy(u).requires_grad_()
    vt = torch.from_numpy(v).requires_grad_()
    loss = neighbour_contrast_loss(ut, vt, temperature=0.2, offset=2)
    assert loss.item() == pytest.approx(_np_contrast(u, v, 0.2, offset=2), rel=1e-10)
    loss.backward()
    gu = central_differences(lambda x: _np_contrast(x, v, 0.2, 2), u)
    gv = central_differences(lambda x: _np_contrast(u, x, 0.2, 2), v)
    assert np.allclose(ut.grad.numpy(), gu, atol=1e-6) and np.allclose(vt.grad.numpy(), gv, atol=1e-6)


def test_offset_is_the_multi_device_form() -> None:
    """Two 'ranks' with local anchors and the gathered candidates average to the one-device loss."""
    torch.manual_seed(0)
    u, v = torch.randn(8, 5, dtype=torch.float64), torch.randn(8, 5, dtype=torch.float64)
    whole = neighbour_contrast_loss(u, v, 0.1)
    per_rank = [neighbour_contrast_loss(u[r * 4 : (r + 1) * 4], v, 0.1, offset=r * 4) for r in range(2)]
    assert torch.allclose(whole, sum(per_rank) / 2)


def test_contrast_errors() -> None:
    with pytest.raises(ValueError, match="2-D"):
        neighbour_contrast_loss(torch.randn(4), torch.randn(4, 3))
    with pytest.raises(ValueError, match="same dim"):
        neighbour_contrast_loss(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="candidates"):
        neighbour_contrast_loss(torch.randn(4, 3), torch.randn(5, 3), offset=2)
    with pytest.raises(ValueError, match="temperature"):
        neighbour_contrast_loss(torch.randn(4, 3), torch.randn(4, 3), temperature=0.0)
    with pytest.raises(ValueError, match="empty"):
        neighbour_contrast_loss(torch.randn(0, 3), torch.randn(4, 3))


# ----------------------------------------------------------------- feature contrast
def test_feature_hand_computed() -> None:
    eye = torch.eye(2, dtype=torch.float64)
    swap = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    assert feature_contrast_loss([eye], [eye]).item() == pytest.approx(0.0, abs=1e-12)  # C = I
    # C = [[0, 1], [1, 0]]: diagonal misses by 1, off-diagonal is 1 -> 0.5 * 1 + 0.5 * 1
    assert feature_contrast_loss([eye], [swap]).item() == pytest.approx(1.0, rel=1e-12)
    # columns are rescaled, not standardised: scaling a column changes nothing, shifting one does
    assert feature_contrast_loss([eye * 3], [eye]).item() == pytest.approx(0.0, abs=1e-12)
    # eye + 1: unit columns (2, 1)/sqrt5 and (1, 2)/sqrt5, so C = [[1, 0.8], [0.8, 1]] against itself -> 0.5 * 0.8
    assert feature_contrast_loss([eye + 1], [eye + 1]).item() == pytest.approx(0.4, rel=1e-12)


def test_feature_value_and_gradient_match_numpy() -> None:
    rng = np.random.default_rng(1)
    t1, z2, t2, z1 = (rng.normal(size=(5, 3)) for _ in range(4))
    ts = [torch.from_numpy(a).requires_grad_() for a in (t1, z2, t2, z1)]
    loss = feature_contrast_loss([ts[0], ts[2]], [ts[1], ts[3]])
    assert loss.item() == pytest.approx(_np_feature([(t1, z2), (t2, z1)]), rel=1e-10)
    loss.backward()
    g = central_differences(lambda x: _np_feature([(t1, x), (t2, z1)]), z2)
    assert np.allclose(ts[1].grad.numpy(), g, atol=1e-6)
    g = central_differences(lambda x: _np_feature([(x, z2), (t2, z1)]), t1)
    assert np.allclose(ts[0].grad.numpy(), g, atol=1e-6)


def test_feature_errors() -> None:
    with pytest.raises(ValueError, match="as many"):
        feature_contrast_loss([torch.randn(4, 3)], [])
    with pytest.raises(ValueError, match="same shape"):
        feature_contrast_loss([torch.randn(4, 3)], [torch.randn(4, 2)])
    with pytest.raises(ValueError, match="at least 2 features"):
        feature_contrast_loss([torch.randn(4, 1)], [torch.randn(4, 1)])


# ----------------------------------------------------------------- combined objective
def test_combined_objective_pairs_views_crosswise() -> None:
    rng = np.random.default_rng(2)
    a = {k: (rng.normal(size=(4, 3)), rng.normal(size=(4, 3))) for k in ("nn", "p", "c", "s", "t", "z")}
    terms = all4one_loss_func(
        *[tuple(torch.from_numpy(x) for x in a[k]) for k in ("nn", "p", "c", "s", "t", "z")],
        temperature=0.2,
        centroid_temperature=0.1,
        neighbour_weight=0.5,
        centroid_weight=0.3,
        feature_weight=5.0,
    )
    nn_term = 0.5 * (_np_contrast(a["nn"][0], a["p"][1], 0.2) + _np_contrast(a["nn"][1], a["p"][0], 0.2))
    c_term = 0.5 * (_np_contrast(a["c"][0], a["s"][1], 0.1) + _np_contrast(a["c"][1], a["s"][0], 0.1))
    f_term = _np_feature([(a["t"][0], a["z"][1]), (a["t"][1], a["z"][0])])
    assert terms.neighbour.item() == pytest.approx(nn_term, rel=1e-10)
    assert terms.centroid.item() == pytest.approx(c_term, rel=1e-10)
    assert terms.feature.item() == pytest.approx(f_term, rel=1e-10)
    assert terms.loss.item() == pytest.approx(0.5 * nn_term + 0.3 * c_term + 5.0 * f_term, rel=1e-10)


def test_combined_objective_needs_two_views() -> None:
    two = (torch.randn(4, 3), torch.randn(4, 3))
    with pytest.raises(ValueError, match="centroids must hold the two views"):
        all4one_loss_func(two, two, two[:1], two, two, two)
