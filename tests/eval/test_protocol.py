"""Tests for cassle.eval.protocol.evaluate_after_task with a fake datamodule."""

import logging

import pytest
import torch
from torch import nn

from cassle.eval.protocol import evaluate_after_task

DIM = 3 * 2 * 2  # images 3×2×2, flattened by the backbone


def _images(classes, seed):
    """One image per entry of ``classes``: a spike at position ``class`` plus small noise."""
    g = torch.Generator().manual_seed(seed)
    x = 0.05 * torch.rand(len(classes), DIM, generator=g)
    x[torch.arange(len(classes)), torch.as_tensor(classes)] += 1.0
    return x.view(-1, 3, 2, 2)


class FakeDataModule:
    """Two tasks (classes {0,1} and {2,3}), one batch per loader; counts loader requests."""

    num_tasks = 2

    def __init__(self, no_test=False, unlabelled=False):
        self.no_test, self.unlabelled = no_test, unlabelled
        self.requests = []
        cls = {0: [0, 1], 1: [2, 3]}
        self.data = {}
        for t, (a, b) in cls.items():
            self.data[(t, "train")] = (_images([a, a, b, b], seed=t), torch.tensor([a, a, b, b]))
            test_img = _images([a, b, a, b], seed=10 + t)
            test_y = torch.tensor([a, b, a, b])
            if t == 1:
                test_y[0] = 3  # image of class 2 labelled 3: one error on task 1
            self.data[(t, "test")] = (test_img, test_y)

    def eval_dataloader(self, task, split):
        self.requests.append((task, split))
        if self.no_test and split == "test":
            return None
        x, y = self.data[(task, split)]
        if self.unlabelled:
            y = torch.full_like(y, -1)
        return [(x, y)]

    def joint_eval_dataloader(self, split):  # pragma: no cover - must not be used
        raise AssertionError("joint features must be reused, not re-extracted")


class CountingIdentity(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        self.calls += 1
        return x.flatten(1) * self.scale


def test_values_and_single_extraction():
    dm, backbone = FakeDataModule(), CountingIdentity()
    backbone.train()
    out = evaluate_after_task(backbone, dm, ["knn", "ridge", "linear"], "cpu", knn_k=2)
    # 2 tasks × 2 splits, one batch each: 4 forwards for 3 probes
    assert backbone.calls == 4
    assert sorted(dm.requests) == [(0, "test"), (0, "train"), (1, "test"), (1, "train")]
    assert backbone.training  # mode restored
    for p in ("knn", "ridge", "linear"):
        # task 0 perfect, task 1 has 1 wrong label of 4; joint: 7 of 8
        assert out["per_task"][p] == pytest.approx([100.0, 75.0]), p
        assert out["joint"][p] == pytest.approx(87.5), p


def test_no_test_split_skips(caplog):
    backbone = CountingIdentity()
    with caplog.at_level(logging.INFO, logger="cassle.eval.protocol"):
        assert evaluate_after_task(backbone, FakeDataModule(no_test=True), ["knn"], "cpu") is None
    assert "probes skipped" in caplog.text
    assert backbone.calls == 0  # detected before any extraction


def test_unlabelled_skips(caplog):
    with caplog.at_level(logging.INFO, logger="cassle.eval.protocol"):
        out = evaluate_after_task(CountingIdentity(), FakeDataModule(unlabelled=True), ["knn"], "cpu")
    assert out is None
    assert "probes skipped" in caplog.text and "labels" in caplog.text


def test_unknown_probe_is_a_clear_error():
    with pytest.raises(ValueError, match="valid probes"):
        evaluate_after_task(CountingIdentity(), FakeDataModule(), ["svm"], "cpu")


def test_diverged_backbone_gives_a_clear_error():
    """NaN features (a run that diverged) name the problem and the fix instead of failing inside a probe."""
    import pytest
    import torch
    from torch import nn

    from cassle.eval.protocol import evaluate_after_task

    class NaNNet(nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 4), float("nan"))

    class DM:
        num_tasks = 1

        def eval_dataloader(self, task, split):
            return [(torch.zeros(3, 3, 4, 4), torch.tensor([0, 1, 0]))]

    with pytest.raises(FloatingPointError, match="lower --lr"):
        evaluate_after_task(NaNNet(), DM(), ["knn"], torch.device("cpu"))
