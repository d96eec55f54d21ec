"""``BaseMethod``: what every self-supervised method shares.

A method is a :class:`lightning.pytorch.LightningModule` that receives its own
typed configuration objects (:mod:`cassle.config`), never the whole flat dict:
``model=`` (:class:`~cassle.config.ModelConfig`), ``optim=``
(:class:`~cassle.config.OptimConfig`), ``method=`` (a dataclass of the class's
:attr:`~BaseMethod.method_args`, :meth:`BaseMethod.method_hparams`) and the
run's ``seed``; kept as ``model_cfg``, ``optim_cfg`` and ``method_cfg``. A
strategy mixin in front of the method takes its own parts (``strategy=``,
``replay=``, ...) before passing the rest on. :meth:`BaseMethod.from_config`
hands a :class:`~cassle.config.RunConfig`'s parts to every layer, and
:meth:`BaseMethod.from_flat` builds that from a flat ``--flag -> value`` mapping
(an ``args.json``, a test's dict). The base owns

* the backbone (:func:`cassle.backbones.build_backbone`), the projector built
  by the subclass through :meth:`BaseMethod.build_projector`, and an optional
  online linear classifier trained on *detached* features (``num_classes=0``
  means no labels: ``classifier is None``);
* the optimizer (SGD / LARS / AdamW) and the per-step learning-rate schedule;
* the shared part of ``training_step`` (one backbone pass per view, the
  online classifier) and ``validation_step`` (online classifier accuracy).

Subclasses call ``super().training_step`` and add their loss; the returned
dict follows the method contract in ``docs/contracts.md``: ``loss``,
``feats`` (one per view), ``z`` (one per view) and ``p`` / ``logits`` where the
method has them.

Learning-rate scaling: every group's lr (``lr`` and ``classifier_lr``) is
given for a global batch of 256 and multiplied by
``batch_size * trainer.world_size / 256`` (``batch_size`` is per device;
``world_size`` already counts devices x nodes), as solo-learn does.
``warmup_start_lr`` and ``min_lr`` are absolute and not scaled. With
CaSSLe's batch of 256 on one device the factor is 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
import torch.nn as nn
import torch.nn.functional as F

from cassle.backbones import build_backbone
from cassle.config import ArgSpec, ModelConfig, OptimConfig
from cassle.methods.configured import ConfiguredMixin
from cassle.methods.optim import configure_method_optimizers, schedule_lengths
from cassle.registry import Registry

__all__ = ["METHODS", "ArgSpec", "BaseMethod", "accuracy_at_k"]

#: command-line name -> method class; a method registers itself with ``@METHODS.register("name")``
METHODS: Registry = Registry("method", attribute="method_name")


def _plain(value: Any) -> bool:
    """True for values that survive a ``weights_only=True`` checkpoint load."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return False


def accuracy_at_k(logits: torch.Tensor, targets: torch.Tensor, top_k: Sequence[int] = (1,)) -> list[torch.Tensor]:
    """Top-k accuracies (fractions in ``[0, 1]``) of ``logits`` for ``targets``."""
    with torch.no_grad():
        maxk = min(max(top_k), logits.size(1))
        pred = logits.topk(maxk, dim=1).indices  # B x maxk
        correct = pred.eq(targets.view(-1, 1))
        n = max(targets.numel(), 1)
        return [correct[:, : min(k, maxk)].any(dim=1).float().sum() / n for k in top_k]


class BaseMethod(ConfiguredMixin, pl.LightningModule):
    """Shared machinery of every SSL method (solo-learn-style template).

    The defaults of every key are those of :class:`cassle.config.ModelConfig` and
    :class:`cassle.config.OptimConfig` (the command line's), plus the subclass's
    :attr:`method_args`; ``crop_size`` ``None`` builds the encoder for 32 px, and
    ``proj_hidden_dim`` / ``output_dim`` ``None`` take the method's published sizes.
    """

    #: the registry name (set by ``@METHODS.register``)
    method_name: ClassVar[str] = ""
    #: CaSSLe distillation family (``predictive``, ``predictive_mse``,
    #: ``contrastive``, ``decorrelative``, ``knowledge``).
    family: ClassVar[str] = ""
    #: number of augmented views per sample in a training batch (see :meth:`views_for`).
    num_views: ClassVar[int] = 2
    #: False for methods without a projection head (MAE): ``projector`` is then
    #: ``nn.Identity`` and ``z`` holds backbone features; strategies that need a
    #: projector (distillation through it) refuse such methods.
    has_projector: ClassVar[bool] = True
    #: True where the reference implementation's ``z`` is L2-normalised (MoCo v2+'s queries):
    #: CaSSLe then feeds its predictor the normalised projection.
    normalized_projection: ClassVar[bool] = False
    #: published projector sizes (used when ``proj_hidden_dim``/``output_dim`` are absent).
    default_proj_hidden_dim: ClassVar[int] = 2048
    default_output_dim: ClassVar[int] = 2048
    #: method-specific arguments ``name -> (type, default, help)``; merged along the MRO.
    method_args: ClassVar[dict[str, ArgSpec]] = {}

    #: the parts of a :class:`~cassle.config.RunConfig` this layer's ``__init__`` takes (merged along the MRO by
    #: :meth:`config_part_names`; ``method`` / ``strategy`` are the declared hyperparameters)
    config_parts: ClassVar[tuple[str, ...]] = ("model", "optim", "method")

    def __init__(
        self,
        *,
        model: ModelConfig | None = None,
        optim: OptimConfig | None = None,
        method: Any = None,
        seed: int = 5,
        **unexpected: Any,
    ) -> None:
        if unexpected:
            names = ", ".join(sorted(unexpected)[:6])
            raise TypeError(
                f"{type(self).__name__} takes its typed configuration parts (model=, optim=, method=, ...), not "
                f"flat keys ({names}): build it with {type(self).__name__}.from_flat(cfg) or .from_config(run)"
            )
        super().__init__()
        # typed configuration (cassle.config): each default has one home there
        self.model_cfg: ModelConfig = model if model is not None else ModelConfig()
        self.optim_cfg: OptimConfig = optim if optim is not None else OptimConfig()
        self.method_cfg = type(self)._own_hparams(method, "method_hparams", "all_method_args")
        self.seed: int = int(seed)
        type(self).check_cfg(self.model_cfg, self.method_cfg)
        self.save_hyperparameters(
            {
                k: v
                for part in (self.model_cfg, self.optim_cfg, self.method_cfg)
                for k, v in part.to_flat().items()
                if _plain(v)
            }
            | {"seed": self.seed}
        )

        # ---------------- architecture ----------------
        m = self.model_cfg
        self.encoder_name: str = m.encoder
        self.crop_size: int = m.crop_size if m.crop_size is not None else 32
        self.base_width: int | None = m.base_width
        self.num_classes: int = m.num_classes
        self.proj_hidden_dim: int = m.proj_hidden_dim or self.default_proj_hidden_dim
        self.output_dim: int = m.output_dim or self.default_output_dim

        # ---------------- optimisation ----------------
        o = self.optim_cfg
        self.optimizer_name: str = o.optimizer_name
        self.eta_lars: float = o.eta_lars
        self.grad_clip_lars: bool = o.grad_clip_lars
        self.exclude_bias_n_norm: bool = o.exclude_bias_n_norm
        self.lr: float = o.lr
        self.classifier_lr: float = o.classifier_lr
        self.weight_decay: float = o.weight_decay
        self.sgd_momentum: float = o.momentum
        self.scheduler_name: str = o.scheduler.lower()
        self.warmup_epochs: float = o.warmup_epochs
        self.warmup_start_lr: float = o.warmup_start_lr
        self.min_lr: float = o.min_lr
        self.lr_decay_steps: list[int] | None = list(o.lr_decay_steps) if o.lr_decay_steps is not None else None
        self.batch_size: int = o.batch_size
        self.max_epochs: int = o.max_epochs

        # ---------------- method-specific arguments ----------------
        for name, value in self.method_cfg.to_flat().items():
            setattr(self, name, value)

        # ---------------- modules ----------------
        self.backbone: nn.Module = build_backbone(self.encoder_name, self.crop_size, base_width=self.base_width)
        self.num_features: int = int(self.backbone.num_features)
        self.projector: nn.Module = self.build_projector()
        self.classifier: nn.Linear | None = (
            nn.Linear(self.num_features, self.num_classes) if self.num_classes > 0 else None
        )

    # --------------------------------------------------------------- modules
    def build_projector(self) -> nn.Module:
        """The projection head; called by ``BaseMethod.__init__`` after the backbone.

        May use ``self.num_features``, ``self.proj_hidden_dim``, ``self.output_dim``
        and the method's arguments. Subclasses must override it.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement build_projector()")

    @staticmethod
    def _trainable(module: nn.Module) -> list[nn.Parameter]:
        return [p for p in module.parameters() if p.requires_grad]

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        """Optimizer param groups (each with a ``name``).

        Subclasses and strategy mixins extend it with ``super().learnable_params + [...]``.
        The classifier group has its own lr (``classifier_lr``) and no weight decay.
        """
        groups: list[dict[str, Any]] = [
            {"name": "backbone", "params": self._trainable(self.backbone)},
            {"name": "projector", "params": self._trainable(self.projector)},
        ]
        if self.classifier is not None:
            groups.append(
                {
                    "name": "classifier",
                    "params": self._trainable(self.classifier),
                    "lr": self.classifier_lr,
                    "weight_decay": 0.0,
                }
            )
        return groups

    @property
    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """``(online, momentum)`` module pairs; empty for non-momentum methods."""
        return []

    # ----------------------------------------------------------- distributed
    def world_size(self) -> int:
        """Number of processes of the attached trainer (1 without one)."""
        trainer = self._trainer
        return int(trainer.world_size) if trainer is not None else 1

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate ``x`` from every process along dim 0, keeping gradients.

        Identity on a single process; otherwise ``all_gather(sync_grads=True)``
        (for tensors that require grad) flattened to ``(world * B) x ...``.
        """
        if self.world_size() <= 1:
            return x
        return self.all_gather(x, sync_grads=x.requires_grad).flatten(0, 1)

    def _log(self, name: str, value: Any, **kwargs: Any) -> None:
        """``self.log`` with the defaults used everywhere; no-op without a trainer."""
        if self._trainer is None:
            return
        kwargs.setdefault("on_epoch", True)
        kwargs.setdefault("sync_dist", True)
        self.log(name, value, **kwargs)

    # --------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One view through backbone and projector: ``{"feats", "z"}``."""
        feats = self.backbone(x)
        return {"feats": feats, "z": self.projector(feats)}

    def _unpack_train_batch(self, batch: Sequence[Any]) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        if not isinstance(batch, (list, tuple)) or len(batch) != 3:
            raise ValueError(
                "a training batch must be (indexes, views, targets); "
                f"got {type(batch).__name__} of length {len(batch) if hasattr(batch, '__len__') else '?'}"
            )
        indexes, views, targets = batch
        views = [views] if isinstance(views, torch.Tensor) else list(views)
        if len(views) != self.num_views:
            raise ValueError(f"{type(self).__name__} expects {self.num_views} views per batch, got {len(views)}")
        return indexes, views, targets

    def online_classifier_step(
        self, feats: torch.Tensor, targets: torch.Tensor, global_mean: bool = False
    ) -> dict[str, torch.Tensor]:
        """Cross-entropy and accuracy of the online classifier on detached ``feats``.

        Rows with ``target == -1`` (unlabelled) are ignored; with no labelled
        row (or no classifier) the loss is a zero that carries no gradient.
        ``global_mean`` (training): under DDP the loss is this rank's summed
        cross-entropy times ``world_size`` over the labelled rows of *every*
        rank, so DDP's average of the ranks' gradients is the gradient of the
        mean over the global batch's labelled rows even when the ranks hold
        different numbers of them (a mean of local means would weight a
        rank's few labelled rows as much as another's many).
        """
        zero = feats.new_zeros(())
        if self.classifier is None:
            return {"loss": zero}
        logits = self.classifier(feats.detach())
        valid = targets >= 0
        world = self.world_size() if global_mean else 1
        if world > 1:  # every rank joins the count, labelled rows or not
            count = self.gather(valid.sum().view(1).to(logits.dtype)).sum()
        if not bool(valid.any()):
            return {"loss": logits.sum() * 0.0, "logits": logits}
        if world > 1:
            loss = F.cross_entropy(logits[valid], targets[valid], reduction="sum") * world / count
        else:
            loss = F.cross_entropy(logits[valid], targets[valid])
        top_k = (1, 5) if self.num_classes >= 5 else (1,)
        accs = accuracy_at_k(logits[valid], targets[valid], top_k)
        out = {"loss": loss, "logits": logits, "acc1": accs[0]}
        if len(accs) > 1:
            out["acc5"] = accs[1]
        return out

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        """Backbone features of every view (one pass each) and the online classifier.

        Returns ``{"loss": class_loss, "feats": [B x F per view]}``; methods add
        their SSL loss and ``z`` / ``p`` / ``logits``.
        """
        _, views, targets = self._unpack_train_batch(batch)
        feats = [self.backbone(v) for v in views]
        cls = self.online_classifier_step(feats[0], targets, global_mean=True)
        if self.classifier is not None:
            self._log("train_class_loss", cls["loss"])
            if "acc1" in cls:
                self._log("train_online_acc1", 100.0 * cls["acc1"])  # % like every probe
        return {"loss": cls["loss"], "feats": feats}

    def validation_step(
        self, batch: Sequence[Any], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, torch.Tensor] | None:
        """Online-classifier loss and accuracy on ``(images, targets)``; nothing without a classifier."""
        if self.classifier is None:
            return None
        images, targets = batch[0], batch[-1]
        feats = self.backbone(images)
        out = self.online_classifier_step(feats, targets)
        if "acc1" not in out:
            return None
        self._log("val_loss", out["loss"], on_step=False)
        self._log("val_acc1", 100.0 * out["acc1"], on_step=False)  # % like every probe
        if "acc5" in out:
            self._log("val_acc5", 100.0 * out["acc5"], on_step=False)
        return {k: v for k, v in out.items() if k != "logits"}

    # ------------------------------------------------------------ optimizers
    def lr_scale(self) -> float:
        """``batch_size * world_size / 256`` (global batch over the reference 256)."""
        return self.batch_size * self.world_size() / 256.0

    def _schedule_lengths(self) -> tuple[int, int]:
        """``(total_steps, warmup_steps)`` of this fit, in optimizer steps."""
        return schedule_lengths(self)

    def configure_optimizers(self) -> Any:
        """Optimizer over :attr:`learnable_params` and a per-step schedule (:func:`~cassle.methods.optim.configure_method_optimizers`)."""
        return configure_method_optimizers(self)
