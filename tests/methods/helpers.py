"""Tiny configs, batches, trainers and contract checks shared by the method tests."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from cassle.methods import METHODS, BaseMethod

# Tiny models are much faster single-threaded, above all on a shared 2-core machine.
torch.set_num_threads(1)

S = 16  # image size of every test
B = 8  # batch size of every test


# ----------------------------------------------------------------- helpers
def tiny_cfg(**extra: Any) -> dict[str, Any]:
    """A config with a ~30k-parameter encoder and small heads."""
    cfg = dict(
        encoder="resnet18",
        base_width=4,
        crop_size=S,
        num_classes=10,
        proj_hidden_dim=32,
        output_dim=16,
        pred_hidden_dim=16,
        num_prototypes=20,
        queue_size=64,
        batch_size=B,
        lr=0.05,
        optimizer="sgd",
        scheduler="warmup_cosine",
        warmup_epochs=1,
        max_epochs=2,
        weight_decay=1e-5,
    )
    cfg.update(extra)
    return cfg


def make_batch(n: int = B, seed: int = 0, num_classes: int = 10):
    g = torch.Generator().manual_seed(seed)
    views = [torch.randn(n, 3, S, S, generator=g) for _ in range(2)]
    return torch.arange(n), views, torch.randint(0, num_classes, (n,), generator=g)


class TwoViewDataset(Dataset):
    """Fixed random images; the two 'views' are the image plus small fixed noise."""

    def __init__(self, n: int = 32, num_classes: int = 10, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, S, S, generator=g)
        self.noise = 0.1 * torch.randn(2, n, 3, S, S, generator=g)
        self.y = torch.randint(0, num_classes, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return i, [self.x[i] + self.noise[0, i], self.x[i] + self.noise[1, i]], self.y[i]


class EvalDataset(TwoViewDataset):
    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


def make_trainer(**kw: Any) -> pl.Trainer:
    kw.setdefault("max_epochs", 1)
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )


def train_loader(n: int = 32) -> DataLoader:
    return DataLoader(TwoViewDataset(n), batch_size=B, shuffle=False, drop_last=True)


def check_contract(method_cls: type[BaseMethod], **extra: Any) -> dict[str, Any]:
    """One training step: the contract dict with per-view shapes."""
    model = method_cls.from_flat(tiny_cfg(**extra))
    out = model.training_step(make_batch(), 0)
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    assert len(out["feats"]) == len(out["z"]) == model.num_views == 2
    for f, z in zip(out["feats"], out["z"]):
        assert f.shape == (B, model.num_features)
        assert z.shape == (B, model.output_dim)
    fwd = model(make_batch()[1][0])
    assert fwd["feats"].shape == (B, model.num_features) and fwd["z"].shape == (B, model.output_dim)
    return out


def check_loss_decreases(method_cls: type[BaseMethod], steps: int = 15, lr: float = 0.05, **extra: Any) -> list[float]:
    """Plain SGD on one fixed batch: the SSL loss must go down."""
    torch.manual_seed(0)
    model = method_cls.from_flat(tiny_cfg(num_classes=0, **extra))
    opt = torch.optim.SGD([p for g in model.learnable_params for p in g["params"]], lr=lr, momentum=0.9)
    batch = make_batch()
    losses = []
    for step in range(steps):
        loss = model.training_step(batch, step)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if model.momentum_pairs:
            model.update_momentum(step, steps)
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < losses[0], losses
    return losses


def check_fit(method_cls: type[BaseMethod], **extra: Any) -> BaseMethod:
    """A short real fit (optimizer, scheduler, hooks, validation) on the CPU."""
    model = method_cls.from_flat(tiny_cfg(**extra))
    trainer = make_trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(model, train_loader(), DataLoader(EvalDataset(16), batch_size=B))
    assert trainer.global_step == 4
    assert "val_acc1" in trainer.callback_metrics
    name = {"barlow_twins": "barlow"}.get(_name_of(method_cls), _name_of(method_cls))
    assert f"train_{name}_loss" in trainer.callback_metrics
    return model


def _name_of(method_cls: type[BaseMethod]) -> str:
    return next(k for k, v in METHODS.items() if v is method_cls)


def check_neighbour_prediction_gradient(method_cls: type[BaseMethod], paper_loss: Any) -> dict[str, Any]:
    """float64, one training step of a nearest-neighbour predictor method (NNBYOL, NNSiam): the loss equals
    ``paper_loss(p1, p2, nn1, nn2)`` (an independent loop formula on numpy arrays) and its gradient w.r.t. the
    predictions, the loss's only differentiable input, equals that formula's central differences; the
    neighbours are constants. Returns the step's output."""
    import numpy as np
    import pytest

    from tests.helpers import central_differences

    torch.manual_seed(0)
    model = method_cls.from_flat(tiny_cfg(num_classes=0, output_dim=4, queue_size=16)).double()
    idx, views, y = make_batch()
    out = model.training_step((idx, [v.double() for v in views], y), 0)
    p1, p2 = out["p"]
    nn1, nn2 = (n.numpy() for n in out["nn"])
    assert not any(t.requires_grad for t in out["nn"])
    grads = torch.autograd.grad(out["loss"], [p1, p2])
    base = [p1.detach().numpy(), p2.detach().numpy()]
    assert out["loss"].item() == pytest.approx(paper_loss(*base, nn1, nn2), rel=1e-12)
    for view, grad in enumerate(grads):
        numeric = central_differences(
            lambda x, view=view: paper_loss(*(x if k == view else b for k, b in enumerate(base)), nn1, nn2),
            base[view],
        )
        assert np.abs(numeric).max() > 1e-3  # a real gradient, not a trivially zero one
        assert np.allclose(grad.numpy(), numeric, atol=1e-8), view
    return out


def brute_force_nearest(z: torch.Tensor, support: torch.Tensor) -> list[int]:
    """Index of the highest cosine similarity, one query at a time (the
    reference the nearest-neighbour methods' vectorised support lookup is checked against)."""
    out = []
    for q in z:
        cos = [float(q @ s / (q.norm() * s.norm())) for s in support]
        out.append(max(range(len(cos)), key=cos.__getitem__))
    return out
