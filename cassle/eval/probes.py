"""Probes that measure how good frozen features are.

Every probe has the same signature ``probe(train_f, train_y, test_f, test_y,
**kw) -> float`` and returns the test accuracy **in percent** (``nan`` when the
test set is empty). The registry :data:`PROBES` maps a CLI name to a probe.

* ``knn``: weighted k-nearest-neighbour vote on cosine similarity, as in
  Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance
  Discrimination", CVPR 2018 (the kNN monitor used by solo-learn and CaSSLe).
* ``ridge``: closed-form ridge-regression classifier on standardised features
  (scikit-learn ``RidgeClassifier``); fast and deterministic.
* ``linear``: multinomial logistic regression trained full batch with L-BFGS
  (the usual "linear probe"), fixed seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["knn_accuracy", "ridge_accuracy", "linear_accuracy", "PROBES", "Probe"]

ArrayLike = Tensor | np.ndarray
Probe = Callable[..., float]


def _as_tensors(train_f: ArrayLike, train_y: ArrayLike, test_f: ArrayLike, test_y: ArrayLike):
    """Convert inputs to CPU tensors (float32 features ``N×D``, long targets ``N``) and check shapes."""
    tr_f = torch.as_tensor(train_f).detach().float().cpu()
    te_f = torch.as_tensor(test_f).detach().float().cpu()
    tr_y = torch.as_tensor(train_y).detach().long().cpu().reshape(-1)
    te_y = torch.as_tensor(test_y).detach().long().cpu().reshape(-1)
    if tr_f.dim() == 1:
        tr_f = tr_f.unsqueeze(1)
    if te_f.dim() == 1:
        te_f = te_f.unsqueeze(1)
    tr_f, te_f = tr_f.flatten(1), te_f.flatten(1)
    if tr_f.shape[0] != tr_y.shape[0]:
        raise ValueError(f"train features have {tr_f.shape[0]} rows but {tr_y.shape[0]} targets")
    if te_f.shape[0] != te_y.shape[0]:
        raise ValueError(f"test features have {te_f.shape[0]} rows but {te_y.shape[0]} targets")
    if te_f.shape[0] > 0 and tr_f.shape[0] > 0 and tr_f.shape[1] != te_f.shape[1]:
        raise ValueError(f"train and test features differ in dimension: {tr_f.shape[1]} vs {te_f.shape[1]}")
    return tr_f, tr_y, te_f, te_y


def _trivial(tr_y: Tensor, te_y: Tensor) -> float | None:
    """Handle the degenerate cases shared by every probe.

    Returns ``nan`` for an empty test set, the accuracy of always predicting
    the only train class when train has a single class, and ``None`` when the
    probe has real work to do. An empty train set is an error.
    """
    if te_y.numel() == 0:
        return float("nan")
    if tr_y.numel() == 0:
        raise ValueError("cannot fit a probe on an empty training set")
    classes = torch.unique(tr_y)
    if classes.numel() == 1:
        return 100.0 * (te_y == classes[0]).float().mean().item()
    return None


def knn_accuracy(
    train_f: ArrayLike,
    train_y: ArrayLike,
    test_f: ArrayLike,
    test_y: ArrayLike,
    k: int = 20,
    temperature: float = 0.07,
    batch_size: int = 1024,
) -> float:
    """Weighted kNN accuracy (percent) on cosine similarity (Wu et al., CVPR 2018).

    Features are L2-normalised; for each test row the ``k`` most similar train
    rows vote for their class with weight ``exp(sim / temperature)`` and the
    class with the largest total weight wins (ties: lowest class id). ``k``
    is clipped to the number of train rows. Test rows are processed in chunks
    of ``batch_size`` so memory stays ``O(batch_size × N_train)``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tr_f, tr_y, te_f, te_y = _as_tensors(train_f, train_y, test_f, test_y)
    trivial = _trivial(tr_y, te_y)
    if trivial is not None:
        return trivial
    # map labels to 0..C-1 so arbitrary (even negative or sparse) ids work
    classes, tr_idx = torch.unique(tr_y, return_inverse=True)
    num_classes = classes.numel()
    k = min(k, tr_f.shape[0])
    tr_n = F.normalize(tr_f, dim=1)
    te_n = F.normalize(te_f, dim=1)
    correct = 0
    for start in range(0, te_n.shape[0], batch_size):
        chunk = te_n[start : start + batch_size]
        sim = chunk @ tr_n.T  # B × N_train
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(chunk.shape[0], num_classes)
        votes.scatter_add_(1, tr_idx[top_idx], weights)
        pred = classes[votes.argmax(dim=1)]
        correct += (pred == te_y[start : start + batch_size]).sum().item()
    return 100.0 * correct / te_y.numel()


def ridge_accuracy(
    train_f: ArrayLike,
    train_y: ArrayLike,
    test_f: ArrayLike,
    test_y: ArrayLike,
    alpha: float = 1.0,
) -> float:
    """Ridge-classifier accuracy (percent) on standardised features.

    A :class:`sklearn.preprocessing.StandardScaler` is fit on the train
    features only, then :class:`sklearn.linear_model.RidgeClassifier` with
    regularisation ``alpha``.
    """
    from sklearn.linear_model import RidgeClassifier
    from sklearn.preprocessing import StandardScaler

    tr_f, tr_y, te_f, te_y = _as_tensors(train_f, train_y, test_f, test_y)
    trivial = _trivial(tr_y, te_y)
    if trivial is not None:
        return trivial
    x_tr = tr_f.double().numpy()
    x_te = te_f.double().numpy()
    scaler = StandardScaler().fit(x_tr)
    clf = RidgeClassifier(alpha=alpha).fit(scaler.transform(x_tr), tr_y.numpy())
    pred = clf.predict(scaler.transform(x_te))
    return 100.0 * float(np.mean(pred == te_y.numpy()))


def linear_accuracy(
    train_f: ArrayLike,
    train_y: ArrayLike,
    test_f: ArrayLike,
    test_y: ArrayLike,
    weight_decay: float = 1e-4,
    max_iter: int = 200,
    seed: int = 0,
) -> float:
    """Linear-probe accuracy (percent): logistic regression trained with L-BFGS.

    Features are standardised with the train mean / std; a linear layer is
    trained full batch on the cross-entropy plus ``weight_decay · ||W||²``
    for at most ``max_iter`` L-BFGS iterations, from a seeded initialisation
    (the result does not depend on the global RNG, whose state is untouched).
    """
    tr_f, tr_y, te_f, te_y = _as_tensors(train_f, train_y, test_f, test_y)
    trivial = _trivial(tr_y, te_y)
    if trivial is not None:
        return trivial
    classes, tr_idx = torch.unique(tr_y, return_inverse=True)
    mean = tr_f.mean(0, keepdim=True)
    std = tr_f.std(0, keepdim=True, unbiased=False).clamp_min(1e-6)
    x_tr = (tr_f - mean) / std
    x_te = (te_f - mean) / std
    gen = torch.Generator().manual_seed(seed)
    d, c = x_tr.shape[1], classes.numel()
    bound = 1.0 / math.sqrt(max(d, 1))
    # works even when called under torch.inference_mode / no_grad (e.g. from the task loop)
    with torch.inference_mode(False), torch.enable_grad():
        # normal tensors (not inference tensors), so autograd may save them for backward
        x_fit, y_fit = x_tr.clone(), tr_idx.clone()
        weight = ((torch.rand(d, c, generator=gen) * 2 - 1) * bound).requires_grad_()
        bias = torch.zeros(c, requires_grad=True)
        opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(x_fit @ weight + bias, y_fit) + weight_decay * weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
    with torch.no_grad():
        pred = classes[(x_te @ weight.detach() + bias.detach()).argmax(1)]
    return 100.0 * (pred == te_y).float().mean().item()


PROBES: dict[str, Probe] = {
    "knn": knn_accuracy,
    "ridge": ridge_accuracy,
    "linear": linear_accuracy,
}
