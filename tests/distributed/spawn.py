"""Run a function in ``world_size`` CPU processes joined in one gloo process group (the multi-GPU DDP code path).

:func:`run_ranks` is what the distributed tests call: it spawns the processes with
:func:`torch.multiprocessing.spawn`, joins them in a ``gloo`` group through a file store in a fresh
temporary directory (no TCP port to pick, so no race for a "free" one between parallel test runs),
sets the environment a launcher such as ``torchrun`` sets (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``NODE_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), so that a ``lightning`` ``Trainer(strategy="ddp",
devices=world_size)`` built inside the function takes the processes as launched externally and reuses
the group, and returns what the function returned on every rank, in rank order.
"""

from __future__ import annotations

import faulthandler
import os
import socket
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

#: ``forkserver`` where the platform has it: the ranks are forked from a clean server process that imported torch,
#: lightning and cassle once (importing them afresh per rank takes tens of seconds on a loaded 2-core machine),
#: not from the test process. Forked from the test process itself, a rank inherits the locks that its other
#: threads (DALI's and the data loaders' workers of earlier tests, OpenMP's pool) held at that moment, and one
#: rank of a pair could hang in its first collective (CI, 2-core machine: the loss-equivalence pair timed out
#: after 120 s in the first broadcast of a fit, the other rank never reaching it). ``spawn`` elsewhere.
START_METHOD = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
#: what the fork server imports once, before it forks the first rank
PRELOAD = ["torch", "torch.distributed", "lightning.pytorch", "cassle.strategies", "cassle.data.datamodule"]
#: a collective that waits longer than this fails the test instead of hanging the suite
TIMEOUT_S = 120


def free_port() -> int:
    """A TCP port that was free a moment ago (for ``MASTER_PORT``, which Lightning reads but never binds here)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world_size: int, fn: Callable[..., Any], args: tuple, tmp: str, port: int) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world_size),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        NODE_RANK="0",
        PL_DISABLE_FORK="1",
    )
    torch.set_num_threads(1)
    # a rank still waiting after most of a collective's timeout prints where each of its threads is (again every
    # TIMEOUT_S): when a pair hangs, the test's output then shows what the other rank was doing
    faulthandler.dump_traceback_later(TIMEOUT_S - 20, repeat=True)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{tmp}/store",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=TIMEOUT_S),
    )
    try:
        result = fn(rank, world_size, *args)
        torch.save(result, Path(tmp) / f"rank{rank}.pt")
        dist.barrier()
    finally:
        faulthandler.cancel_dump_traceback_later()
        dist.destroy_process_group()


def run_ranks(fn: Callable[..., Any], *args: Any, world_size: int = 2) -> list[Any]:
    """``[fn(rank, world_size, *args) for rank in range(world_size)]``, each in its own process of one gloo group.

    ``fn`` must be importable (a module-level function) and its results ``torch.save``-able; an exception
    on any rank is re-raised here with that rank's traceback.
    """
    if START_METHOD == "forkserver":
        mp.get_context("forkserver").set_forkserver_preload(PRELOAD)  # read when the server starts (once)
    with tempfile.TemporaryDirectory(prefix="cassle-ddp-") as tmp:
        mp.start_processes(
            _worker,
            args=(world_size, fn, args, tmp, free_port()),
            nprocs=world_size,
            join=True,
            start_method=START_METHOD,
        )
        return [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=False) for r in range(world_size)]
