"""EMP-SSL: many crops per image, the loss on the normalised projections, strategies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import main_continual
from cassle.args import ArgumentError, parse_args
from cassle.continual import prepare_run
from cassle.losses import emp_ssl_loss_func
from cassle.methods import EMPSSL, METHODS
from cassle.strategies import build_model_class

torch.set_num_threads(1)

CROPS, B, S = 3, 8, 8
CFG = dict(
    encoder="resnet9",
    base_width=4,
    crop_size=S,
    num_classes=0,
    num_crops=CROPS,
    proj_hidden_dim=32,
    output_dim=16,
    batch_size=B,
    lr=0.05,
    max_epochs=1,
    distill_proj_hidden_dim=16,
    weight_decay=0.0,
)
TINY = [
    "--dataset",
    "digits",
    "--encoder",
    "resnet9",
    "--base_width",
    "4",
    "--crop_size",
    "8",
    "--method",
    "emp_ssl",
    "--num_crops",
    str(CROPS),
    "--proj_hidden_dim",
    "32",
    "--output_dim",
    "16",
    "--batch_size",
    "64",
    "--lr",
    "0.05",
    "--warmup_epochs",
    "0",
    "--num_workers",
    "0",
    "--no_progress_bar",
    "--probes",
    "knn",
    "--seed",
    "3",
    "--no_baseline",
]


def _batch(seed: int = 0, crops: int = CROPS):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 3, S, S, generator=g)
    views = [x + 0.3 * torch.randn(B, 3, S, S, generator=g) for _ in range(crops)]
    return torch.arange(B), views, torch.randint(0, 4, (B,), generator=g)


def test_registered_and_defaults():
    assert METHODS["emp_ssl"] is EMPSSL
    args = parse_args(["--method", "emp_ssl"])
    assert args.num_crops == 20 and args.emp_invariance_weight == 200.0 and args.emp_eps == 0.2
    assert (args.proj_hidden_dim, args.output_dim) == (4096, 1024)
    assert args.min_scale == [0.25] and args.solarization_prob == [0.1]
    assert EMPSSL.views_for(EMPSSL.method_hparams(vars(args))) == 20


def test_contract_and_loss_value():
    model = EMPSSL.from_flat(CFG)
    assert model.num_views == CROPS
    out = model.training_step(_batch(), 0)
    assert len(out["feats"]) == len(out["z"]) == CROPS
    for z in out["z"]:
        assert z.shape == (B, 16)
        assert torch.allclose(z.norm(dim=1), torch.ones(B), atol=1e-5)
    ref = emp_ssl_loss_func(out["z"], invariance_weight=200.0, tcr_weight=1.0, eps=0.2)
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-6)
    with pytest.raises(ValueError, match=f"expects {CROPS} views"):
        model.training_step(_batch(crops=2), 0)


def test_loss_decreases_on_fixed_batch():
    torch.manual_seed(0)
    model = EMPSSL.from_flat(CFG)
    opt = torch.optim.SGD([p for g in model.learnable_params for p in g["params"]], lr=0.01, momentum=0.9)
    batch, losses = _batch(), []
    for step in range(10):
        loss = model.training_step(batch, step)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < losses[0], losses


def test_datamodule_produces_num_crops_views(tmp_path):
    plan = prepare_run(parse_args(TINY + ["--num_tasks", "2", "--checkpoint_dir", str(tmp_path / "r")]))
    assert plan.cfg["num_views"] == CROPS
    plan.datamodule.set_task(0)
    _, views, _ = next(iter(plan.datamodule.train_dataloader()))
    assert len(views) == CROPS and views[0].shape[1:] == (3, S, S)
    assert not (tmp_path / "r").exists()  # prepare_run writes nothing


def test_bad_arguments_are_refused_before_training():
    with pytest.raises(ArgumentError, match="--num_crops must be at least 2"):
        parse_args(["--method", "emp_ssl", "--num_crops", "1"])
    with pytest.raises(ArgumentError, match=f"give one .* or {CROPS}"):
        parse_args(["--method", "emp_ssl", "--num_crops", str(CROPS), "--solarization_prob", "0.0", "0.2"])
    assert parse_args(["--method", "emp_ssl", "--num_crops", "2", "--solarization_prob", "0.0", "0.2"]).num_crops == 2


@pytest.mark.parametrize("strategy", ["finetune", "cassle"])
def test_strategies_train(strategy):
    cls = build_model_class("emp_ssl", strategy)
    model = cls.from_flat({**CFG, "method": "emp_ssl", "strategy": strategy})
    model.log = lambda *a, **k: None
    model.on_task_start(1)  # CaSSLe: a frozen teacher from here on
    opt = torch.optim.SGD([p for g in model.learnable_params for p in g["params"]], lr=0.01)
    out = model.training_step(_batch(), 0)
    opt.zero_grad()
    out["loss"].backward()
    opt.step()
    assert torch.isfinite(out["loss"])
    if strategy == "cassle":
        assert model.distiller == "predictive" and "distill_loss" in out
        assert all(not p.requires_grad for p in model.frozen_backbone.parameters())


@pytest.mark.slow
def test_end_to_end_two_tasks_with_cassle(tmp_path: Path):
    run = tmp_path / "run"
    argv = TINY + [
        "--strategy",
        "cassle",
        "--distill_proj_hidden_dim",
        "16",
        "--num_tasks",
        "2",
        "--max_epochs",
        "1",
        "--checkpoint_dir",
        str(run),
    ]
    assert main_continual.main(argv) == 0
    metrics = json.loads((run / "results" / "metrics.json").read_text())
    assert metrics["tasks_done"] == [0, 1]
    assert 0 <= metrics["probes"]["knn"]["average_accuracy"] <= 100
