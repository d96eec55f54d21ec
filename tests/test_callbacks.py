"""The task loop's callbacks (cassle/callbacks.py); the per-epoch seeds, the finite-loss stop and the resume
checkpoint are tested through the runs in tests/test_continual.py."""

from __future__ import annotations

import copy

import torch

from cassle.callbacks import ChannelsLast
from cassle.methods import METHODS
from tests.helpers import TINY

CFG = dict(encoder="resnet9", base_width=4, crop_size=8, num_classes=10, proj_hidden_dim=32, output_dim=32, lr=0.05)


def _conv_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.dim() == 4]


def test_channels_last_puts_every_convolution_weight_in_nhwc():
    model = METHODS["byol"].from_flat(CFG)
    assert not any(p.is_contiguous(memory_format=torch.channels_last) for p in _conv_weights(model))
    ChannelsLast().setup(None, model, "fit")
    weights = _conv_weights(model)
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    # the momentum teacher is a submodule: converted too
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in _conv_weights(model.momentum_backbone))


def test_a_channels_last_step_gives_the_loss_and_gradients_of_the_default_layout():
    """Only the memory layout changes: one training step's loss and gradients agree up to float rounding
    (measured ~1e-7). Over many steps such rounding differences grow, as they do between thread counts:
    in this tiny Barlow Twins the weights were 2e-4 apart after 8 SGD steps and 2e-2 after 12."""
    torch.manual_seed(0)
    nchw = METHODS["barlow_twins"].from_flat(CFG)
    nhwc = copy.deepcopy(nchw)
    ChannelsLast().setup(None, nhwc, "fit")
    g = torch.Generator().manual_seed(1)
    batch = (torch.arange(32), [torch.randn(32, 3, 8, 8, generator=g) for _ in range(2)], torch.randint(0, 10, (32,)))
    losses = []
    for m in (nchw, nhwc):
        m.train()
        loss = m.training_step(batch, 0)["loss"]
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(nchw.named_parameters(), nhwc.parameters()):
        if a.grad is not None:
            torch.testing.assert_close(b.grad.contiguous(), a.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_the_channels_last_flag_gives_each_task_s_trainer_the_callback(tmp_path):
    """``main_continual.py --channels_last`` reaches the trainer of every task (and only with the flag); the
    layout then survives a checkpoint: loading NHWC weights into a default model copies the values."""
    from cassle import continual
    from cassle.args import parse_args
    from cassle.run_plan import prepare_run

    def callbacks(*extra: str) -> list:
        plan = prepare_run(
            parse_args(
                TINY + ["--num_tasks", "2", "--checkpoint_dir", str(tmp_path / f"run{len(extra)}")] + list(extra)
            )
        )
        return [type(c) for c in continual._make_trainer(plan, 1).callbacks]

    assert ChannelsLast in callbacks("--channels_last")
    assert ChannelsLast not in callbacks()
    nhwc = METHODS["barlow_twins"].from_flat(CFG)
    ChannelsLast().setup(None, nhwc, "fit")
    fresh = METHODS["barlow_twins"].from_flat(CFG)
    fresh.load_state_dict(nhwc.state_dict())
    assert fresh.backbone.conv1.weight.is_contiguous()
    torch.testing.assert_close(fresh.backbone.conv1.weight, nhwc.backbone.conv1.weight)


def test_the_progress_bar_shows_the_training_loss_not_the_logger_version(tmp_path):
    """Lightning's bar showed only ``v_num=ask0`` (the CSV logger's version ``task0``, cut): it shows the loss
    of the last step now; a run with the bar gets it, ``--no_progress_bar`` gets the per-epoch line instead."""
    import lightning.pytorch as pl
    from lightning.pytorch.demos.boring_classes import BoringModel
    from lightning.pytorch.loggers import CSVLogger

    from cassle import continual
    from cassle.args import parse_args
    from cassle.callbacks import EpochLine, LossProgressBar
    from cassle.run_plan import prepare_run

    seen = []

    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            seen.append(float(out["loss"]))
            return out

    bar = LossProgressBar()
    trainer = pl.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=CSVLogger(str(tmp_path), name="logs", version="task0"),
        callbacks=[bar],
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    model = Model()
    trainer.fit(model)
    shown = bar.get_metrics(trainer, model)
    assert "v_num" not in shown and shown["loss"] == f"{seen[-1]:.4g}"

    def callbacks(*extra: str) -> list:
        run = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        argv = [a for a in TINY if a != "--no_progress_bar"] + ["--checkpoint_dir", str(run), *extra]
        return [type(c) for c in continual._make_trainer(prepare_run(parse_args(argv)), 0).callbacks]

    assert LossProgressBar in callbacks() and EpochLine not in callbacks()
    assert EpochLine in callbacks("--no_progress_bar") and LossProgressBar not in callbacks("--no_progress_bar")
