"""Replay memories of past stream samples, held as tensors on the training device.

A buffer stores, per slot, named per-sample fields with a common leading
dimension ``mem_size``: always ``images`` (raw ``uint8`` ``C×H×W`` images,
*before* augmentation, so a replayed sample gets fresh augmentations),
``targets`` and ``indexes`` (position in the training dataset), plus whatever
a strategy adds (``feats`` for MinRed's redundancy, ``reps`` for ARP's stored
representation). The first :meth:`ReplayBuffer.add` fixes the fields, their
shapes and the device.

All updates are vectorised (no per-sample Python loop); all random choices
come from the buffer's own ``torch.Generator`` (CPU, seeded from the run
seed), whose state is part of :meth:`ReplayBuffer.state_dict`, so the same
seed and stream give the same buffer contents and a resumed run continues the
same random sequence.
"""

from __future__ import annotations

from typing import Any

import torch

#: fields every ``add`` must provide
REQUIRED_FIELDS = ("images", "targets", "indexes")


class ReplayBuffer:
    """Common storage and sampling; subclasses choose which slots new samples take.

    Args:
        mem_size: number of slots (at least 1).
        seed: seed of the buffer's generator.
    """

    #: registry name
    kind: str = "base"
    #: fields that :meth:`add` needs besides :data:`REQUIRED_FIELDS`
    needs_fields: tuple[str, ...] = ()

    def __init__(self, mem_size: int, seed: int = 0) -> None:
        if int(mem_size) < 1:
            raise ValueError(f"a replay buffer needs --mem_size >= 1, got {mem_size}")
        self.mem_size = int(mem_size)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.data: dict[str, torch.Tensor] = {}
        #: filled slots (always the first ``size`` ones)
        self.size = 0
        #: stream samples offered to the buffer so far
        self.num_seen = 0
        #: insertion counter of each slot (larger = newer), -1 for empty slots
        self.stamp = torch.empty(0, dtype=torch.long)

    # ------------------------------------------------------------- basics
    def __len__(self) -> int:
        return self.size

    @property
    def device(self) -> torch.device:
        return self.stamp.device

    def reseed(self, seed: int) -> None:
        """Restart the generator from ``seed`` (e.g. ``run seed + rank`` under DDP)."""
        self.seed = int(seed)
        self.generator.manual_seed(self.seed)

    def to(self, device: torch.device | str) -> ReplayBuffer:
        """Move the stored tensors to ``device`` (no-op when already there)."""
        device = torch.device(device)
        if self.stamp.device != device:
            self.data = {k: v.to(device) for k, v in self.data.items()}
            self.stamp = self.stamp.to(device)
        return self

    def _allocate(self, fields: dict[str, torch.Tensor]) -> None:
        missing = [f for f in REQUIRED_FIELDS + self.needs_fields if f not in fields]
        if missing:
            raise ValueError(f"{type(self).__name__}.add needs the fields {missing}")
        device = fields["images"].device
        self.data = {
            k: torch.zeros((self.mem_size, *v.shape[1:]), dtype=v.dtype, device=device) for k, v in fields.items()
        }
        self.stamp = torch.full((self.mem_size,), -1, dtype=torch.long, device=device)

    def _check(self, fields: dict[str, torch.Tensor]) -> int:
        if not self.data:
            self._allocate(fields)
        if set(fields) != set(self.data):
            raise ValueError(f"buffer fields are {sorted(self.data)}, got {sorted(fields)}")
        n = int(fields["images"].shape[0])
        for k, v in fields.items():
            if v.shape[0] != n or v.shape[1:] != self.data[k].shape[1:]:
                raise ValueError(
                    f"field '{k}' has shape {tuple(v.shape)}, the buffer stores {tuple(self.data[k].shape[1:])} per sample"
                )
        return n

    def _write(
        self, slots: torch.Tensor, rows: torch.Tensor, fields: dict[str, torch.Tensor], stamps: torch.Tensor
    ) -> None:
        """Write ``fields[k][rows]`` into ``slots`` (slots are distinct)."""
        if slots.numel() == 0:
            return
        slots, rows = slots.to(self.device), rows.to(self.device)
        for k, v in fields.items():
            self.data[k][slots] = v.to(self.device)[rows].to(self.data[k].dtype)
        self.stamp[slots] = stamps.to(self.device)

    # ----------------------------------------------------------- interface
    @torch.no_grad()
    def add(self, **fields: torch.Tensor) -> None:
        """Offer a batch of stream samples (each field ``n×...``); the buffer keeps what its policy keeps."""
        n = self._check(fields)
        if n == 0:
            return
        self.to(fields["images"].device)
        self._add(n, fields)
        self.num_seen += n

    def _add(self, n: int, fields: dict[str, torch.Tensor]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample_positions(self, n: int) -> torch.Tensor:
        """Slots of ``min(n, len(self))`` distinct stored samples, drawn uniformly (on the buffer's device)."""
        k = min(int(n), self.size)
        if k <= 0:
            return torch.empty(0, dtype=torch.long, device=self.device)
        pos = torch.randperm(self.size, generator=self.generator)[:k]
        return pos.to(self.device)

    def get(self, positions: torch.Tensor) -> dict[str, torch.Tensor]:
        """The stored fields at ``positions``."""
        positions = positions.to(self.device)
        return {k: v[positions] for k, v in self.data.items()}

    def sample(self, n: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(positions, fields)`` of ``min(n, len(self))`` samples chosen by the buffer's policy."""
        pos = self.sample_positions(n)
        return pos, self.get(pos)

    @torch.no_grad()
    def update(self, positions: torch.Tensor, field: str, values: torch.Tensor) -> None:
        """Overwrite ``field`` of the samples at ``positions`` (e.g. refreshed representations)."""
        if field not in self.data:
            raise KeyError(f"the buffer has no field '{field}' (fields: {sorted(self.data)})")
        self.data[field][positions.to(self.device)] = values.detach().to(self.device, self.data[field].dtype)

    # ------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Plain CPU tensors and numbers (safe for ``torch.load(weights_only=True)`` on any machine)."""
        return {
            "kind": self.kind,
            "mem_size": self.mem_size,
            "seed": self.seed,
            "size": self.size,
            "num_seen": self.num_seen,
            "generator": self.generator.get_state(),
            "stamp": self.stamp.cpu(),
            "data": {k: v.cpu() for k, v in self.data.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(
                f"checkpoint holds a '{state.get('kind')}' buffer, this run uses '{self.kind}' (--buffer_type)"
            )
        if int(state["mem_size"]) != self.mem_size:
            raise ValueError(f"checkpoint buffer has --mem_size {state['mem_size']}, this run {self.mem_size}")
        device = self.device
        self.seed = int(state["seed"])
        self.size = int(state["size"])
        self.num_seen = int(state["num_seen"])
        self.generator.set_state(state["generator"].cpu())
        self.stamp = state["stamp"].to(device)
        self.data = {k: v.to(device) for k, v in state["data"].items()}


class FIFOBuffer(ReplayBuffer):
    """Keeps the newest ``mem_size`` stream samples (a ring); replays a uniform sample of them."""

    kind = "fifo"

    def _add(self, n: int, fields: dict[str, torch.Tensor]) -> None:
        keep = min(n, self.mem_size)
        rows = torch.arange(n - keep, n)
        stamps = self.num_seen + rows
        slots = stamps % self.mem_size  # stream position t always lives in slot t mod M
        self._write(slots, rows, fields, stamps)
        self.size = min(self.mem_size, self.size + n)


class FIFOLastBuffer(FIFOBuffer):
    """FIFO storage that replays the *newest* stored samples instead of a uniform sample."""

    kind = "fifo_last"

    def sample_positions(self, n: int) -> torch.Tensor:
        k = min(int(n), self.size)
        return torch.argsort(self.stamp, descending=True)[:k]


class ReservoirBuffer(ReplayBuffer):
    """Algorithm R (Vitter, 1985): after ``N`` stream samples each is kept with probability ``mem_size / N``.

    Sample ``t`` (0-based) fills a free slot while there is one; afterwards it
    draws ``j`` uniform in ``[0, t]`` and replaces slot ``j`` when ``j <
    mem_size``. A batch is processed at once; when several samples of the
    batch draw the same slot, the latest wins, exactly as the sequential
    algorithm would.
    """

    kind = "reservoir"

    def _add(self, n: int, fields: dict[str, torch.Tensor]) -> None:
        t = self.num_seen + torch.arange(n)
        free = max(0, self.mem_size - self.size)
        fill = min(free, n)
        self._write(torch.arange(self.size, self.size + fill), torch.arange(fill), fields, t[:fill])
        self.size += fill
        if fill == n:
            return
        rest_t = t[fill:]
        j = (torch.rand(len(rest_t), generator=self.generator, dtype=torch.float64) * (rest_t + 1).double()).long()
        rows = torch.arange(fill, n)
        take = j < self.mem_size
        slots, rows = j[take], rows[take]
        if slots.numel() == 0:
            return
        # several rows on one slot: keep the last one
        order = torch.argsort(slots * n + rows)
        slots, rows = slots[order], rows[order]
        last = torch.ones_like(slots, dtype=torch.bool)
        last[:-1] = slots[1:] != slots[:-1]
        self._write(slots[last], rows[last], fields, t[rows[last]])
