"""Alignment strategies on top of replay: a teacher, a predictor, an alignment loss.

Shared pieces:

* :class:`AlignMixin` — the predictor MLP that maps the current projection
  to the teacher's, and the alignment criterion (``--align_criterion``:
  ``cosine`` = ``−cos`` (ocl-self-supervised's scale, so its published
  ``--omega`` values mean the same here), ``mse``, or ``ssl`` = the method family's
  CaSSLe distillation loss), weighted by ``--omega``.
* :class:`EMATeacherMixin` — an EMA copy of backbone + projector,
  ``θ_ema ← m·θ_ema + (1 − m)·θ`` with ``m = --ema_momentum`` after every
  optimizer step (:func:`cassle.methods.momentum.ema_update`); BatchNorm
  statistics are copied from the online network. It never receives gradients
  and, like CaSSLe's teacher, normalises with the batch's statistics
  (:func:`~cassle.strategies.base.teacher_copy`): before its first update its
  targets are the student's projections.

Strategies (the replay mechanism of :mod:`cassle.strategies.replay` with the
teacher applied to some rows; the issue that introduced them names them
Aligned EMA Predictor, Aligned Replay Predictor and Aligned Predictor on
Replayed Examples):

* ``aep`` — the EMA teacher, aligned on *all* rows (stream + replayed);
* ``apre`` — the same EMA teacher, aligned on *replayed* rows only;
* ``arp`` — the teacher of a replayed sample is its *stored* representation
  (its projection when inserted), aligned on replayed rows only and refreshed
  after every replay: ``r ← e·r + (1 − e)·mean_views(z)`` with
  ``e = --buffer_feature_ema``;
* ``cassle_r`` — CaSSLe's frozen previous-task teacher
  (:class:`~cassle.strategies.cassle.CaSSLeMixin`, Fini et al., CVPR 2022),
  distilled on replayed rows only.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from cassle.losses.distill import DISTILL_LOSSES
from cassle.methods.heads import mlp2
from cassle.methods.momentum import ema_update
from cassle.strategies.base import STRATEGIES, StrategyMixin, teacher_copy
from cassle.strategies.cassle import CaSSLeMixin
from cassle.strategies.replay import Batch, ReplayMixin

ALIGN_CRITERIA = ("cosine", "mse", "ssl")


def projection_dim(model: Any) -> int:
    """Output width of ``model.projector`` (probed with a dummy input in eval mode)."""
    with torch.no_grad():
        was = model.projector.training
        model.projector.eval()
        device = next(model.backbone.parameters()).device  # the projector may have none (MAE: nn.Identity)
        z = model.projector(torch.zeros(2, model.backbone.num_features, device=device))
        model.projector.train(was)
    return int(z.shape[-1])


class AlignMixin(ReplayMixin):
    """Predictor + alignment criterion; subclasses say which rows and which teacher."""

    #: which rows are aligned: "all" or "replay"
    align_on: str = "all"

    strategy_args_title = "alignment"
    strategy_args = {
        "omega": (float, 0.1, "weight of the alignment loss"),
        "align_criterion": (
            str,
            "cosine",
            "cosine (-cos), mse, or ssl (the method family's CaSSLe distillation loss)",
            ALIGN_CRITERIA,
        ),
        "align_hidden_dim": (int, 2048, "hidden width of the alignment predictor"),
    }

    @classmethod
    def check_config(cls, method_cls: type, hp: Any) -> None:
        super().check_config(method_cls, hp)
        criterion = hp.align_criterion
        family = getattr(method_cls, "family", None)
        if criterion == "ssl" and family not in set(DISTILL_LOSSES) - {"knowledge"}:
            raise ValueError(
                f"--align_criterion ssl has no projection-space loss for {method_cls.__name__} "
                f"(family '{family}'): use --align_criterion cosine or mse"
            )
        if not hp.omega >= 0:
            raise ValueError(f"--omega must be non-negative, got {hp.omega}")

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        hp = self.strategy_cfg
        self.omega = hp.omega
        self.align_criterion = hp.align_criterion
        self.align_predictor = mlp2(projection_dim(self), hp.align_hidden_dim, projection_dim(self))

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        return list(super().learnable_params) + [
            {"name": "align_predictor", "params": list(self.align_predictor.parameters())}
        ]

    def align_loss(self, z: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        """Criterion between ``predictor(z_v)`` and ``teacher_v`` (no gradient to the teacher), mean over views."""
        losses = []
        for zv, tv in zip(z, teacher):
            p = self.align_predictor(zv)
            t = tv.detach().to(p.dtype)
            if self.align_criterion == "cosine":  # −cos, as ocl-self-supervised (not BYOL's 2 − 2·cos)
                losses.append(-F.cosine_similarity(p, t, dim=-1).mean())
            elif self.align_criterion == "mse":
                losses.append(DISTILL_LOSSES["predictive_mse"](p, t))
            else:
                losses.append(DISTILL_LOSSES[self.family](p, t))
        return sum(losses) / len(losses)

    def aligned_rows(self) -> slice | None:
        """Rows to align: all, or the replayed ones; ``None`` when fewer than 2 (BatchNorm in the predictor)."""
        if self.align_on == "all":
            ctx = self.replay_ctx
            n = ctx.get("num_stream", 0) + ctx.get("num_replay", 0)
            return slice(0, n) if n >= 2 else None
        rows = self.replay_rows()
        if rows is None or rows.stop - rows.start < 2:
            return None
        return rows

    def teacher_targets(
        self, batch: Batch, rows: slice, out: dict[str, Any]
    ) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def replay_loss(self, out: dict[str, Any], batch: Batch, ctx: dict[str, Any]) -> torch.Tensor | None:
        rows = self.aligned_rows()
        if rows is None:
            return None
        z = [zv[rows] for zv in out["z"][: len(batch[1])]]
        teacher = self.teacher_targets(batch, rows, out)
        loss = self.align_loss(z, teacher)
        self._log("train_align_loss", loss)
        out["align_loss"] = loss.detach()
        return self.omega * loss


class EMATeacherMixin(StrategyMixin):
    """An EMA copy of backbone + projector, updated after every optimizer step."""

    strategy_args_title = "EMA teacher"
    strategy_args = {"ema_momentum": (float, 0.999, "m in θ_ema ← m·θ_ema + (1 − m)·θ")}

    @classmethod
    def check_config(cls, method_cls: type, hp: Any) -> None:
        super().check_config(method_cls, hp)
        m = hp.ema_momentum
        if not 0.0 <= m <= 1.0:
            raise ValueError(f"--ema_momentum must be in [0, 1], got {m}")

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        self.ema_momentum = self.strategy_cfg.ema_momentum
        self.ema_backbone = teacher_copy(self.backbone)
        self.ema_projector = teacher_copy(self.projector)
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self._last_ema_teacher_step = -1

    @torch.no_grad()
    def _copy_online(self) -> None:
        self.ema_backbone.load_state_dict(self.backbone.state_dict())
        self.ema_projector.load_state_dict(self.projector.state_dict())

    def on_task_start(self, task_idx: int) -> None:
        super().on_task_start(task_idx)
        if int(self.ema_updates) == 0:  # never updated: start from the current (possibly pretrained) weights
            self._copy_online()

    @torch.no_grad()
    def update_ema_teacher(self) -> None:
        """``θ_ema ← m·θ_ema + (1 − m)·θ`` for parameters; BatchNorm statistics copied."""
        for online, ema in ((self.backbone, self.ema_backbone), (self.projector, self.ema_projector)):
            ema_update(online, ema, self.ema_momentum)
            for bo, be in zip(online.buffers(), ema.buffers()):
                be.copy_(bo)
        self.ema_updates += 1

    @torch.no_grad()
    def ema_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projection of ``x`` by the EMA teacher."""
        return self.ema_projector(self.ema_backbone(x))

    def on_train_start(self) -> None:
        super().on_train_start()  # type: ignore[misc]
        self._last_ema_teacher_step = int(self.trainer.global_step)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_end(outputs, batch, batch_idx)  # type: ignore[misc]
        step = int(self.trainer.global_step)
        if step <= self._last_ema_teacher_step:
            return  # no optimizer step (gradient accumulation)
        self._last_ema_teacher_step = step
        self.update_ema_teacher()


@STRATEGIES.register("aep")
class AEPMixin(EMATeacherMixin, AlignMixin):
    """AEP: replay + an EMA teacher aligned through a predictor on every row."""

    align_on = "all"

    def teacher_targets(self, batch: Batch, rows: slice, out: dict[str, Any]) -> list[torch.Tensor]:
        return [self.ema_forward(v[rows]) for v in batch[1]]


@STRATEGIES.register("apre")
class APREMixin(AEPMixin):
    """APRE: AEP's EMA teacher applied to replayed rows only."""

    align_on = "replay"


@STRATEGIES.register("arp")
class ARPMixin(AlignMixin):
    """ARP: each replayed sample's teacher is its stored representation, refreshed by an EMA on replay."""

    align_on = "replay"

    strategy_args_title = "ARP"
    strategy_args = {
        "buffer_feature_ema": (
            float,
            0.5,
            "e in r ← e·r + (1 − e)·z: refresh of a replayed sample's stored representation",
        )
    }

    @classmethod
    def check_config(cls, method_cls: type, hp: Any) -> None:
        super().check_config(method_cls, hp)
        e = hp.buffer_feature_ema
        if not 0.0 <= e <= 1.0:
            raise ValueError(f"--buffer_feature_ema must be in [0, 1], got {e}")

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        self.buffer_feature_ema = self.strategy_cfg.buffer_feature_ema

    def insert_fields(self, stream: dict[str, Any], out: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        fields = super().insert_fields(stream, out)
        b = int(stream["indexes"].shape[0])
        fields["reps"] = torch.stack([zv[:b].detach().float() for zv in out["z"]]).mean(0)
        return fields

    def teacher_targets(self, batch: Batch, rows: slice, out: dict[str, Any]) -> list[torch.Tensor]:
        stored = self.buffer.get(self.replay_ctx["positions"])["reps"]
        return [stored for _ in batch[1]]

    def replay_loss(self, out: dict[str, Any], batch: Batch, ctx: dict[str, Any]) -> torch.Tensor | None:
        loss = super().replay_loss(out, batch, ctx)
        rows = self.replay_rows()
        if rows is not None:
            pos = ctx["positions"]
            z_now = torch.stack([zv[rows].detach().float() for zv in out["z"]]).mean(0)
            old = self.buffer.get(pos)["reps"]
            e = self.buffer_feature_ema
            self.buffer.update(pos, "reps", e * old + (1.0 - e) * z_now)
        return loss


@STRATEGIES.register("cassle_r")
class CaSSLeReplayMixin(ReplayMixin, CaSSLeMixin):
    """cassle_r: replay + CaSSLe's frozen previous-task teacher distilled on replayed rows only."""

    def distill_rows(self) -> slice | None:
        rows = self.replay_rows()
        if rows is None or rows.stop - rows.start < 2:
            return None
        return rows
