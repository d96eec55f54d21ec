"""``main_linear.py`` under DDP: two ranks, each on its half of the data, report the metrics of the whole set.

The loaders are built as :func:`cassle.eval.linear.run_linear` builds them (the whole set, unshuffled) and
Lightning shards them (``DistributedSampler``: rank ``r`` gets positions ``r, r + 2, ...``, the odd-sized
test set padded with one repeated sample). The classifier is fixed so that every even position is
classified correctly and every odd one wrongly: rank 0 alone would report 100 %, rank 1 alone ~0 %.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from cassle.eval.linear_metrics import EvalLayout
from cassle.eval.linear_model import LinearModel, PrecomputedFeatures
from tests.distributed.spawn import run_ranks

C = 4  # classes; tasks {0, 1} and {2, 3}
N_TEST, N_TRAIN = 21, 20


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features are one-hot rows: the identity classifier predicts ``argmax(x)``; even positions get their
    target's one-hot (correct), odd positions the next class's (wrong)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (n,), generator=g)
    pred = torch.where(torch.arange(n) % 2 == 0, y, (y + 1) % C)
    return torch.eye(C)[pred], y


def _model() -> LinearModel:
    _, y = _data(N_TEST, 0)
    layout = EvalLayout(
        num_test=N_TEST,
        task_test_indices=[torch.nonzero(y < 2).flatten(), torch.nonzero(y >= 2).flatten()],
        task_classes=[[0, 1], [2, 3]],
        num_classes=C,
    )
    model = LinearModel(PrecomputedFeatures(C), layout, lr=0.0, scheduler="none", feature_norm="none")
    with torch.no_grad():
        model.classifier.weight.copy_(torch.eye(C))
        model.classifier.bias.zero_()
    return model


def _expected() -> dict[str, float]:
    """Whole-set metrics, written out: accuracy over all samples and over each task's samples."""
    x, y = _data(N_TEST, 0)
    correct = (x.argmax(1) == y).float()
    out = {"val_acc1": 100 * correct.mean().item()}
    for t, classes in enumerate([[0, 1], [2, 3]]):
        in_task = (y == classes[0]) | (y == classes[1])
        out[f"val_acc1_task{t}"] = 100 * correct[in_task].mean().item()
    xt, yt = _data(N_TRAIN, 1)
    out["train_acc1"] = 100 * (xt.argmax(1) == yt).float().mean().item()
    return out


def _linear_on_two_ranks(rank: int, world: int) -> dict[str, Any]:
    model = _model()
    seen: list[int] = []
    original = model.validation_step

    def spy(batch, batch_idx):
        seen.extend(batch[2].tolist())
        return original(batch, batch_idx)

    model.validation_step = spy
    x, y = _data(N_TEST, 0)
    test_loader = DataLoader(TensorDataset(x, y, torch.arange(N_TEST)), batch_size=4, shuffle=False)
    xt, yt = _data(N_TRAIN, 1)
    train_loader = DataLoader(TensorDataset(xt, yt), batch_size=N_TRAIN // world, shuffle=True)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=world,
        strategy="ddp",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, train_dataloaders=train_loader, val_dataloaders=test_loader)
    return {
        "metrics": dict(model.last_metrics),
        "train_acc1": float(trainer.callback_metrics["train_acc1_epoch"])
        if "train_acc1_epoch" in trainer.callback_metrics
        else float(trainer.callback_metrics["train_acc1"]),
        "seen": seen,
    }


@pytest.fixture(scope="module")
def linear_results() -> list[dict[str, Any]]:
    return run_ranks(_linear_on_two_ranks)


def test_each_rank_evaluates_its_own_half(linear_results):
    s0, s1 = (set(r["seen"]) for r in linear_results)
    assert s0 | s1 == set(range(N_TEST))
    assert len(s0 & s1) <= 1  # the one padded sample of the odd-sized set
    assert all(i % 2 == 0 for i in s0)  # rank 0 alone would score 100 %


def test_every_rank_reports_the_accuracy_of_the_whole_test_set(linear_results):
    want = _expected()
    for res in linear_results:
        for key in ("val_acc1", "val_acc1_task0", "val_acc1_task1"):
            assert res["metrics"][key] == pytest.approx(want[key], abs=1e-9), key


def test_training_accuracy_is_synced_over_ranks(linear_results):
    """The logged training accuracy is the whole training set's (it was rank 0's half's: 30 % here for 50 %)."""
    want = _expected()["train_acc1"]
    for res in linear_results:
        assert res["train_acc1"] == pytest.approx(want, abs=1e-4)
