"""The Lightning callbacks of the task loop (:mod:`cassle.continual`): per-epoch seeds, the stop at the first
non-finite loss, the mid-task resume checkpoint, NHWC weights on request, the progress bar with the loss, and one
printed line per epoch when there is no progress bar."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import TQDMProgressBar

from cassle.errors import DivergedError


def step_loss(outputs: Any) -> torch.Tensor | None:
    """The training loss a ``training_step`` returned (its ``loss`` entry, or the tensor itself), else ``None``."""
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    return loss if isinstance(loss, torch.Tensor) else None


class EpochCheckpoint(pl.Callback):
    """Writes ``resume/task{t}-last.ckpt`` every ``every`` epochs (atomically, via the trainer's IO)."""

    def __init__(self, path: Path, every: int) -> None:
        self.path, self.every = path, max(1, every)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every == 0 or trainer.current_epoch + 1 == trainer.max_epochs:
            trainer.save_checkpoint(str(self.path), weights_only=False)  # the full state: a resume needs it


def resume_epoch(path: Path) -> int:
    """The epoch a mid-task checkpoint resumes at (it is written at the end of epoch ``ckpt["epoch"]``); read
    through a memory map, so the weights are not loaded twice."""
    try:
        # a str: torch 2.1 refuses mmap for a Path ("f must be a string filename"), and this returned 0
        return int(torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)["epoch"]) + 1
    except Exception:  # unreadable: Lightning's own load reports it; the epoch order then starts at 0
        return 0


class ChannelsLast(pl.Callback):
    """``--channels_last``: the model's 4-d weights in NHWC memory format from the start of each task's fit
    (teachers and copies included: they are submodules). Inputs stay as they come; a convolution with an NHWC
    weight computes in NHWC, and every layer after it follows."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        pl_module.to(memory_format=torch.channels_last)


class EpochSeeds(pl.Callback):
    """Before every epoch: the global RNGs and the data module's batched augmentation restart from
    ``(seed, task, epoch, rank)``, so an epoch's draws never depend on the epochs before it and a run resumed
    from a mid-task checkpoint repeats the uninterrupted one exactly (see :mod:`cassle.data.sampling`)."""

    def __init__(self, seed: int, task: int) -> None:
        self.seed, self.task = seed, task

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from cassle.data.sampling import mix_seed, seed_global_rngs

        epoch, rank = trainer.current_epoch, trainer.global_rank
        seed_global_rngs(mix_seed(self.seed, self.task, epoch, rank, 1))
        dm = getattr(trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "start_epoch"):
            dm.start_epoch(epoch)


class FiniteLoss(pl.Callback):
    """Stops the task at the first non-finite training loss, before anything of the diverged state is saved.

    The check keeps a flag on the loss's device and looks at it (one host sync) every step on the CPU, where it
    costs nothing, every ``trainer.log_every_n_steps`` steps on an accelerator, and always at the end of an
    epoch, before the mid-task checkpoint (this callback comes first). Raises :class:`DivergedError`."""

    def __init__(self, task: int, lr: float, every_step: bool) -> None:
        self.task, self.lr, self.every_step = task, lr, every_step
        self._bad: torch.Tensor | None = None
        self._since = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        loss = step_loss(outputs)
        if loss is None:
            return
        bad = ~torch.isfinite(loss.detach()).all()
        self._bad = bad if self._bad is None else self._bad | bad
        self._since += 1
        if self.every_step or self._since >= max(1, int(trainer.log_every_n_steps)):
            self._check(trainer, float(loss.detach().float().cpu()))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer, float("nan"))

    def _check(self, trainer: pl.Trainer, value: float) -> None:
        bad, self._bad, self._since = self._bad, None, 0
        if bad is not None and bool(bad):
            what = "inf" if math.isinf(value) else "NaN"
            raise DivergedError(
                f"the training loss became {what} in task {self.task} (epoch {trainer.current_epoch}, step "
                f"{trainer.global_step}): training stopped and nothing of this task was saved. Rerun the same "
                f"command with a lower --lr (e.g. --lr {self.lr / 10:g}) or a longer --warmup_epochs in the same "
                f"directory: it trains task {self.task} again"
                + (f" from task{self.task - 1}.ckpt" if self.task > 0 else "")
            )


class EpochLine(pl.Callback):
    """One line per epoch on stdout (for ``--no_progress_bar``, i.e. SLURM logs): task, epoch, mean training loss,
    learning rate and images per second (every process's images)."""

    def __init__(self, task: int) -> None:
        self.task = task
        self._start, self._images, self._loss, self._steps = 0.0, 0, 0.0, 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start, self._images, self._loss, self._steps = time.perf_counter(), 0, 0.0, 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = step_loss(outputs)
        if loss is not None:
            self._loss += float(loss.detach())
            self._steps += 1
        views = batch[1] if isinstance(batch, (list, tuple)) and len(batch) > 1 else batch
        first = views[0] if isinstance(views, (list, tuple)) else views
        if isinstance(first, torch.Tensor):
            self._images += int(first.shape[0]) * trainer.world_size

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        seconds = max(time.perf_counter() - self._start, 1e-9)
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        loss = self._loss / self._steps if self._steps else float("nan")
        print(
            f"task {self.task} epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: loss {loss:.4f}  "
            f"lr {lr:.4g}  {self._images / seconds:.0f} images/s",
            flush=True,
        )


class LossProgressBar(TQDMProgressBar):
    """Lightning's bar with the training loss instead of ``v_num`` (the logger version, cut to ``ask0``). The loss
    tensor is kept as it comes and read only when the bar redraws, so no step waits for the device."""

    def __init__(self) -> None:
        super().__init__()
        self._loss: torch.Tensor | None = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = step_loss(outputs)
        if loss is not None:
            self._loss = loss.detach()
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        if self._loss is not None:
            items = {"loss": f"{float(self._loss):.4g}", **items}
        return items
