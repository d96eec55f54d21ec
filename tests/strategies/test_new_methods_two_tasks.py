"""Issue 11's ten methods train two tiny tasks with ``finetune`` and ``cassle`` through a real Lightning ``Trainer``.

Like ``main_continual``'s task loop (``cassle/continual.py::_train``): per task ``on_task_start(task)``, then a
fresh ``Trainer`` and ``fit``. Each task is 2 epochs x 1 batch (2 steps; DeepCluster V2 trains its SSL loss from
its second epoch), on generated 8 px images with a resnet9 of width 4, so a case takes about a second. The
end-to-end run through ``main_continual`` itself (probes, checkpoints) is ``tests/test_continual.py``'s (slow).
"""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from cassle.methods import METHODS
from cassle.strategies import build_model_class
from tests.methods.helpers import make_trainer
from tests.strategies.test_cassle import CFG as CASSLE_CFG

pytestmark = pytest.mark.usefixtures("one_thread")

#: the methods issue 11 added (the CaSSLe repository's five, then solo-learn's five)
NEW_METHODS = ["dino", "nnclr", "deepclusterv2", "ressl", "wmse", "mocov3", "nnbyol", "nnsiam", "vibcreg", "all4one"]
S, B = 8, 8
#: the CaSSLe mechanism tests' tiny configuration, two epochs of one batch per task
CFG = {**CASSLE_CFG, "crop_size": S, "batch_size": B, "max_epochs": 2, "warmup_epochs": 0}


class _Task(Dataset):
    """Task ``t``'s images: its own random images; the two views are the image plus small fixed noise."""

    def __init__(self, task: int, n: int = B) -> None:
        g = torch.Generator().manual_seed(100 + task)
        self.x = torch.randn(n, 3, S, S, generator=g)
        self.noise = 0.1 * torch.randn(2, n, 3, S, S, generator=g)
        self.y = torch.randint(0, 4, (n,), generator=g)
        self.offset = n * task  # dataset-wide sample indexes, as a task split gives

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.offset + i, [self.x[i] + self.noise[0, i], self.x[i] + self.noise[1, i]], self.y[i]


class _Record(pl.Callback):
    """Every step's logged training losses (``train_<name>_loss``: the method's, the online classifier's and
    CaSSLe's ``train_distill_loss``) and the weights at the start of the fit (after ``on_task_start``)."""

    def __init__(self) -> None:
        self.losses: list[dict[str, float]] = []
        self.start: dict[str, dict[str, torch.Tensor]] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = _weights(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        logged = trainer.callback_metrics
        self.losses.append({k: float(v) for k, v in logged.items() if k.startswith("train_") and k.endswith("_loss")})


def _weights(model) -> dict[str, dict[str, torch.Tensor]]:
    parts = {"student": model.backbone}
    if getattr(model, "frozen_backbone", None) is not None:
        parts |= {"teacher": model.frozen_backbone, "teacher_proj": model.frozen_projector}
        parts["predictor"] = model.distill_predictor
    return {name: {k: v.detach().clone() for k, v in m.state_dict().items()} for name, m in parts.items()}


def _moved(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    """Whether a parameter of ``module`` changed (trained), not merely a BatchNorm running statistic."""
    return any(not torch.equal(before[k], p) for k, p in module.named_parameters())


def _fit_task(model, task: int) -> _Record:
    pl.seed_everything(task, verbose=False)
    model.on_task_start(task)  # as main_continual: the teacher snapshot, before the task's fit
    rec = _Record()
    trainer = make_trainer(
        max_epochs=2, limit_train_batches=1, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[rec]
    )
    trainer.fit(model, DataLoader(_Task(task), batch_size=B, drop_last=True))
    assert trainer.global_step == 2
    return rec


def test_the_new_methods_are_registered():
    assert set(NEW_METHODS) <= set(METHODS)


@pytest.mark.parametrize("strategy", ["finetune", "cassle"])
@pytest.mark.parametrize("method", NEW_METHODS)
def test_two_tiny_tasks(method, strategy):
    torch.manual_seed(0)
    model = build_model_class(method, strategy).from_flat({**CFG, "method": method})
    t0 = _fit_task(model, 0)
    t1 = _fit_task(model, 1)
    for task, rec in enumerate([t0, t1]):
        assert len(rec.losses) == 2, rec.losses
        for step in rec.losses:
            assert all(torch.isfinite(torch.tensor(v)) for v in step.values()), (task, step)
            # task 0 never distils; with cassle, task 1 distils at every step
            assert ("train_distill_loss" in step) == (strategy == "cassle" and task == 1), (task, step)
        # the method's own loss trains (DeepCluster V2's too: it clustered at the start of epoch 1)
        assert rec.losses[-1][f"train_{method}_loss"] > 0, (task, rec.losses)
        assert _moved(rec.start["student"], model.backbone), f"task {task}: the student did not train"

    if strategy == "finetune":
        assert not hasattr(model, "frozen_backbone") and not hasattr(model, "distill_predictor")
        return
    assert model.distiller == METHODS[method].family and model.distilling
    assert all(v["train_distill_loss"] > 0 for v in t1.losses)
    start = t1.start  # right after on_task_start(1): the teacher is the weights task 0 ended with
    assert all(torch.equal(v, start["student"][k]) for k, v in start["teacher"].items())
    for name, module in [("teacher", model.frozen_backbone), ("teacher_proj", model.frozen_projector)]:
        now = module.state_dict()
        for k, v in start[name].items():  # parameters and BatchNorm buffers
            assert torch.equal(v, now[k]), f"{name}.{k} moved"
        assert all(not p.requires_grad for p in module.parameters())
    assert _moved(start["predictor"], model.distill_predictor), "the distillation predictor did not train"
