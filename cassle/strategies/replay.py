"""Replay strategies: one replay mechanism, three ways to use the buffer.

:class:`ReplayMixin` owns the buffer (:mod:`cassle.buffers`), draws replayed
samples, augments their raw ``uint8`` images with the stream's own two-view
augmentation (:func:`cassle.data.replay.augment_batch`, or with ``--gpu_augment``
the datamodule's batched on-device augmentation), composes the batch
the method trains on, and inserts the stream minibatch into the buffer after
its last pass (``--online --mb_passes``; offline every step is a last pass).
Subclasses override :meth:`ReplayMixin.compose_batch` (what the method sees)
and :meth:`ReplayMixin.replay_loss` (a term added to the method's loss).

* ``er`` — Experience Replay (Ratcliff 1990; Robins 1995; Chaudhry et al.,
  "On Tiny Episodic Memories in Continual Learning", 2019,
  https://arxiv.org/abs/1902.10486): the stream batch concatenated with
  ``--replay_batch_size`` buffer samples.
* ``lump`` — Madaan et al., "Representational Continuity for Unsupervised
  Continual Learning", ICLR 2022 (https://arxiv.org/abs/2110.06976): every
  stream view is mixed with a replayed view, ``λ x + (1 − λ) x_replay``,
  ``λ ~ Beta(--lump_alpha, --lump_alpha)`` (one λ per step), and the method
  trains on the mixture.
* ``minred`` — Purushwalkam et al., "The Challenges of Continuous
  Self-Supervised Learning", ECCV 2022 (https://arxiv.org/abs/2203.12710):
  the stream batch enters a minimum-redundancy buffer (features from a no-grad
  pass) and the method trains on buffer samples only. Because it never trains
  on the stream directly, it inserts *before* training (on the first pass of
  an online minibatch), not after the last one.

The batch the method receives lists stream rows first, then replayed rows;
``self.replay_ctx`` (``num_stream``, ``num_replay``, ``positions``) tells
later hooks which rows are which.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from cassle.buffers import build_buffer
from cassle.config import AugmentationConfig, DataConfig, ReplayConfig
from cassle.data.replay import augment_batch, plain_views
from cassle.strategies.base import STRATEGIES, StrategyMixin, split_batch

Batch = tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]


class ReplayMixin(StrategyMixin):
    """The replay mechanism shared by every replay strategy (ER's behaviour by default).

    Takes ``replay=`` (:class:`~cassle.config.ReplayConfig`: ``buffer_type``, default
    :attr:`default_buffer_type`; ``mem_size``; ``replay_batch_size``, default ``batch_size``; ``seed``;
    ``online``; ``mb_passes``) and the stream's ``data=`` / ``augmentation=`` configs.
    """

    strategy_name = "replay"
    uses_buffer = True
    needs_raw_images = True
    default_buffer_type: str = "reservoir"
    #: buffer type this strategy needs (``None``: any)
    required_buffer_type: str | None = None
    #: insert the stream after the step (True) or before composing the batch (False)
    insert_after_step: bool = True

    #: the :class:`~cassle.config.RunConfig` parts this layer takes: the replay memory's settings, and the
    #: stream's data and augmentation settings (to augment replayed images as the stream when the data module
    #: has not handed its augmentation over, and to normalise buffer images)
    config_parts: ClassVar[tuple[str, ...]] = ("replay", "data", "augmentation")

    @classmethod
    def check_replay(cls, rc: ReplayConfig) -> None:
        """Raise ValueError, naming the fix, if the replay memory ``rc`` does not fit this strategy."""
        kind = rc.buffer_type or cls.required_buffer_type or cls.default_buffer_type
        if cls.required_buffer_type is not None and kind != cls.required_buffer_type:
            raise ValueError(
                f"--strategy {cls.strategy_name} needs --buffer_type {cls.required_buffer_type} (got {kind}); "
                f"drop --buffer_type or pass {cls.required_buffer_type}"
            )
        if rc.mem_size < 1:
            raise ValueError(
                f"--strategy {cls.strategy_name} replays from a buffer: --mem_size must be at least 1 "
                f"(got {rc.mem_size}; the default is {ReplayConfig.mem_size})"
            )

    def __init__(
        self,
        *,
        replay: ReplayConfig | None = None,
        data: DataConfig | None = None,
        augmentation: AugmentationConfig | None = None,
        **parts: Any,
    ) -> None:
        super().__init__(**parts)
        #: the replay memory's settings, typed
        self.replay_cfg = rc = replay if replay is not None else ReplayConfig()
        type(self).check_replay(rc)
        #: the stream's data / augmentation settings (normalisation, ``--gpu_augment``, the fallback augmentation)
        self.stream_data_cfg = data if data is not None else DataConfig()
        self.stream_aug_cfg = augmentation if augmentation is not None else AugmentationConfig()
        kind = rc.buffer_type or self.required_buffer_type or self.default_buffer_type
        self.replay_seed = rc.seed
        self.buffer = build_buffer(kind, rc.mem_size, seed=self.replay_seed)
        self.replay_batch_size = rc.replay_batch_size or self.batch_size
        self.mb_passes = rc.mb_passes
        #: whether the stream is augmented batch-at-once on the device (``--gpu_augment``)
        self.stream_gpu_augment = self.stream_data_cfg.gpu_augment
        #: generator of the strategy's own random choices (e.g. LUMP's λ)
        self.replay_generator = torch.Generator().manual_seed(self.replay_seed + 1)
        self._replay_transform: Callable[[torch.Tensor], list[torch.Tensor]] | None = None
        self._replay_batched: Callable[[torch.Tensor], list[torch.Tensor]] | None = None
        self._rank_seeded = False
        self.replay_ctx: dict[str, Any] = {}

    # ------------------------------------------------------------ augmentation
    @property
    def replay_transform(self) -> Callable[[torch.Tensor], list[torch.Tensor]]:
        """The stream's multi-view augmentation (the datamodule's, else built from the config)."""
        if self._replay_transform is None:  # not handed over (used outside the task loop): build it
            from cassle.data.datamodule import resolve_mean_std
            from cassle.data.transforms import build_multiview_transform

            mean, std = resolve_mean_std(self.stream_data_cfg)
            self._replay_transform = build_multiview_transform(
                self.stream_aug_cfg, self.crop_size, self.num_views, mean, std
            )
        return self._replay_transform

    @replay_transform.setter
    def replay_transform(self, fn: Callable[[torch.Tensor], list[torch.Tensor]]) -> None:
        self._replay_transform = fn

    @property
    def replay_batched_augment(self) -> Callable[[torch.Tensor], list[torch.Tensor]] | None:
        """With ``--gpu_augment``: the batch-at-once augmentation of the stream (the datamodule's,
        else built from the config), applied to replayed images on their device; ``None`` otherwise."""
        if not self.stream_gpu_augment:
            return None
        if self._replay_batched is None:  # not handed over (used outside the task loop): build it
            from cassle.data.batched_augment import BatchedAugment
            from cassle.data.datamodule import resolve_mean_std

            mean, std = resolve_mean_std(self.stream_data_cfg)
            self._replay_batched = BatchedAugment.from_config(
                self.stream_aug_cfg, self.crop_size, self.num_views, mean, std, seed=self.replay_seed + 2
            )
        return self._replay_batched

    def use_stream_augmentation(self, datamodule: Any) -> None:
        """Augment replayed images exactly as the stream: the task loop hands over the data module's
        per-sample transform and, with ``--gpu_augment``, its on-device batch augmentation (same generator)."""
        self._replay_transform = datamodule.train_transform()
        if self.stream_gpu_augment:
            self._replay_batched = datamodule.augment_on_device

    def augment(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Fresh augmented views of raw ``uint8`` buffer images: the whole batch at once on its device
        with ``--gpu_augment``, else the stream's per-sample pipeline."""
        batched = self.replay_batched_augment
        if batched is not None:
            return batched(images)
        return augment_batch(images, self.replay_transform)

    @torch.no_grad()
    def buffer_features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features of the un-augmented images (no grad, BatchNorm in eval mode)."""
        from cassle.data.datamodule import resolve_mean_std

        mean, std = resolve_mean_std(self.stream_data_cfg)
        x = plain_views(images, self.crop_size, mean, std)
        was = self.backbone.training
        self.backbone.eval()
        try:
            return self.backbone(x).float()
        finally:
            self.backbone.train(was)

    # ----------------------------------------------------------------- buffer
    def insert_fields(self, stream: dict[str, Any], out: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        """Per-sample fields stored for the stream rows (subclasses add their own)."""
        fields = {"images": stream["raw"], "targets": stream["targets"], "indexes": stream["indexes"]}
        if "feats" in self.buffer.needs_fields:
            fields["feats"] = self.buffer_features(stream["raw"])
        return fields

    def insert(self, stream: dict[str, Any], out: dict[str, Any] | None) -> None:
        self.buffer.add(**self.insert_fields(stream, out))

    def replay_sample(self, n: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(positions, fields)`` of up to ``n`` buffer samples (the buffer's policy)."""
        return self.buffer.sample(n)

    # ------------------------------------------------------------------ steps
    def compose_batch(self, stream: dict[str, Any]) -> tuple[Batch, dict[str, Any]]:
        """ER: stream rows, then ``replay_batch_size`` replayed rows with fresh augmentations."""
        b = int(stream["indexes"].shape[0])
        pos, rep = self.replay_sample(self.replay_batch_size)
        ctx = {"num_stream": b, "num_replay": int(pos.numel()), "positions": pos}
        if pos.numel() == 0:
            return (stream["indexes"], stream["views"], stream["targets"]), ctx
        rviews = self.augment(rep["images"])
        views = [torch.cat([v, rv.to(v.dtype)]) for v, rv in zip(stream["views"], rviews)]
        indexes = torch.cat([stream["indexes"], rep["indexes"].to(stream["indexes"].device)])
        targets = torch.cat([stream["targets"], rep["targets"].to(stream["targets"].device)])
        return (indexes, views, targets), ctx

    def replay_loss(self, out: dict[str, Any], batch: Batch, ctx: dict[str, Any]) -> torch.Tensor | None:
        """A term added to the method's loss (none for ER, LUMP, MinRed)."""
        return None

    def replay_rows(self) -> slice | None:
        """Rows of the composed batch that came from the buffer (``None`` when there are none)."""
        ctx = self.replay_ctx
        if not ctx or ctx.get("num_replay", 0) == 0:
            return None
        start = ctx["num_stream"]
        return slice(start, start + ctx["num_replay"])

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        (indexes, views, targets), extras = split_batch(batch)
        if "raw" not in extras:
            raise ValueError(
                f"--strategy {self.strategy_name} needs the raw uint8 images in the batch: build the "
                "ContinualDataModule with DataConfig(return_raw=True) (main_continual.py does this for replay strategies)"
            )
        raw = extras["raw"]
        mb_pass = extras.get("mb_pass", 0)
        mb_pass = int(mb_pass.max()) if isinstance(mb_pass, torch.Tensor) else int(mb_pass)
        self.buffer.to(raw.device)
        stream = {"indexes": indexes, "views": list(views), "targets": targets, "raw": raw}
        if not self.insert_after_step and mb_pass == 0:
            self.insert(stream, None)
        composed, ctx = self.compose_batch(stream)
        self.replay_ctx = ctx
        out = super().training_step(composed, batch_idx)
        extra = self.replay_loss(out, composed, ctx)
        if extra is not None:
            out["loss"] = out["loss"] + extra
        out["num_replayed"] = ctx["num_replay"]
        if self.insert_after_step and mb_pass >= self.mb_passes - 1:
            self.insert(stream, out)
        self._log("buffer_size", float(len(self.buffer)), on_step=True, on_epoch=False, sync_dist=False)
        return out

    def _seed_rank(self) -> None:
        """Each rank keeps its own buffer: give a fresh one its own random sequence (seed + 1000·rank)."""
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1 and not self._rank_seeded and self.buffer.num_seen == 0:
            self.buffer.reseed(self.replay_seed + 1000 * int(trainer.global_rank))
            self.replay_generator.manual_seed(self.replay_seed + 1 + 1000 * int(trainer.global_rank))
        self._rank_seeded = True

    # ------------------------------------------------------------- checkpoint
    # Under DDP every rank keeps its own buffer and replay generator (seeded by rank); only rank 0 writes
    # checkpoints, so every rank's states are gathered (mid-task: in on_save_checkpoint, run on all ranks; task
    # checkpoints: at the end of each fit) as ``buffer_per_rank`` / ``replay_generator_per_rank``; on load each
    # rank takes its own entry (else ``buffer`` / ``replay_generator``: rank 0's).
    def _rank(self) -> int:
        """The trainer's global rank, else the launcher's (``RANK``...; 0 if none), made good in on_train_start."""
        env = [os.environ.get(v, "") for v in ("RANK", "SLURM_PROCID", "LOCAL_RANK")]
        return int(self._trainer.global_rank) if self._trainer else next((int(v) for v in env if v.isdigit()), 0)

    @staticmethod
    def _gather(obj: Any) -> list[Any] | None:
        """``obj`` of every rank, in rank order, under DDP; ``None`` on a single process."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return None
        states: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(states, obj)
        return states

    def _gather_buffer_states(self) -> list[dict[str, Any]] | None:
        """Every rank's buffer state, in rank order, under DDP; ``None`` on a single process."""
        return self._gather(self.buffer.state_dict())

    def _gather_rank_states(self) -> dict[str, list[Any]]:
        """``buffer_per_rank`` and ``replay_generator_per_rank`` under DDP (a collective); empty otherwise."""
        buffers = self._gather_buffer_states()
        generators = self._gather(self.replay_generator.get_state())
        out: dict[str, list[Any]] = {}
        if buffers is not None:
            out["buffer_per_rank"] = buffers
        if generators is not None:
            out["replay_generator_per_rank"] = generators
        return out

    def on_train_start(self) -> None:
        self._per_rank_states: dict[str, list[Any]] = {}
        if getattr(self, "_pending_rank_states", None) and self._trainer is not None:  # rank unknown at load
            self._load_own_states(self._pending_rank_states, int(self._trainer.global_rank))
        self._pending_rank_states = None
        self._seed_rank()
        super().on_train_start()  # type: ignore[misc]

    def on_train_end(self) -> None:
        super().on_train_end()  # type: ignore[misc]
        self._per_rank_states = self._gather_rank_states()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["strategy_state"].update(self._gather_rank_states())

    def strategy_state_dict(self) -> dict[str, Any]:
        state = super().strategy_state_dict()
        state["buffer"] = self.buffer.state_dict()
        state["replay_generator"] = self.replay_generator.get_state()
        state.update(getattr(self, "_per_rank_states", None) or {})
        return state

    def load_strategy_state_dict(self, state: dict[str, Any]) -> None:
        super().load_strategy_state_dict(state)
        self._load_own_states(state, self._rank())
        # no trainer yet (a node started by hand knows only NODE_RANK): on_train_start takes this rank's entry
        per_rank = {k: state[k] for k in ("buffer_per_rank", "replay_generator_per_rank") if state.get(k)}
        self._pending_rank_states = per_rank if self._trainer is None and per_rank else None

    def _load_own_states(self, state: dict[str, Any], rank: int) -> None:
        """Rank ``rank``'s buffer and generator from ``state`` (its per-rank entry, else the single one)."""

        def own(key: str) -> Any:
            per_rank = state.get(f"{key}_per_rank")
            return per_rank[rank] if per_rank and rank < len(per_rank) else state.get(key)

        buffer, generator = own("buffer"), own("replay_generator")
        if buffer is not None:
            self.buffer.load_state_dict(buffer)
            self._rank_seeded = True
        if generator is not None:
            self.replay_generator.set_state(generator.cpu())


@STRATEGIES.register("er")
class ERMixin(ReplayMixin):
    """Experience Replay: train on the stream batch plus ``--replay_batch_size`` buffer samples."""


@STRATEGIES.register("lump")
class LUMPMixin(ReplayMixin):
    """LUMP (Madaan et al., ICLR 2022): train on mixup of stream and replayed views."""

    strategy_args_title = "LUMP"
    strategy_args = {"lump_alpha": (float, 0.4, "λ ~ Beta(alpha, alpha)")}

    @classmethod
    def check_config(cls, method_cls: type, hp: Any) -> None:
        super().check_config(method_cls, hp)
        alpha = hp.lump_alpha
        if not alpha > 0:
            raise ValueError(f"--lump_alpha must be positive (Beta(alpha, alpha)), got {alpha}")

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        self.lump_alpha = self.strategy_cfg.lump_alpha

    def sample_lambda(self) -> float:
        """``λ ~ Beta(alpha, alpha)`` from the strategy's seeded generator."""
        seed = int(torch.randint(0, 2**62, (1,), generator=self.replay_generator))
        return float(np.random.default_rng(seed).beta(self.lump_alpha, self.lump_alpha))

    def compose_batch(self, stream: dict[str, Any]) -> tuple[Batch, dict[str, Any]]:
        b = int(stream["indexes"].shape[0])
        pos, rep = self.replay_sample(b)
        ctx: dict[str, Any] = {"num_stream": b, "num_replay": 0, "positions": pos, "lam": None}
        if pos.numel() == 0:  # nothing to mix with yet
            return (stream["indexes"], stream["views"], stream["targets"]), ctx
        rviews = self.augment(rep["images"])
        cover = torch.arange(b, device=pos.device) % pos.numel()  # fewer stored than stream rows: reuse them
        lam = self.sample_lambda()
        views = [lam * v + (1.0 - lam) * rv[cover.to(rv.device)].to(v.dtype) for v, rv in zip(stream["views"], rviews)]
        ctx["lam"] = lam
        return (stream["indexes"], views, stream["targets"]), ctx


@STRATEGIES.register("minred")
class MinRedMixin(ReplayMixin):
    """MinRed (Purushwalkam et al., ECCV 2022): insert into a MinRed buffer, train on buffer samples only."""

    default_buffer_type = "minred"
    required_buffer_type = "minred"
    insert_after_step = False

    def compose_batch(self, stream: dict[str, Any]) -> tuple[Batch, dict[str, Any]]:
        b = int(stream["indexes"].shape[0])
        pos, rep = self.replay_sample(max(b, 2))
        views = self.augment(rep["images"])
        dtype = stream["views"][0].dtype
        ctx = {"num_stream": 0, "num_replay": int(pos.numel()), "positions": pos}
        return (rep["indexes"], [v.to(dtype) for v in views], rep["targets"]), ctx

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        out = super().training_step(batch, batch_idx)
        # refresh the redundancy features of the samples just trained on
        rows = self.replay_rows()
        if rows is not None:
            feats = torch.stack([f[rows].detach().float() for f in out["feats"]]).mean(0)
            self.buffer.update(self.replay_ctx["positions"], "feats", feats)
        return out
