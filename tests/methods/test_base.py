"""BaseMethod mechanics (the helpers the per-method tests share are in tests/methods/helpers.py)."""

from __future__ import annotations

import argparse
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from cassle.methods import METHODS, BaseMethod
from tests.helpers import PUBLISHED_FAMILIES
from tests.methods.helpers import (
    B,
    EvalDataset,
    make_batch,
    make_trainer,
    tiny_cfg,
    train_loader,
)

# Tiny models are much faster single-threaded, above all on a shared 2-core machine.
torch.set_num_threads(1)


class PlainMethod(BaseMethod):
    """Base only: identity-like projector, no SSL loss."""

    family = "none"

    def build_projector(self) -> nn.Module:
        return nn.Linear(self.num_features, self.output_dim)


# ------------------------------------------------------------------- tests
def test_classifier_sees_detached_features_only() -> None:
    model = PlainMethod.from_flat(tiny_cfg())
    out = model.training_step(make_batch(), 0)
    assert out["loss"] > 0 and set(out) >= {"loss", "feats"}
    out["loss"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.backbone.parameters())
    assert model.classifier.weight.grad.abs().sum() > 0


def test_unlabelled_targets_are_ignored() -> None:
    model = PlainMethod.from_flat(tiny_cfg())
    idx, views, y = make_batch()
    y_partial = y.clone()
    y_partial[:4] = -1
    loss_partial = model.training_step((idx, views, y_partial), 0)["loss"]
    feats = model.backbone(views[0])
    ref = nn.functional.cross_entropy(model.classifier(feats)[4:], y[4:])
    assert loss_partial.item() == pytest.approx(ref.item(), rel=1e-5)
    none = model.training_step((idx, views, torch.full_like(y, -1)), 0)["loss"]
    assert none.item() == 0.0


def test_no_classes_means_no_classifier() -> None:
    model = PlainMethod.from_flat(tiny_cfg(num_classes=0))
    assert model.classifier is None
    assert "classifier" not in [g["name"] for g in model.learnable_params]
    assert model.training_step(make_batch(), 0)["loss"].item() == 0.0
    assert model.validation_step((make_batch()[1][0], torch.zeros(B, dtype=torch.long)), 0) is None


def test_wrong_number_of_views_is_a_clear_error() -> None:
    model = PlainMethod.from_flat(tiny_cfg())
    idx, views, y = make_batch()
    with pytest.raises(ValueError, match="expects 2 views"):
        model.training_step((idx, views[:1], y), 0)


#: per-method settings the shared tiny config needs (MAE needs a ViT, EMP-SSL few crops).
METHOD_CFG: dict[str, dict[str, Any]] = {
    "mae": dict(encoder="vit_tiny", base_width=16, decoder_depth=1, decoder_embed_dim=16, decoder_num_heads=2),
    "emp_ssl": dict(num_crops=3),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_learnable_params_cover_trainable_params_once(name: str) -> None:
    model = METHODS[name].from_flat(tiny_cfg(**METHOD_CFG.get(name, {})))
    grouped = [p for g in model.learnable_params for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped})
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in grouped} == trainable
    names = [g["name"] for g in model.learnable_params]
    assert names[:2] == ["backbone", "projector"] and "classifier" in names
    cls_group = next(g for g in model.learnable_params if g["name"] == "classifier")
    assert cls_group["lr"] == 0.1 and cls_group["weight_decay"] == 0.0


def test_config_validation_and_unknown_keys() -> None:
    # a flat mapping is converted (unknown keys ignored); flat keys passed to the constructor are refused
    assert PlainMethod.from_flat(tiny_cfg(some_unknown_key=3)).model_cfg.encoder == tiny_cfg()["encoder"]
    with pytest.raises(TypeError, match=r"typed configuration parts .*from_flat"):
        PlainMethod(**tiny_cfg())
    assert PlainMethod.from_flat(tiny_cfg(lars=True)).optimizer_name == "lars"
    with pytest.raises(ValueError, match="optimizer must be one of"):
        PlainMethod.from_flat(tiny_cfg(optimizer="rmsprop"))
    with pytest.raises(ValueError, match="adamw"):
        PlainMethod.from_flat(tiny_cfg(optimizer="adamw", lars=True))
    with pytest.raises(ValueError, match="scheduler must be one of"):
        PlainMethod.from_flat(tiny_cfg(scheduler="poly"))


#: published families of the methods we ship (a newly registered method needs no entry here)
KNOWN_FAMILIES = PUBLISHED_FAMILIES


@pytest.mark.parametrize("name", sorted(METHODS))
def test_families_views_and_registry(name: str) -> None:
    from cassle.losses.distill import DISTILL_LOSSES

    cls = METHODS[name]
    assert cls.family in set(DISTILL_LOSSES) | {"reconstructive"}, cls.family
    if name in KNOWN_FAMILIES:
        assert cls.family == KNOWN_FAMILIES[name]
    assert cls.views_for(cls.method_hparams({})) == {"emp_ssl": 20, "mae": 1}.get(
        name, cls.num_views
    )  # EMP-SSL: --num_crops 20
    assert cls.has_projector == (cls.family != "reconstructive")


def test_view_counts_follow_the_config() -> None:
    assert METHODS["emp_ssl"].views_for(METHODS["emp_ssl"].method_hparams({"num_crops": 4})) == 4
    assert [k for k, v in METHODS.items() if not v.has_projector] == ["mae"]


def test_gather_is_identity_on_one_process() -> None:
    model = PlainMethod.from_flat(tiny_cfg())
    x = torch.randn(4, 3, requires_grad=True)
    assert model.gather(x) is x and model.world_size() == 1


CONTRACT_ARGS = {
    "byol": {"pred_hidden_dim": 4096, "base_tau_momentum": 0.99, "final_tau_momentum": 1.0},
    "simsiam": {"pred_hidden_dim": 512},
    "barlow_twins": {"lamb": 0.0051, "scale_loss": 0.1},
    "vicreg": {"sim_loss_weight": 25.0, "var_loss_weight": 25.0, "cov_loss_weight": 1.0},
    "simclr": {"temperature": 0.2},
    "supcon": {"temperature": 0.2},
    "mocov2plus": {"temperature": 0.2, "queue_size": 65536, "base_tau_momentum": 0.99, "final_tau_momentum": 0.999},
    "swav": {
        "temperature": 0.1,
        "num_prototypes": 3000,
        "sk_iters": 3,
        "sk_epsilon": 0.05,
        "queue_size": 3840,
        "epoch_queue_starts": 50,
        "freeze_prototypes_epochs": 2,
    },
    "emp_ssl": {"num_crops": 20, "emp_invariance_weight": 200.0, "emp_tcr_weight": 1.0, "emp_eps": 0.2},
    "mae": {
        "mask_ratio": 0.75,
        "decoder_depth": 4,
        "decoder_embed_dim": 192,
        "decoder_num_heads": 3,
        "norm_pix_loss": False,
    },
}
PROJ = {
    "byol": (4096, 256),
    "simsiam": (2048, 2048),
    "barlow_twins": (2048, 2048),
    "vicreg": (2048, 2048),
    "simclr": (2048, 256),
    "supcon": (2048, 256),
    "mocov2plus": (2048, 256),
    "swav": (2048, 128),
    "emp_ssl": (4096, 1024),
    "mae": (0, 0),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_add_method_args_defaults(name: str) -> None:
    """Every registered method adds exactly its ``method_args`` with their defaults; for the methods we ship,
    those are the published values (CONTRACT_ARGS / PROJ), so a new method is covered without an entry."""
    cls = METHODS[name]
    parser = argparse.ArgumentParser()
    parser.add_argument("--proj_hidden_dim", type=int, default=2048)
    parser.add_argument("--output_dim", type=int, default=256)
    cls.add_method_args(parser)
    ns = vars(parser.parse_args([]))
    specs = dict(cls.method_args)
    added = set(ns) - {"proj_hidden_dim", "output_dim"}
    assert set(specs) <= added  # a method may add more (MAE: the --norm_pix_loss switch)
    for key, spec in specs.items():
        assert ns[key] == spec[1], key
    if name in CONTRACT_ARGS:
        for key, value in CONTRACT_ARGS[name].items():
            assert ns[key] == value, key
        assert added == set(CONTRACT_ARGS[name])
        assert (ns["proj_hidden_dim"], ns["output_dim"]) == PROJ[name]
    if not specs:
        return
    # the parsed values build the model (a user override reaches the attribute)
    first = next(iter(specs))
    ns2 = vars(parser.parse_args([f"--{first}", "7"]))
    assert ns2[first] == 7


def _lr_recorder():
    seen: list[list[float]] = []

    class Rec(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append([g["lr"] for g in trainer.optimizers[0].param_groups])

    return seen, Rec()


def test_lr_scaled_by_global_batch_and_warmup_cosine_in_trainer() -> None:
    # batch 8 -> scale 8/256; 4 steps per epoch, 1 warm-up epoch, 2 epochs = 8 steps
    model = PlainMethod.from_flat(tiny_cfg(lr=0.8, classifier_lr=0.4, warmup_start_lr=0.001, min_lr=0.0))
    seen, rec = _lr_recorder()
    trainer = make_trainer(max_epochs=2, callbacks=[rec])
    trainer.fit(model, train_loader(32))
    scale = B / 256
    names = [g["name"] for g in trainer.optimizers[0].param_groups]
    b, c = names.index("backbone"), names.index("classifier")
    assert len(seen) == 8
    assert seen[0][b] == pytest.approx(0.001) and seen[0][c] == pytest.approx(0.001)
    assert seen[4][b] == pytest.approx(0.8 * scale) and seen[4][c] == pytest.approx(0.4 * scale)
    assert seen[6][b] == pytest.approx(0.8 * scale * 0.5)  # halfway through the cosine
    assert trainer.optimizers[0].param_groups[b]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_lr_scaling_with_no_scheduler_and_lars() -> None:
    model = PlainMethod.from_flat(tiny_cfg(lr=1.0, scheduler="none", lars=True, exclude_bias_n_norm=True))
    trainer = make_trainer(max_steps=1)
    trainer.fit(model, train_loader(16))
    opt = trainer.optimizers[0]
    assert type(opt).__name__ == "LARS" and opt.defaults["exclude_bias_n_norm"]
    assert {g["name"]: g["lr"] for g in opt.param_groups}["backbone"] == pytest.approx(B / 256)


def test_short_runs_clip_the_warmup() -> None:
    model = PlainMethod.from_flat(tiny_cfg(warmup_epochs=10, max_epochs=1, warmup_start_lr=0.0))
    seen, rec = _lr_recorder()
    trainer = make_trainer(max_epochs=1, callbacks=[rec])
    with pytest.warns(UserWarning, match="clipping"):
        trainer.fit(model, train_loader(32))
    assert len(seen) == 4 and seen[0][0] == 0.0 and seen[-1][0] > seen[1][0] > 0


def test_validation_logs_online_accuracy() -> None:
    model = PlainMethod.from_flat(tiny_cfg())
    trainer = make_trainer()
    metrics = trainer.validate(model, DataLoader(EvalDataset(16), batch_size=B), verbose=False)[0]
    assert {"val_loss", "val_acc1", "val_acc5"} <= set(metrics)
    assert 0.0 <= metrics["val_acc1"] <= metrics["val_acc5"] <= 100.0  # % like the probes
    data = EvalDataset(16)  # the same value by hand, in percent (issue 12: it was a fraction)
    model.eval()
    with torch.no_grad():
        x, y = torch.stack([data[i][0] for i in range(len(data))]), torch.stack([data[i][1] for i in range(len(data))])
        correct = (model.classifier(model.backbone(x)).argmax(1) == y).float().mean().item()
    assert correct > 0 and metrics["val_acc1"] == pytest.approx(100.0 * correct, abs=1e-4)


class _ExtraTermMixin:
    """What a strategy mixin does: its own module, param group and loss term."""

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        self.extra_head = nn.Linear(self.output_dim, self.output_dim)

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        return super().learnable_params + [{"name": "extra_head", "params": list(self.extra_head.parameters())}]

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        out = super().training_step(batch, batch_idx)
        out["loss"] = out["loss"] + self.extra_head(out["z"][0]).pow(2).mean()
        return out


def test_a_strategy_style_mixin_composes_with_every_method_hook() -> None:
    from cassle.methods import BYOL

    cls = type("ExtraBYOL", (_ExtraTermMixin, BYOL), {})
    model = cls.from_flat(tiny_cfg())
    before = model.extra_head.weight.detach().clone()
    trainer = make_trainer(max_steps=2)
    trainer.fit(model, train_loader(16))
    names = [g["name"] for g in trainer.optimizers[0].param_groups]
    assert "extra_head" in names and "predictor" in names
    assert not torch.equal(model.extra_head.weight, before)
