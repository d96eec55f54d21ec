"""MinRed buffer — Purushwalkam et al., "The Challenges of Continuous
Self-Supervised Learning", ECCV 2022 (https://arxiv.org/abs/2203.12710).

The buffer keeps the *least redundant* samples: once full, every insertion is
followed by removals, each dropping the stored sample whose nearest neighbour
(cosine similarity of the stored ``feats``) is the closest, until ``mem_size``
samples remain. A duplicate therefore goes first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cassle.buffers.base import ReplayBuffer


def minred_keep(feats: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices (sorted) of the ``keep`` rows of ``feats`` that MinRed retains.

    Repeatedly removes the row with the highest cosine similarity to its
    nearest remaining neighbour (ties: the lower index, i.e. the older sample).
    Only rows whose nearest neighbour was removed are re-scored.
    """
    n = feats.shape[0]
    if keep >= n:
        return torch.arange(n, device=feats.device)
    f = F.normalize(feats.float(), dim=1)
    sim = f @ f.t()
    sim.fill_diagonal_(float("-inf"))
    nn_sim, nn_idx = sim.max(dim=1)
    alive = torch.ones(n, dtype=torch.bool, device=feats.device)
    for _ in range(n - keep):
        r = int(torch.argmax(nn_sim))
        alive[r] = False
        nn_sim[r] = float("-inf")
        sim[:, r] = float("-inf")
        stale = alive & (nn_idx == r)
        if bool(stale.any()):
            s, i = sim[stale].max(dim=1)
            nn_sim[stale], nn_idx[stale] = s, i
    return torch.nonzero(alive).flatten()


class MinRedBuffer(ReplayBuffer):
    """Minimum-redundancy buffer (needs a ``feats`` field: one feature vector per sample)."""

    kind = "minred"
    needs_fields = ("feats",)

    def _add(self, n: int, fields: dict[str, torch.Tensor]) -> None:
        t = self.num_seen + torch.arange(n)
        free = self.mem_size - self.size
        fill = min(free, n)
        self._write(torch.arange(self.size, self.size + fill), torch.arange(fill), fields, t[:fill])
        self.size += fill
        if fill == n:
            return
        rows = torch.arange(fill, n)
        new = {k: v.to(self.device)[rows.to(self.device)] for k, v in fields.items()}
        pool = {k: torch.cat([self.data[k], new[k]]) for k in self.data}
        stamps = torch.cat([self.stamp, t[rows].to(self.device)])
        kept = minred_keep(pool["feats"], self.mem_size)
        self.data = {k: v[kept].contiguous() for k, v in pool.items()}
        self.stamp = stamps[kept].contiguous()
