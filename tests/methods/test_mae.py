"""MAE: ViT-only, exact masking in training and none at evaluation, loss, strategies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import main_continual
from cassle.args import ArgumentError, parse_args
from cassle.backbones import build_backbone
from cassle.losses import mae_loss_func, patchify
from cassle.methods import MAE, METHODS
from cassle.strategies import build_model_class

torch.set_num_threads(1)

B, S = 8, 16  # 16 px, patch 4: 16 patches, 12 masked at 75%
CFG = dict(
    encoder="vit_tiny",
    base_width=16,
    crop_size=S,
    num_classes=0,
    decoder_depth=1,
    decoder_embed_dim=16,
    decoder_num_heads=2,
    batch_size=B,
    lr=1e-3,
    max_epochs=1,
    optimizer="adamw",
    weight_decay=0.0,
)
TINY = [
    "--dataset",
    "digits",
    "--encoder",
    "vit_tiny",
    "--base_width",
    "16",
    "--crop_size",
    "16",
    "--method",
    "mae",
    "--decoder_depth",
    "1",
    "--decoder_embed_dim",
    "16",
    "--decoder_num_heads",
    "2",
    "--batch_size",
    "64",
    "--lr",
    "1e-3",
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


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.arange(B), [torch.randn(B, 3, S, S, generator=g)], torch.randint(0, 4, (B,), generator=g)


def test_registered_with_defaults():
    assert METHODS["mae"] is MAE and MAE.has_projector is False and MAE.num_views == 1
    args = parse_args(["--method", "mae", "--encoder", "vit_tiny"])
    assert (args.mask_ratio, args.decoder_depth, args.decoder_embed_dim, args.decoder_num_heads) == (0.75, 4, 192, 3)
    assert args.norm_pix_loss is False and args.optimizer == "adamw" and args.solarization_prob == [0.0]
    assert parse_args(["--method", "mae", "--encoder", "vit_small", "--norm_pix_loss"]).norm_pix_loss is True


def test_non_vit_encoder_refused():
    with pytest.raises(ArgumentError, match="mae needs a ViT encoder"):
        parse_args(["--method", "mae", "--encoder", "resnet18"])
    with pytest.raises(ValueError, match="mae needs a ViT encoder"):
        MAE.from_flat({**CFG, "encoder": "resnet9"})
    with pytest.raises(ArgumentError, match="--mask_ratio"):
        parse_args(["--method", "mae", "--encoder", "vit_tiny", "--mask_ratio", "1.0"])
    with pytest.raises(ArgumentError, match="--decoder_embed_dim"):
        parse_args(["--method", "mae", "--encoder", "vit_tiny", "--decoder_embed_dim", "30"])


def test_masks_exact_ratio_in_training_and_nothing_in_eval():
    model = MAE.from_flat(CFG)
    x = _batch()[1][0]
    model.train()
    tokens, mask, ids_restore = model.encode(x)
    assert mask.shape == (B, 16) and torch.equal(mask.sum(dim=1), torch.full((B,), 12.0))
    assert tokens.shape == (B, 1 + 4, 16)
    # the masked set differs between samples (per-sample masking)
    assert len({tuple(m.tolist()) for m in mask}) > 1
    model.eval()
    with torch.no_grad():
        tokens, mask, _ = model.encode(x)
        assert mask.sum() == 0 and tokens.shape == (B, 17, 16)
        assert torch.allclose(tokens[:, 0], model.backbone(x), atol=1e-5)
        assert torch.allclose(model(x)["feats"], model.backbone(x))


def test_masking_follows_the_seed():
    vit = build_backbone("vit_tiny", S, base_width=16)
    torch.manual_seed(7)
    a = vit.random_masking(16, B, 0.75)[1]
    torch.manual_seed(7)
    b = vit.random_masking(16, B, 0.75)[1]
    torch.manual_seed(8)
    c = vit.random_masking(16, B, 0.75)[1]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_loss_value_and_contract():
    model = MAE.from_flat(CFG)
    x = _batch()[1][0]
    torch.manual_seed(1)
    out = model.training_step(_batch(), 0)
    assert len(out["feats"]) == len(out["z"]) == 1 and out["z"][0].shape == (B, 16)
    ref = mae_loss_func(out["pred"], patchify(x, 4), out["mask"])
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-6)
    assert out["pred"].shape == (B, 16, 4 * 4 * 3)
    norm_model = MAE.from_flat({**CFG, "norm_pix_loss": True})
    out = norm_model.training_step(_batch(), 0)
    ref = mae_loss_func(out["pred"], patchify(x, 4), out["mask"], norm_pix_loss=True)
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-6)


def test_loss_decreases_on_fixed_batch():
    torch.manual_seed(0)
    model = MAE.from_flat(CFG)
    opt = torch.optim.AdamW([p for g in model.learnable_params for p in g["params"]], lr=3e-3)
    batch, losses = _batch(), []
    for step in range(12):
        torch.manual_seed(123)  # the same mask every step: a fixed problem
        loss = model.training_step(batch, step)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < losses[0], losses
    names = {g["name"] for g in model.learnable_params if g["params"]}
    assert names == {"backbone", "decoder"}  # no projector parameters


def test_finetune_trains_and_cassle_is_refused():
    model = build_model_class("mae", "finetune").from_flat({**CFG, "method": "mae"})
    model.on_task_start(1)
    out = model.training_step(_batch(), 0)
    out["loss"].backward()
    assert model.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="cassle cannot wrap MAE.*reconstructive"):
        build_model_class("mae", "cassle")
    with pytest.raises(ArgumentError, match="cassle cannot wrap MAE"):
        parse_args(["--method", "mae", "--encoder", "vit_tiny", "--strategy", "cassle"])


def test_vit_existing_forward_unchanged_by_forward_tokens():
    vit = build_backbone("vit_tiny", S, base_width=16).eval()
    x = torch.randn(2, 3, S, S)
    with torch.no_grad():
        tokens, mask, ids_restore = vit.forward_tokens(x)
        assert torch.allclose(tokens[:, 0], vit(x), atol=1e-5)
    assert mask.sum() == 0 and torch.equal(ids_restore[0], torch.arange(16))


@pytest.mark.slow
def test_end_to_end_two_tasks(tmp_path: Path):
    run = tmp_path / "run"
    argv = TINY + ["--num_tasks", "2", "--max_epochs", "1", "--checkpoint_dir", str(run)]
    assert main_continual.main(argv) == 0
    metrics = json.loads((run / "results" / "metrics.json").read_text())
    assert metrics["tasks_done"] == [0, 1]
    assert 0 <= metrics["probes"]["knn"]["average_accuracy"] <= 100
