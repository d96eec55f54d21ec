"""DeepCluster V2 — Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", NeurIPS 2020 (https://arxiv.org/abs/2006.09882), the DeepCluster V2 variant of its appendix and
official repository (``main_deepclusterv2.py``).

Mechanism (per fit, i.e. per continual task):

* a **memory bank** keeps the l2-normalised projection of every view of every training sample seen in the
  current epoch, with the sample's index (``batch[0]``);
* at the start of every epoch after the first, **spherical k-means**
  (:func:`~cassle.losses.deepclusterv2.spherical_kmeans`, ``--kmeans_iters`` rounds) clusters the bank once per
  prototype head (head ``h`` clusters view ``h mod 2``'s projections); each sample's cluster is its
  **pseudo-label** for that head and the head's weights are **set to the centroids**;
* during the epoch, each view's prototype scores (``head(z / ||z||)``) are trained with the cross-entropy at
  temperature ``--temperature`` against the sample's pseudo-labels
  (:func:`~cassle.losses.deepclusterv2.deepclusterv2_loss_func`); the prototypes themselves get no gradient.

Defaults: solo-learn ``scripts/pretrain/cifar/deepclusterv2.yaml`` and the CaSSLe repository's
``cassle/methods/deepclusterv2.py`` agree: projector 2048 -> 128 (``Linear-BN-ReLU-Linear``, :func:`mlp2`),
three heads of 3000 prototypes, temperature 0.1, 10 k-means iterations (the latter two are the defaults of both
method files).

**Memory bank.** The indexes of a batch are positions in the *whole* training dataset
(:class:`cassle.data.subsets.AugmentedSubset`), not in the current task's subset, so the bank is not indexed by
them directly: like the reference, each process keeps a bank of ``num_training_batches x batch_size`` rows (its
shard of the epoch), filled in order, and the sample index of every row. After clustering, the ``(index,
label)`` pairs of every process are gathered and sorted, and a batch finds its pseudo-labels by binary search
(``torch.searchsorted``). Rows of a replay strategy's buffer from older tasks find none and are ignored by the
loss; under a replay strategy only the stream rows of a batch (``replay_ctx["num_stream"]``) enter the bank (all
rows when the batch has no stream rows: MinRed). The bank restarts at each epoch (after clustering) and at each
fit; it is cleared at the end of a fit, so task checkpoints do not carry it.

**Distributed.** Each rank clusters its own shard; the centroids start from rows of rank 0's shard (drawn with a
generator seeded from the global RNG, which the task loop reseeds from ``(seed, task, epoch, rank)`` before every
epoch), and the per-cluster sums and counts are all-reduced, as in the reference. The bank buffers are excluded
from DDP's per-step buffer broadcast (``_ddp_params_and_buffers_to_ignore``): each rank's shard is its own.
The loss is a mean over the labelled rows of the global batch (:meth:`DeepClusterV2.pseudo_label_loss`: the
counts are gathered), not a mean of the ranks' means, which differ when the ranks hold unequal numbers of rows
without a pseudo-label.

**Checkpoints.** Bank and labels are buffers (``bank_z``, ``bank_index``, ``bank_ptr``, ``label_index``,
``labels``); they are sized at ``on_train_start`` (kept when a mid-task checkpoint of the same size was
restored), and ``load_state_dict`` first resizes them to the checkpoint's shapes, so a resumed epoch clusters
the same bank.

**CaSSLe family: knowledge.** DeepCluster V2 learns by predicting, from the projection, a distribution over
prototypes, as SwAV does (only its targets come from k-means instead of Sinkhorn); the knowledge distiller
transfers exactly that: the frozen past network's prototype distribution, predicted from the current
projection. ``prototypes`` is therefore the first prototype head (an ``nn.Linear(output_dim, num_prototypes,
bias=False)`` over the l2-normalised ``z``): after a task it holds that task's last k-means centroids, so the
teacher's prototypes are the past network's own clusters. The reference normalises ``z`` before CaSSLe's
predictor (``normalized_projection``).

Deviations from the reference:

* the prototype counts are one scalar ``--num_prototypes`` (per head) and ``--num_prototype_heads`` instead of a
  list (``[3000, 3000, 3000]``): the command-line arguments of a method are scalars here;
* in the first epoch (no clustering yet) the loss is 0 with a zero gradient; the reference's
  ``cross_entropy(..., ignore_index=-1)`` over only-ignored targets gives NaN (also with a zero gradient), which
  would stop our runs at the finite-loss check;
* unfilled bank rows are skipped (the reference starts its bank with random vectors, clustered with the real
  ones), and rank 0 may hold fewer rows than prototypes (a warning; the extra centroids start random) where the
  reference asserts;
* as in solo-learn / CaSSLe (not the official repository, which fills the bank with a pass before training),
  the first epoch trains no SSL loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from cassle.config import ModelConfig
from cassle.losses.deepclusterv2 import deepclusterv2_loss_func, spherical_kmeans
from cassle.methods.base import METHODS, ArgSpec, BaseMethod
from cassle.methods.heads import mlp2

#: buffers whose size depends on the fit (resized at ``on_train_start`` and to a loaded checkpoint's shapes)
BANK_BUFFERS = ("bank_z", "bank_index", "bank_ptr", "label_index", "labels")


def _resize_bank_buffers(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load-state pre-hook: give the bank buffers the shapes of the checkpoint's (a mid-task resume)."""
    for name in BANK_BUFFERS:
        saved = state_dict.get(prefix + name)
        current = getattr(module, name)
        if isinstance(saved, torch.Tensor) and saved.shape != current.shape:
            setattr(module, name, torch.empty(saved.shape, dtype=current.dtype, device=current.device))


@METHODS.register("deepclusterv2")
class DeepClusterV2(BaseMethod):
    """DeepCluster V2: k-means pseudo-labels on a memory bank, predicted by frozen centroid prototypes.

    ``prototype_heads`` (``num_prototype_heads`` bias-free linears, no gradient) score the l2-normalised
    projections; ``prototypes`` is the first head. ``training_step`` returns ``logits`` (the first head's
    scores, one per view).
    """

    family: ClassVar[str] = "knowledge"
    normalized_projection: ClassVar[bool] = True  # the reference's z is F.normalize(projector(feats))
    default_proj_hidden_dim: ClassVar[int] = 2048
    default_output_dim: ClassVar[int] = 128
    method_args: ClassVar[dict[str, ArgSpec]] = {
        "temperature": (float, 0.1, "softmax temperature of the pseudo-label cross-entropy"),
        "num_prototypes": (int, 3000, "prototypes (k-means clusters) of each prototype head"),
        "num_prototype_heads": (int, 3, "prototype heads, each clustered on its own (the reference's list length)"),
        "kmeans_iters": (int, 10, "k-means centroid updates at the start of every epoch"),
    }

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        self._check_values(self.temperature, self.num_prototypes, self.num_prototype_heads, self.kmeans_iters)
        self.prototype_heads = nn.ModuleList(
            nn.Linear(self.output_dim, self.num_prototypes, bias=False) for _ in range(self.num_prototype_heads)
        )
        with torch.no_grad():
            for head in self.prototype_heads:
                head.requires_grad_(False)  # set to the k-means centroids, never trained
                head.weight.copy_(F.normalize(head.weight, dim=1))
        v, d = self.num_views, self.output_dim
        self.register_buffer("bank_z", torch.zeros(v, 0, d))
        self.register_buffer("bank_index", torch.zeros(0, dtype=torch.long))
        self.register_buffer("bank_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("label_index", torch.zeros(0, dtype=torch.long))
        self.register_buffer("labels", torch.zeros(self.num_prototype_heads, 0, dtype=torch.long))
        self.register_load_state_dict_pre_hook(_resize_bank_buffers)
        # each rank's bank is its own shard (and the labels are equal on every rank): no DDP buffer broadcast
        self._ddp_params_and_buffers_to_ignore = list(BANK_BUFFERS)

    @staticmethod
    def _check_values(temperature: float, num_prototypes: int, heads: int, iters: int) -> None:
        if temperature <= 0:
            raise ValueError(f"--temperature must be > 0 for deepclusterv2, got {temperature}")
        if num_prototypes < 1 or heads < 1:
            raise ValueError(
                f"--num_prototypes and --num_prototype_heads must be >= 1, got {num_prototypes} and {heads}"
            )
        if iters < 0:
            raise ValueError(f"--kmeans_iters must be >= 0, got {iters}")

    @classmethod
    def check_cfg(cls, model: ModelConfig, hp: Any) -> None:
        super().check_cfg(model, hp)
        cls._check_values(hp.temperature, hp.num_prototypes, hp.num_prototype_heads, hp.kmeans_iters)

    def build_projector(self) -> nn.Module:
        return mlp2(self.num_features, self.proj_hidden_dim, self.output_dim)

    @property
    def prototypes(self) -> nn.Linear:
        """The first prototype head: what CaSSLe's knowledge distiller copies into its teacher."""
        return self.prototype_heads[0]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().forward(x)
        out["logits"] = self.prototypes(F.normalize(out["z"], dim=1))
        return out

    # ------------------------------------------------------------------ memory bank
    @torch.no_grad()
    def reset_bank(self, capacity: int) -> None:
        """An empty bank of ``capacity`` rows per view, and no pseudo-labels."""
        dev = self.bank_z.device
        self.bank_z = torch.zeros(self.num_views, capacity, self.output_dim, device=dev)
        self.bank_index = torch.full((capacity,), -1, dtype=torch.long, device=dev)
        self.bank_ptr = torch.zeros((), dtype=torch.long, device=dev)
        self.label_index = torch.zeros(0, dtype=torch.long, device=dev)
        self.labels = torch.zeros(self.num_prototype_heads, 0, dtype=torch.long, device=dev)

    def _bank_capacity(self) -> int:
        """Rows of this process's epoch: ``num_training_batches x batch_size`` (the reference's size)."""
        batches = self.trainer.num_training_batches
        if batches == float("inf"):
            raise ValueError("deepclusterv2 needs a training loader with a length (its memory bank holds an epoch)")
        return int(batches) * self.batch_size

    def on_train_start(self) -> None:
        """Size the bank for this fit; a mid-task resume keeps the restored bank of the same size."""
        super().on_train_start()
        capacity = self._bank_capacity()
        if not (self.trainer.global_step > 0 and self.bank_index.numel() == capacity):
            self.reset_bank(capacity)

    def on_train_end(self) -> None:
        """The bank is of no use after the fit (the next task restarts it): free it, keep it out of checkpoints."""
        super().on_train_end()
        self.reset_bank(0)

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self.current_epoch > 0 and bool((self.bank_index >= 0).any()):
            self.cluster_bank()

    @torch.no_grad()
    def update_bank(self, indexes: torch.Tensor, z_norm: Sequence[torch.Tensor]) -> None:
        """Write the newest rows (index and normalised projection of every view) after the last one written."""
        capacity = self.bank_index.numel()
        if capacity == 0:  # outside a fit (or before on_train_start): nothing to keep
            return
        n = int(indexes.shape[0])
        ctx = getattr(self, "replay_ctx", None)
        if ctx and ctx.get("num_stream"):
            n = int(ctx["num_stream"])  # replay: only the stream rows are this epoch's samples
        n = min(n, capacity)
        pos = (self.bank_ptr + torch.arange(n, device=self.bank_index.device)) % capacity
        self.bank_index[pos] = indexes[:n].to(self.bank_index.device, torch.long)
        for v, zn in enumerate(z_norm):
            self.bank_z[v, pos] = zn[:n].detach().to(self.bank_z.dtype)
        self.bank_ptr.copy_((self.bank_ptr + n) % capacity)

    @torch.no_grad()
    def cluster_bank(self) -> None:
        """k-means of the bank for every head: pseudo-labels for every banked sample, centroids as prototypes.

        Then the bank restarts, to be filled by the new epoch.
        """
        filled = self.bank_index >= 0
        seed = int(torch.randint(0, 2**62, (1,)))  # the global RNG, reseeded per (seed, task, epoch, rank)
        generator = torch.Generator().manual_seed(seed)
        local = torch.full(
            (self.num_prototype_heads, self.bank_index.numel()), -1, dtype=torch.long, device=self.bank_index.device
        )
        for h, head in enumerate(self.prototype_heads):
            rows = self.bank_z[h % self.num_views][filled]
            centroids, labels = spherical_kmeans(
                rows, self.num_prototypes, self.kmeans_iters, generator=generator, world_size=self.world_size()
            )
            head.weight.copy_(centroids.to(head.weight.dtype))
            local[h, filled] = labels
        index = self.gather(self.bank_index)  # every rank's (index, labels), same size on every rank
        labels = self.gather(local.T.contiguous()).T
        keep = index >= 0
        index, labels = index[keep], labels[:, keep]
        order = torch.argsort(index)
        self.label_index = index[order].contiguous()
        self.labels = labels[:, order].contiguous()
        self.bank_index.fill_(-1)
        self.bank_ptr.zero_()

    def pseudo_labels(self, indexes: torch.Tensor) -> torch.Tensor:
        """``H x B`` pseudo-labels of the samples ``indexes`` (``-1`` for a sample that was not clustered)."""
        idx = indexes.to(self.label_index.device, torch.long)
        out = torch.full((self.num_prototype_heads, idx.shape[0]), -1, dtype=torch.long, device=idx.device)
        if self.label_index.numel() == 0:
            return out
        pos = torch.searchsorted(self.label_index, idx).clamp_(max=self.label_index.numel() - 1)
        found = self.label_index[pos] == idx
        return torch.where(found.unsqueeze(0), self.labels[:, pos], out)

    # ------------------------------------------------------------------ training
    def pseudo_label_loss(self, scores: Sequence[Sequence[torch.Tensor]], labels: torch.Tensor) -> torch.Tensor:
        """:func:`deepclusterv2_loss_func` of this batch, as a mean over the labelled rows of the *global* batch.

        On one process that is the loss function itself. Under DDP each head's mean over this rank's labelled
        (view, sample) pairs is rescaled by ``world_size x local count / global count`` (the counts gathered),
        i.e. the rank's summed cross-entropy times ``world_size`` over every rank's labelled pairs, so DDP's
        average of the ranks' gradients is the gradient of the global batch's mean even when the ranks hold
        different numbers of samples without a pseudo-label (replayed rows of older tasks, samples the last
        epoch's bank missed). The reference's per-rank ``cross_entropy(..., ignore_index=-1)`` (a mean of local
        means) was measured off on 2 gloo ranks with 3 and 1 unlabelled rows of 8: the ranks logged 1.587 /
        1.484 (mean 1.536) for 1.527 on the whole batch, and the gradients were off by up to 4.5e-2
        (``tests/distributed/test_loss_equivalence.py``). The logged value is then this rank's share: its mean
        over the ranks is the global batch's loss.
        """
        if self.world_size() <= 1:
            return deepclusterv2_loss_func(scores, list(labels), temperature=self.temperature)
        local = (labels >= 0).sum(dim=1).float()  # H: labelled samples per head (every view counts alike)
        total = self.gather(local.unsqueeze(0)).sum(dim=0)  # every rank joins, labelled rows or not
        per_head = torch.stack(
            [
                deepclusterv2_loss_func([views], [head_labels], temperature=self.temperature)
                for views, head_labels in zip(scores, labels)
            ]
        )
        local, total = (c.to(per_head.device, per_head.dtype) for c in (local, total))  # (counts exact in float32)
        return (per_head * (self.world_size() * local / total.clamp(min=1.0))).mean()

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        indexes = batch[0]
        out = super().training_step(batch, batch_idx)
        z = [self.projector(f) for f in out["feats"]]
        z_norm = [F.normalize(zi, dim=1) for zi in z]
        scores = [[head(zn) for zn in z_norm] for head in self.prototype_heads]
        labels = self.pseudo_labels(indexes)
        loss = self.pseudo_label_loss(scores, labels)
        self.update_bank(indexes, z_norm)
        self._log("train_deepclusterv2_loss", loss)
        out.update({"loss": out["loss"] + loss, "z": z, "logits": scores[0]})
        return out
