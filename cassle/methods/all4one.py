"""All4One — Estepa et al., "All4One: Symbiotic Neighbour Contrastive Learning via Self-Attention and
Redundancy Reduction", ICCV 2023 (https://arxiv.org/abs/2303.09417).

A momentum (EMA) encoder fills a support set (:class:`~cassle.methods.queue.FeatureQueue`) with its
L2-normalised projections of view 1. For every view, the ``5`` support vectors nearest (cosine) to the
momentum projection form a sequence; a small transformer encoder (self-attention) summarises it
into a "centroid" (its first output token). The online branch has two predictors: ``p`` (contrasted
with the other view's nearest neighbour) and ``q``, which replaces the sequence's first slot (the
"shift": ``[q, nn_1, .., nn_4]``) so that the centroid of that shifted sequence is contrasted with
the other view's neighbour centroid. A feature-level redundancy term decorrelates the columns of
momentum and online projections. The loss is :func:`cassle.losses.all4one.all4one_loss_func`.

Defaults and where they come from:

* projector ``Linear-BN-ReLU-Linear-BN-ReLU-Linear-BN`` 2048 -> 256, predictors ``Linear-BN-ReLU-Linear``
  hidden 4096, neighbour temperature 0.2, support set 98304, EMA 0.99 -> 1.0, LARS lr 1.0 (eta 0.02,
  clipped, biases/norms excluded), weight decay 1e-5, batch 256: solo-learn
  ``scripts/pretrain/cifar/all4one.yaml``;
* 5 neighbours, transformer (3 layers, 8 heads, feed-forward 2·D, dropout 0.1, post-norm, ReLU), its
  lr 0.1, the sinusoidal position encoding, the centroid temperature 0.1 (the NNCLR loss's default,
  the reference passes none), the weights 0.5 / 0.5 / 5 (``0.5·(10·…)``) and enqueuing view 1's
  momentum projections only: solo-learn ``solo/methods/all4one.py``.

Position encoding: the reference adds ``PositionalEncodingPermute1D(5)`` to the ``B x 5 x D`` sequence,
i.e. the sinusoid runs along the *feature* axis with one frequency/phase per sequence slot
(slot ``s``, feature ``d``: ``sin(d·f_{s//2})`` for even ``s``, ``cos`` for odd, ``f_j = 10000^(-2j/6)``).
:func:`neighbour_position_encoding` reproduces exactly these values.

Deviations from the reference: (1) the transformer's lr (0.1) is scaled by global batch / 256 like
every param-group lr here (solo-learn keeps it absolute; identical at the published batch 256 on one
device); (2) the support set is a ring of any size (solo-learn asserts ``queue_size`` divisible by the
global batch); (3) the reference's NN-index bookkeeping and pickle dumps for analysis are left out;
(4) ``FeatureQueue.nearest`` returns one neighbour, so the top-5 lookup is done here on
:meth:`FeatureQueue.rows`; (5) under DDP the feature term is computed on the global batch (momentum and
online projections gathered, the latter with gradients), so several devices train like one device on the
whole batch; the reference computes it on each device's batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from cassle.config import ModelConfig
from cassle.losses.all4one import all4one_loss_func
from cassle.methods.base import METHODS, ArgSpec
from cassle.methods.heads import mlp2, mlp3
from cassle.methods.momentum import BaseMomentumMethod
from cassle.methods.queue import FeatureQueue

__all__ = ["All4One", "neighbour_position_encoding"]


def neighbour_position_encoding(num_slots: int, dim: int) -> torch.Tensor:
    """The reference's additive encoding of a ``num_slots x dim`` neighbour sequence.

    Slot ``s`` gets ``sin(d · f)`` (even ``s``) or ``cos(d · f)`` (odd ``s``) over the feature index
    ``d``, with ``f = 10000^(-2·(s//2)/C)`` and ``C = 2·ceil(num_slots / 2)``.
    """
    if num_slots < 1 or dim < 1:
        raise ValueError(f"neighbour_position_encoding: needs num_slots and dim >= 1, got {num_slots}, {dim}")
    channels = 2 * math.ceil(num_slots / 2)
    slots = torch.arange(num_slots)
    freq = 10000.0 ** (-(2 * (slots // 2)).double() / channels)  # num_slots
    angle = freq[:, None] * torch.arange(dim, dtype=torch.float64)[None, :]  # num_slots x dim
    enc = torch.where((slots % 2 == 0)[:, None], angle.sin(), angle.cos())
    return enc.float()


@METHODS.register("all4one")
class All4One(BaseMomentumMethod):
    """All4One with solo-learn's CIFAR defaults (projector 2048 -> 256, support set 98304).

    ``queue`` is a :class:`~cassle.methods.queue.FeatureQueue` of unit-norm momentum projections with
    their labels (random unit vectors and label ``-1`` at start); ``momentum_z`` in the step output is
    L2-normalised, as in the reference. Step outputs beyond the contract: ``p`` (NN predictor),
    ``q`` (shift predictor), ``neighbours`` (``B x 5 x D`` per view, most similar first),
    ``centroids`` and ``shifted_centroids`` (``B x D`` per view).

    CaSSLe family: ``contrastive``, as NNCLR: two of its three terms are InfoNCE contrasts (NNCLR's neighbour
    term and the centroid term, which contrast each sample's positive against the batch's other samples), so
    the past network is distilled with the same cross InfoNCE, not with the redundancy-reduction
    (``decorrelative``) loss that only its feature term resembles.
    """

    family: ClassVar[str] = "contrastive"
    default_proj_hidden_dim: ClassVar[int] = 2048
    default_output_dim: ClassVar[int] = 256
    #: neighbours per sequence, transformer heads and layers (solo-learn ``solo/methods/all4one.py``)
    num_neighbours: ClassVar[int] = 5
    attention_heads: ClassVar[int] = 8
    attention_layers: ClassVar[int] = 3
    method_args: ClassVar[dict[str, ArgSpec]] = {
        "temperature": (float, 0.2, "softmax temperature of the neighbour contrast"),
        "centroid_temperature": (float, 0.1, "softmax temperature of the centroid contrast"),
        "queue_size": (int, 98304, "size of the support set of past momentum projections"),
        "pred_hidden_dim": (int, 4096, "hidden width of both All4One predictors"),
        "transformer_lr": (float, 0.1, "learning rate of the centroid transformer (scaled like --lr)"),
        "neighbour_weight": (float, 0.5, "weight of the neighbour contrast"),
        "centroid_weight": (float, 0.5, "weight of the centroid contrast"),
        "feature_weight": (float, 5.0, "weight of the feature (redundancy-reduction) contrast"),
        "base_tau_momentum": (float, 0.99, "initial EMA momentum of the momentum encoder"),
        "final_tau_momentum": (float, 1.0, "final EMA momentum (cosine schedule over the fit)"),
    }

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        dim = self.output_dim
        self.predictor: nn.Module = mlp2(dim, self.pred_hidden_dim, dim)
        self.centroid_predictor: nn.Module = mlp2(dim, self.pred_hidden_dim, dim)
        layer = nn.TransformerEncoderLayer(
            d_model=dim, nhead=self.attention_heads, dim_feedforward=2 * dim, dropout=0.1, batch_first=True
        )
        self.transformer: nn.Module = nn.TransformerEncoder(
            layer, num_layers=self.attention_layers, enable_nested_tensor=False
        )
        self.register_buffer(
            "position_encoding", neighbour_position_encoding(self.num_neighbours, dim), persistent=False
        )
        self.queue = FeatureQueue(self.queue_size, dim, init="random", labels=True)

    @classmethod
    def check_cfg(cls, model: ModelConfig, hp: Any) -> None:
        super().check_cfg(model, hp)
        dim = model.output_dim or cls.default_output_dim
        if dim % cls.attention_heads:
            raise ValueError(
                f"all4one: --output_dim must be divisible by the transformer's {cls.attention_heads} heads, got {dim}"
            )
        if hp.queue_size < cls.num_neighbours:
            raise ValueError(f"all4one: --queue_size must be at least {cls.num_neighbours}, got {hp.queue_size}")
        for name in ("temperature", "centroid_temperature"):
            if not getattr(hp, name) > 0:
                raise ValueError(f"all4one: --{name} must be positive, got {getattr(hp, name)}")

    def build_projector(self) -> nn.Module:
        # the reference's projector ends in an (affine) BatchNorm
        return nn.Sequential(
            *mlp3(self.num_features, self.proj_hidden_dim, self.output_dim), nn.BatchNorm1d(self.output_dim)
        )

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        return super().learnable_params + [
            {"name": "predictor", "params": self._trainable(self.predictor)},
            {"name": "centroid_predictor", "params": self._trainable(self.centroid_predictor)},
            {"name": "transformer", "params": self._trainable(self.transformer), "lr": self.transformer_lr},
        ]

    # ------------------------------------------------------------ components
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().forward(x)
        out["p"] = self.predictor(out["z"])
        return out

    @torch.no_grad()
    def momentum_forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The momentum branch; ``momentum_z`` L2-normalised (the reference's momentum output)."""
        out = super().momentum_forward(x)
        out["momentum_z"] = F.normalize(out["momentum_z"], dim=-1)
        return out

    def centroid(self, sequence: torch.Tensor) -> torch.Tensor:
        """The transformer's first output token for a ``B x K x D`` sequence plus the position encoding."""
        return self.transformer(sequence + self.position_encoding.to(sequence.dtype))[:, 0]

    @staticmethod
    def shift(prediction: torch.Tensor, sequence: torch.Tensor) -> torch.Tensor:
        """``[prediction, nn_1, .., nn_{K-1}]``: the prediction enters first, the farthest neighbour leaves."""
        return torch.cat([prediction.unsqueeze(1), sequence[:, :-1]], dim=1)

    @torch.no_grad()
    def enqueue(self, z: torch.Tensor, targets: torch.Tensor) -> None:
        """Push the (already unit-norm) momentum projections and their labels of every process."""
        self.queue.push(F.normalize(self.gather(z.detach()), dim=-1), labels=self.gather(targets))

    # --------------------------------------------------------------- training
    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        out = super().training_step(batch, batch_idx)
        _, _, targets = self._unpack_train_batch(batch)
        z = [self.projector(f) for f in out["feats"]]
        p = [self.predictor(zv) for zv in z]
        q = [self.centroid_predictor(zv) for zv in z]
        mz = out["momentum_z"]

        support_labels = self.queue.row_labels().clone()
        looked_up = [self.queue.nearest(m, k=self.num_neighbours) for m in mz]  # before this step's push
        neighbours = [seq for seq, _ in looked_up]
        centroids = [self.centroid(seq) for seq in neighbours]
        shifted = [self.centroid(self.shift(qv, seq)) for qv, seq in zip(q, neighbours)]

        n = z[0].shape[0]
        offset = self.global_rank * n if self.world_size() > 1 else 0
        terms = all4one_loss_func(
            neighbours=[seq[:, 0] for seq in neighbours],
            predictions=[self.gather(pv) for pv in p],
            centroids=centroids,
            shifted_centroids=[self.gather(s) for s in shifted],
            # the feature term's column norms and correlations are batch statistics: of the global batch (gathered,
            # the projections with gradients). The reference's per-rank term was measured off on 2 gloo ranks of 8:
            # 0.5335 / 0.5267 for 0.5271 on the whole batch, gradients off by up to 0.38
            # (tests/distributed/test_loss_equivalence.py)
            targets=[self.gather(m) for m in mz],
            projections=[self.gather(zv) for zv in z],
            temperature=self.temperature,
            centroid_temperature=self.centroid_temperature,
            neighbour_weight=self.neighbour_weight,
            centroid_weight=self.centroid_weight,
            feature_weight=self.feature_weight,
            offset=offset,
        )

        # gathered first: every rank computes the same value and agrees on whether to log it (a rank that skipped
        # a synced log while another entered it would wait forever under DDP)
        first = looked_up[0][1][:, 0]
        labelled = self.gather((targets >= 0).float())
        hits = self.gather((support_labels[first] == targets).float()) * labelled
        if bool(labelled.sum() > 0):
            self._log("train_nn_acc", 100.0 * hits.sum() / labelled.sum(), sync_dist=False)  # % like the probes
        self.enqueue(mz[0], targets)

        self._log("train_all4one_loss", terms.loss)
        self._log("train_all4one_neighbour_loss", terms.neighbour)
        self._log("train_all4one_centroid_loss", terms.centroid)
        self._log("train_all4one_feature_loss", terms.feature)
        out.update(
            {
                "loss": out["loss"] + terms.loss,
                "z": z,
                "p": p,
                "q": q,
                "neighbours": neighbours,
                "centroids": centroids,
                "shifted_centroids": shifted,
            }
        )
        return out
