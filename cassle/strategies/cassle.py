"""CaSSLe: distil the past self into the present through a predictor.

Fini et al., "Self-Supervised Models are Continual Learners", CVPR 2022
(https://arxiv.org/abs/2112.04215).

At the start of every task after the first, a frozen copy of backbone +
projector is taken from the weights the previous task ended with. It
normalises with the batch's statistics, as the student does (both reference
implementations keep it in training mode; an eval-mode teacher disagrees with
the student from the first step, and measured worse: ``docs/fidelity.md``),
and its BatchNorm buffers never move (:func:`~cassle.strategies.base.teacher_copy`).
A predictor MLP maps the current projection ``z`` onto the frozen one, and ``distill_lamb`` × the
distillation loss of the method's family is added to the SSL loss. Each method declares its family on its
class (``family``; ``main_continual.py --list_methods`` prints them all); the losses per family
(:data:`~cassle.losses.distill.DISTILL_LOSSES`):

===============  ==========================================
family           loss (default weight / temperature)
===============  ==========================================
predictive       2 − 2·cos
predictive_mse   MSE (λ 25)
contrastive      cross InfoNCE (T 0.2)
decorrelative    Barlow (λ 5e-3, ×0.1)
knowledge        CE of prototype assignments (T 0.1)
===============  ==========================================

The frozen network and the predictor are ordinary submodules, so they are in
``state_dict()`` and every checkpoint: a mid-task resume continues against the
same teacher instead of copying a half-trained one. Task 0 never distils.

As in the reference: methods whose ``z`` is L2-normalised there (MoCo v2+,
``normalized_projection = True``) feed the predictor the normalised
projection; the knowledge distiller's prototype layer is weight-normalised
(``g · v / ||v||``) like SwAV's; the predictive distiller trains its predictor
at ``lr / λ`` when ``λ = --distill_lamb < 1``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cassle.losses.distill import DISTILL_LOSSES
from cassle.methods.heads import mlp2
from cassle.strategies.base import STRATEGIES, StrategyMixin, teacher_copy

#: CaSSLe's own distiller names (``*_distill``) and the short names both work.
DISTILLER_ALIASES = {f"{name}_distill": name for name in DISTILL_LOSSES} | {n: n for n in DISTILL_LOSSES}
#: default ``--distill_lamb`` per family (CaSSLe uses the method's invariance weight for VICReg)
DEFAULT_LAMB = {"predictive_mse": 25.0}


def resolve_distiller(name: str | None, family: str | None) -> str:
    """The distillation family: ``--distiller`` if given, else the method's own family."""
    if name is None:
        if family not in DISTILL_LOSSES:
            raise ValueError(
                f"method family '{family}' has no CaSSLe distiller; pass --distiller one of {sorted(DISTILL_LOSSES)}"
            )
        return family
    if name not in DISTILLER_ALIASES:
        raise ValueError(f"unknown --distiller '{name}'; choose one of: {', '.join(sorted(DISTILLER_ALIASES))}")
    return DISTILLER_ALIASES[name]


@STRATEGIES.register("cassle")
class CaSSLeMixin(StrategyMixin):
    """Frozen past network + predictor, with the method family's distillation loss."""

    strategy_args_title = "CaSSLe distillation"
    strategy_args = {
        "distiller": (str, None, "family (default: the method's): " + ", ".join(sorted(DISTILLER_ALIASES))),
        "distill_lamb": (float, None, "weight of the distillation loss (default 1; 25 for predictive_mse)"),
        "distill_proj_hidden_dim": (int, 2048, "hidden width of the distillation predictor"),
        "distill_temperature": (float, None, "contrastive: 0.2, knowledge: 0.1"),
        "distill_barlow_lamb": (float, 5e-3, "decorrelative: weight of the off-diagonal terms"),
        "distill_scale_loss": (float, 0.1, "decorrelative: scale of the distillation loss"),
    }

    @classmethod
    def check_compatible(cls, method_cls: type) -> None:
        family = getattr(method_cls, "family", None)
        if family not in DISTILL_LOSSES:
            raise ValueError(
                f"--strategy cassle cannot wrap {method_cls.__name__}: its family '{family}' has no distiller "
                f"({sorted(DISTILL_LOSSES)}); use --strategy finetune"
            )

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        hp = self.strategy_cfg
        self.distiller = resolve_distiller(hp.distiller, getattr(self, "family", None))
        if self.distiller == "knowledge" and not isinstance(getattr(self, "prototypes", None), nn.Module):
            raise ValueError(
                f"--distiller knowledge needs a method with prototypes (family 'knowledge'), not {self.model_cfg.method}"
            )
        self.distill_lamb = float(DEFAULT_LAMB.get(self.distiller, 1.0) if hp.distill_lamb is None else hp.distill_lamb)
        default_temp = 0.1 if self.distiller == "knowledge" else 0.2
        self.distill_temperature = default_temp if hp.distill_temperature is None else hp.distill_temperature
        self.distill_barlow_lamb = hp.distill_barlow_lamb
        self.distill_scale_loss = hp.distill_scale_loss

        dim = self._projection_dim()
        self.distill_predictor = mlp2(dim, hp.distill_proj_hidden_dim, dim)
        if self.distiller == "knowledge":
            num_prototypes = self.prototypes.weight.shape[0]
            # weight-normalised like SwAV's prototypes in the reference: magnitude g and direction v both learn
            self.distill_prototypes = nn.utils.parametrizations.weight_norm(nn.Linear(dim, num_prototypes, bias=False))
        self.frozen_backbone: nn.Module | None = None
        self.frozen_projector: nn.Module | None = None
        self.frozen_prototypes: nn.Module | None = None
        self._set_distill_trainable(False)  # task 0 never distils

    # ----------------------------------------------------------------- set-up
    def _projection_dim(self) -> int:
        with torch.no_grad():
            was = self.projector.training
            self.projector.eval()
            z = self.projector(torch.zeros(2, self.backbone.num_features))
            self.projector.train(was)
        return int(z.shape[-1])

    def _distill_modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = [self.distill_predictor]
        if self.distiller == "knowledge":
            mods.append(self.distill_prototypes)
        return mods

    def _set_distill_trainable(self, flag: bool) -> None:
        for m in self._distill_modules():
            m.requires_grad_(flag)

    @property
    def distilling(self) -> bool:
        return self.frozen_backbone is not None

    def on_task_start(self, task_idx: int) -> None:
        """Snapshot the teacher from the weights the previous task ended with."""
        super().on_task_start(task_idx)
        if task_idx == 0:
            self.frozen_backbone = self.frozen_projector = self.frozen_prototypes = None
            self._set_distill_trainable(False)
            return
        self.frozen_backbone = teacher_copy(self.backbone)
        self.frozen_projector = teacher_copy(self.projector)
        if self.distiller == "knowledge":
            self.frozen_prototypes = teacher_copy(self.prototypes)
        self._set_distill_trainable(True)

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        groups = list(super().learnable_params)
        params = [p for m in self._distill_modules() for p in m.parameters()]
        group: dict[str, Any] = {"name": "distill_predictor", "params": params}
        if self.distiller == "predictive" and 0 < self.distill_lamb < 1:
            group["lr"] = self.lr / self.distill_lamb  # the reference's predictive distiller: lr / λ when λ < 1
        groups.append(group)
        return groups

    # --------------------------------------------------------------- training
    @torch.no_grad()
    def frozen_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projection of ``x`` by the frozen past network."""
        return self.frozen_projector(self.frozen_backbone(x))

    def distill_loss(self, z: list[torch.Tensor], frozen_z: list[torch.Tensor]) -> torch.Tensor:
        """Family loss between predicted current projections and frozen ones, averaged over views."""
        if getattr(self, "normalized_projection", False):  # MoCo v2+: the reference's z is the unit-norm query
            z = [F.normalize(zv, dim=-1) for zv in z]
        preds = [self.distill_predictor(zv) for zv in z]
        if self.distiller in ("contrastive", "decorrelative"):
            # batch-wide losses: over the global batch under DDP (one process on the concatenated batch gives the
            # same loss and, after DDP's gradient averaging, the same gradients; tests/distributed). The reference
            # computes them per process, which under DDP is a different (smaller-batch) loss.
            preds = [self.gather(p) for p in preds]
            frozen_z = [self.gather(fz) for fz in frozen_z]
        if self.distiller == "contrastive":
            # CaSSLe's form: all views stacked, so negatives include the other view's frozen projections
            return DISTILL_LOSSES["contrastive"](
                torch.cat(preds), torch.cat(frozen_z), temperature=self.distill_temperature
            )
        losses = []
        for p, fz in zip(preds, frozen_z):
            if self.distiller == "decorrelative":
                losses.append(
                    DISTILL_LOSSES["decorrelative"](
                        p, fz, lamb=self.distill_barlow_lamb, scale_loss=self.distill_scale_loss
                    )
                )
            elif self.distiller == "knowledge":
                with torch.no_grad():
                    frozen_logits = self.frozen_prototypes(F.normalize(fz, dim=-1))
                p_logits = self.distill_prototypes(F.normalize(p, dim=-1))
                losses.append(
                    DISTILL_LOSSES["knowledge"](p_logits, frozen_logits, temperature=self.distill_temperature)
                )
            else:
                losses.append(DISTILL_LOSSES[self.distiller](p, fz))
        return sum(losses) / len(losses)

    def distill_rows(self) -> slice | None:
        """Rows of the batch that are distilled (all); ``None`` skips distillation for this batch.

        ``cassle_r`` overrides it to distil replayed rows only.
        """
        return slice(None)

    def training_step(self, batch, batch_idx: int):
        out = super().training_step(batch, batch_idx)
        if not self.distilling:
            return out
        rows = self.distill_rows()
        if rows is None:
            return out
        views = batch[1]
        z = [zv[rows] for zv in out["z"][: len(views)]]
        frozen_z = [self.frozen_forward(v[rows]) for v in views[: len(z)]]
        loss = self.distill_loss(z, frozen_z)
        self.log("train_distill_loss", loss, on_epoch=True, sync_dist=True)
        out["loss"] = out["loss"] + self.distill_lamb * loss
        out["distill_loss"] = loss.detach()
        return out
