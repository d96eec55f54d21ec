"""All4One: contract, loss on the step's own tensors, support set, neighbour sequences, centroids, EMA, CaSSLe."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cassle.config import ModelConfig
from cassle.losses.all4one import all4one_loss_func
from cassle.losses.distill import contrastive_distill
from cassle.methods import METHODS
from cassle.methods.all4one import All4One, neighbour_position_encoding
from cassle.strategies import build_model_class
from tests.methods.helpers import (
    B,
    check_contract,
    check_fit,
    check_loss_decreases,
    make_batch,
    make_trainer,
    tiny_cfg,
    train_loader,
)


def _model(**extra) -> All4One:
    torch.manual_seed(0)
    return All4One.from_flat(tiny_cfg(**extra))


def _capture_logs(model: All4One) -> dict[str, torch.Tensor]:
    logs: dict[str, torch.Tensor] = {}
    model._log = lambda name, value, **kw: logs.__setitem__(name, value)  # outside a Trainer
    return logs


def test_contract_defaults_and_heads() -> None:
    out = check_contract(All4One)
    assert METHODS["all4one"] is All4One and All4One.family == "contrastive"
    assert (All4One.default_proj_hidden_dim, All4One.default_output_dim) == (2048, 256)
    defaults = {k: v[1] for k, v in All4One.all_method_args().items()}
    assert defaults == {
        "base_tau_momentum": 0.99,
        "final_tau_momentum": 1.0,
        "temperature": 0.2,
        "centroid_temperature": 0.1,
        "queue_size": 98304,
        "pred_hidden_dim": 4096,
        "transformer_lr": 0.1,
        "neighbour_weight": 0.5,
        "centroid_weight": 0.5,
        "feature_weight": 5.0,
    }
    model = _model()
    assert isinstance(model.projector[-1], nn.BatchNorm1d) and model.projector[-1].affine  # ends in BN
    assert len(model.transformer.layers) == 3 and model.transformer.layers[0].self_attn.num_heads == 8
    assert model.transformer.layers[0].linear1.out_features == 2 * 16
    assert len(model.momentum_pairs) == 2
    assert out["neighbours"][0].shape == (B, 5, 16) and out["centroids"][0].shape == (B, 16)
    sd = model.state_dict()
    assert {"queue.queue", "queue.ptr", "queue.count", "queue.labels"} <= set(sd)
    assert "position_encoding" not in sd  # recomputed, not checkpointed


def test_loss_equals_loss_function_on_the_step_tensors() -> None:
    model = _model(num_classes=0)
    logs = _capture_logs(model)
    out = model.training_step(make_batch(), 0)
    ref = all4one_loss_func(
        [s[:, 0] for s in out["neighbours"]],
        out["p"],
        out["centroids"],
        out["shifted_centroids"],
        out["momentum_z"],
        out["z"],
        temperature=0.2,
        centroid_temperature=0.1,
        neighbour_weight=0.5,
        centroid_weight=0.5,
        feature_weight=5.0,
    )
    assert torch.allclose(out["loss"], ref.loss)
    assert torch.allclose(logs["train_all4one_loss"], ref.loss)
    assert torch.allclose(logs["train_all4one_feature_loss"], ref.feature)
    # the predictions are the predictor on z; the momentum projections are unit-norm
    assert torch.allclose(out["p"][0], model.predictor(out["z"][0]), atol=1e-6)
    assert torch.allclose(out["momentum_z"][1].norm(dim=1), torch.ones(B))


def test_neighbours_are_the_five_nearest_support_rows_before_the_push() -> None:
    model = _model(queue_size=20)
    support = model.queue.rows().clone()
    out = model.training_step(make_batch(), 0)
    for mz, seq in zip(out["momentum_z"], out["neighbours"]):
        for i in range(B):  # brute force: sort every support row by cosine to the momentum projection
            cos = [F.cosine_similarity(mz[i], support[j], dim=0).item() for j in range(20)]
            order = sorted(range(20), key=lambda j: -cos[j])[:5]
            assert torch.allclose(seq[i], support[order])
        assert torch.equal(seq[:, 0], support[(mz @ support.T).argmax(dim=1)])
        assert not seq.requires_grad


def test_support_set_holds_normalised_momentum_projections_and_labels() -> None:
    model = _model(queue_size=20)
    before = model.queue.rows().clone()
    idx, views, y = make_batch()
    out = model.training_step((idx, views, y), 0)
    # recompute view 1's momentum projection independently (train-mode BN: batch statistics)
    expected = F.normalize(model.momentum_projector(model.momentum_backbone(views[0])), dim=1)
    rows = model.queue.rows()
    assert torch.allclose(rows[:B], expected, atol=1e-6) and torch.allclose(rows[:B], out["momentum_z"][0])
    assert torch.allclose(rows.norm(dim=1), torch.ones(20))
    assert torch.equal(rows[B:], before[B:])  # only view 1 enters, B rows
    assert torch.equal(model.queue.row_labels()[:B], y) and (model.queue.row_labels()[B:] == -1).all()
    assert int(model.queue.ptr) == B
    model.training_step(make_batch(seed=1), 1)
    model.training_step(make_batch(seed=2), 2)  # 24 rows into a 20-row ring: wraps around
    assert int(model.queue.ptr) == 4


def test_nn_accuracy_with_a_labelled_support_set() -> None:
    model = _model()
    model.eval()  # deterministic BN and no dropout: the second step sees the same momentum projections
    logs = _capture_logs(model)
    batch = make_batch()
    model.training_step(batch, 0)
    model.training_step(batch, 1)  # every sample's nearest neighbour is its own pushed projection
    assert logs["train_nn_acc"].item() == 100.0  # %


def test_centroids_are_the_transformer_on_neighbour_and_shifted_sequences() -> None:
    model = _model()
    model.eval()  # no dropout
    out = model.training_step(make_batch(), 0)
    pe = neighbour_position_encoding(5, 16)
    for v in range(2):
        seq = out["neighbours"][v]
        assert torch.allclose(out["centroids"][v], model.transformer(seq + pe)[:, 0], atol=1e-6)
        q = model.centroid_predictor(out["z"][v])
        assert torch.allclose(out["q"][v], q, atol=1e-6)
        shifted = torch.cat([q[:, None], seq[:, :4]], dim=1)  # own prediction first, farthest neighbour out
        assert torch.allclose(out["shifted_centroids"][v], model.transformer(shifted + pe)[:, 0], atol=1e-6)


def test_position_encoding_values() -> None:
    pe = neighbour_position_encoding(5, 16)
    d = torch.arange(16, dtype=torch.float32)
    f1, f2 = 10000 ** (-1 / 3), 10000 ** (-2 / 3)
    expected = torch.stack([d.sin(), d.cos(), (d * f1).sin(), (d * f1).cos(), (d * f2).sin()])
    assert torch.allclose(pe, expected, atol=1e-6)
    with pytest.raises(ValueError):
        neighbour_position_encoding(0, 16)


def test_gradients_reach_online_modules_never_the_momentum_encoder() -> None:
    model = _model()
    out = model.training_step(make_batch(), 0)
    assert all(m.grad_fn is None and not m.requires_grad for m in out["momentum_z"])
    out["loss"].backward()
    for module in (model.momentum_backbone, model.momentum_projector):
        assert all(not p.requires_grad and p.grad is None for p in module.parameters())
    for module in (model.backbone, model.projector, model.predictor, model.centroid_predictor, model.transformer):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_ema_update_moves_the_momentum_encoder() -> None:
    model = _model()
    with torch.no_grad():
        for p in model.projector.parameters():
            p.add_(1.0)
    online = [p.clone() for p in model.projector.parameters()]
    target = [p.clone() for p in model.momentum_projector.parameters()]
    tau = model.update_momentum(0, 10)
    assert tau == pytest.approx(0.99)
    for o, t, new in zip(online, target, model.momentum_projector.parameters()):
        assert torch.allclose(new, 0.99 * t + 0.01 * o)


def test_transformer_group_lr_is_scaled_like_the_others() -> None:
    model = _model(scheduler="none", lr=0.4)
    trainer = make_trainer(max_steps=1)
    trainer.fit(model, train_loader(16))
    lrs = {g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups}
    assert lrs["transformer"] == pytest.approx(0.1 * B / 256) and lrs["predictor"] == pytest.approx(0.4 * B / 256)


def test_check_cfg_errors() -> None:
    with pytest.raises(ValueError, match="divisible by the transformer's 8 heads"):
        All4One.from_flat(tiny_cfg(output_dim=12))
    with pytest.raises(ValueError, match="queue_size must be at least 5"):
        All4One.from_flat(tiny_cfg(queue_size=4))
    with pytest.raises(ValueError, match="centroid_temperature must be positive"):
        All4One.check_cfg(ModelConfig(), All4One.method_hparams({"centroid_temperature": 0.0}))


def test_checkpoint_round_trip_with_weights_only() -> None:
    model = _model()
    model.training_step(make_batch(), 0)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    restored = All4One.from_flat(tiny_cfg())
    restored.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(restored.queue.rows(), model.queue.rows())
    assert torch.equal(restored.queue.row_labels(), model.queue.row_labels())


def test_loss_decreases(monkeypatch: pytest.MonkeyPatch) -> None:
    # a frozen support set isolates the learning signal (new neighbours change the targets every step)
    monkeypatch.setattr(All4One, "enqueue", lambda self, z, targets: None)
    check_loss_decreases(All4One, steps=6, queue_size=32)


def test_fit() -> None:
    model = check_fit(All4One)
    assert int(model.queue.count) == 64


def test_cassle_contrastive_distillation() -> None:
    torch.manual_seed(0)
    cls = build_model_class("all4one", "cassle")
    model = cls.from_flat(tiny_cfg(method="all4one", distill_proj_hidden_dim=16))
    model.log = lambda *a, **k: None
    assert model.distiller == "contrastive"
    model.on_task_start(1)
    model.eval()  # deterministic BN and no dropout for the hand computation
    batch = make_batch()
    out = model.training_step(batch, 0)
    preds = [model.distill_predictor(zv) for zv in out["z"]]  # the raw (not normalised) projections
    frozen = [model.frozen_forward(v) for v in batch[1]]
    expected = contrastive_distill(torch.cat(preds), torch.cat(frozen), temperature=0.2)
    assert torch.allclose(out["distill_loss"], expected, atol=1e-6)
    out["loss"].backward()
    assert all(p.grad is None for p in model.frozen_backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.distill_predictor.parameters())
