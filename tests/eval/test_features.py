"""Tests for cassle.eval.features.extract_features."""

import torch
from torch import nn

from cassle.eval.features import extract_features


def _loader(n_batches=3, bs=4, shape=(3, 2, 2)):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(bs, *shape, generator=g), torch.arange(bs) + 10 * b) for b in range(n_batches)]


def test_shapes_dtypes_and_values():
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    loader = _loader()
    f, y = extract_features(backbone, loader, "cpu")
    assert f.shape == (12, 5) and f.dtype == torch.float32 and f.device.type == "cpu"
    assert y.dtype == torch.long and y.tolist() == [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23]
    expected = torch.cat([backbone(x) for x, _ in loader]).detach()
    torch.testing.assert_close(f, expected)
    # normal tensors: usable in place and with autograd outside inference mode
    assert not f.is_inference()
    f.add_(1.0)


def test_eval_mode_during_and_modes_restored_after():
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(self.training)
            return x.flatten(1)

    spy = Spy()
    frozen = nn.BatchNorm1d(12)
    backbone = nn.Sequential(spy, frozen, nn.Dropout(0.5))
    backbone.train()
    frozen.eval()  # a submodule deliberately left in eval mode must stay so
    extract_features(backbone, _loader())
    assert seen == [False, False, False]
    assert backbone.training and spy.training and backbone[2].training
    assert not frozen.training
    # dropout off and BN running stats untouched during extraction
    assert torch.equal(frozen.running_mean, torch.zeros(12))

    backbone.eval()
    extract_features(backbone, _loader())
    assert not backbone.training and not spy.training


def test_mode_restored_when_a_batch_fails():
    backbone = nn.Flatten()
    backbone.train()
    try:
        extract_features(backbone, [("not a batch",)])
    except ValueError as e:
        assert "(images, targets)" in str(e)
    else:  # pragma: no cover
        raise AssertionError("expected ValueError")
    assert backbone.training


def test_none_and_empty_loader_give_empty_tensors():
    for loader in (None, []):
        f, y = extract_features(nn.Flatten(), loader)
        assert f.shape == (0, 0) and f.dtype == torch.float32
        assert y.shape == (0,) and y.dtype == torch.long
