"""Replay memories: FIFO, FIFO-last, reservoir, MinRed (``--buffer_type``, ``--mem_size``).

``build_buffer(kind, mem_size, seed)`` returns a :class:`ReplayBuffer`; see
:mod:`cassle.buffers.base` for the storage contract.
"""

from __future__ import annotations

from cassle.buffers.base import FIFOBuffer, FIFOLastBuffer, ReplayBuffer, ReservoirBuffer
from cassle.buffers.minred import MinRedBuffer, minred_keep

BUFFERS: dict[str, type[ReplayBuffer]] = {
    "fifo": FIFOBuffer,
    "fifo_last": FIFOLastBuffer,
    "reservoir": ReservoirBuffer,
    "minred": MinRedBuffer,
}


def build_buffer(kind: str, mem_size: int, seed: int = 0) -> ReplayBuffer:
    """The buffer registered as ``kind``; unknown names list the valid ones."""
    if kind not in BUFFERS:
        raise ValueError(f"unknown --buffer_type '{kind}'; choose one of: {', '.join(sorted(BUFFERS))}")
    return BUFFERS[kind](mem_size, seed)


__all__ = [
    "BUFFERS",
    "FIFOBuffer",
    "FIFOLastBuffer",
    "MinRedBuffer",
    "ReplayBuffer",
    "ReservoirBuffer",
    "build_buffer",
    "minred_keep",
]
