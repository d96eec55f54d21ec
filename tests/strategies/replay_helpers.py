"""Tiny models and batches shared by the replay-strategy tests."""

from __future__ import annotations

import torch

from cassle.strategies import build_model_class

CFG = dict(
    encoder="resnet9",
    base_width=4,
    crop_size=8,
    num_classes=4,
    proj_hidden_dim=16,
    output_dim=8,
    pred_hidden_dim=16,
    distill_proj_hidden_dim=16,
    align_hidden_dim=16,
    num_prototypes=6,
    queue_size=32,
    batch_size=6,
    lr=0.05,
    max_epochs=1,
    optimizer="sgd",
    weight_decay=0.0,
    seed=3,
    mem_size=16,
    replay_batch_size=4,
    dataset="digits",
)


#: what a method needs beyond CFG to be tiny (MAE: a ViT encoder; EMP-SSL: few crops)
METHOD_CFG = {
    "mae": dict(encoder="vit_tiny", base_width=16, decoder_depth=1, decoder_embed_dim=16, decoder_num_heads=2),
    "emp_ssl": dict(num_crops=3),
}


def model(method: str, strategy: str, **over):
    cfg = {**CFG, **METHOD_CFG.get(method, {}), "method": method, "strategy": strategy, **over}
    return build_model_class(method, strategy).from_flat(cfg)


def batch(n: int = 6, seed: int = 0, start: int = 0, mb_pass: int = 0, num_views: int = 2):
    """``(indexes, views, targets, {"raw", "mb_pass"})`` with raw 1-channel 8x8 images."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    views = [torch.randn(n, 3, 8, 8, generator=g) for _ in range(num_views)]
    idx = torch.arange(start, start + n)
    return idx, views, torch.randint(0, 4, (n,), generator=g), {"raw": raw, "mb_pass": torch.full((n,), mb_pass)}


def to_float_views(images: torch.Tensor) -> list[torch.Tensor]:
    """Deterministic stand-in for the augmentation: the image as float, 3 channels, twice."""
    x = images.float().div(255).expand(-1, 3, -1, -1) if images.ndim == 4 else images.float().div(255).expand(3, -1, -1)
    return [x.clone(), x.clone() + 1.0]


class DeterministicTransform:
    """Per-sample multi-view transform with no randomness (for exact expected values)."""

    def __call__(self, img: torch.Tensor) -> list[torch.Tensor]:
        return to_float_views(img)


def sgd_step(m, b, i: int = 0):
    opt = torch.optim.SGD([p for g in m.learnable_params for p in g["params"]], lr=0.05)
    out = m.training_step(b, i)
    opt.zero_grad()
    out["loss"].backward()
    opt.step()
    return out
