"""Devices and accelerators as the command lines name them (one parser for main_continual and main_linear)."""

from __future__ import annotations

import os
import re

from cassle.errors import ArgumentError, RunError


def parse_devices(value):
    """``--devices``: ``"2"`` → 2, ``"0,1"`` → ``[0, 1]``, ``"auto"`` stays; an int or list passes through."""
    if not isinstance(value, str):
        return value
    dev = value.strip()
    if re.fullmatch(r"\d+", dev):
        return int(dev)
    if re.fullmatch(r"\d+(,\d*)*", dev):
        return [int(d) for d in dev.split(",") if d != ""]
    if dev == "auto":
        return dev
    raise ArgumentError(f"--devices '{dev}' is not a number, a comma list of ids, or 'auto'")


def resolve_accelerator(accelerator: str) -> str:
    """``--accelerator`` as Lightning takes it: ``cuda`` → ``gpu``; ``auto`` → ``gpu`` when one is visible, else ``cpu``."""
    if accelerator in ("gpu", "cuda"):
        return "gpu"
    if accelerator == "auto":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    return accelerator


#: the launch environment's rank variables: the global rank (``torchrun``, Kubeflow: ``RANK``; ``srun``:
#: ``SLURM_PROCID``), the node's rank (a launch by hand or Lightning's own launcher: ``NODE_RANK``, torchrun:
#: ``GROUP_RANK``) and the process' rank on its node (``LOCAL_RANK``)
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "NODE_RANK", "GROUP_RANK", "LOCAL_RANK")


def _env_rank(name: str) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() else 0


def is_global_zero_process() -> bool:
    """Whether this process is the global rank 0 of a (possibly multi-process, multi-node) run, from the launch
    environment; usable before a trainer exists.

    Lightning's global rank is ``SLURM_PROCID`` under SLURM, ``RANK`` under torchrun, and otherwise ``NODE_RANK x
    devices + LOCAL_RANK``: the processes Lightning starts for the other devices of a node run the same script with
    ``LOCAL_RANK`` set, and a multi-node run started by hand (``main_continual.py --num_nodes N`` once per node) has
    ``NODE_RANK`` 1.. on the other nodes and no ``LOCAL_RANK`` in their first process. So a process is rank 0 only
    when every one of :data:`RANK_VARIABLES` that is set is 0 (a plain process is rank 0). ``LOCAL_RANK`` alone
    would make the first process of every node "rank 0": each would take the run lock and write the run's files."""
    return all(_env_rank(name) == 0 for name in RANK_VARIABLES)


def align_rank_zero_only() -> None:
    """Make Lightning's rank-zero-only helpers agree with :func:`is_global_zero_process` before a process group
    exists. Lightning guesses the rank from ``RANK`` / ``LOCAL_RANK`` / ``SLURM_PROCID`` and so takes the first
    process of a node started by hand (``NODE_RANK`` 1..) for rank 0: its loggers then created their log dirs,
    and could delete rank 0's files, in the shared run directory. Such a process gets a non-zero rank here;
    Lightning's strategy sets the true global rank when the fit sets up."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    if not is_global_zero_process() and getattr(rank_zero_only, "rank", 0) == 0:
        rank_zero_only.rank = max(_env_rank(name) for name in RANK_VARIABLES)


def _cluster_launched() -> bool:
    """Whether a cluster launcher that Lightning's trainer detects (``torchrun``, SLURM's ``srun``, LSF, MPI: the
    environments it tries before its default one) started this process: it then tells Lightning every rank."""
    from lightning.fabric.plugins.environments import (
        LSFEnvironment,
        MPIEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    return any(env.detect() for env in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment))


def check_node_launch(num_nodes: int) -> None:
    """Refuse a multi-node launch that would wait forever for its other nodes (one :class:`RunError`).

    Without a cluster launcher, Lightning's default environment takes each node's rank from ``NODE_RANK`` (else
    0) and the rendezvous from ``MASTER_ADDR`` (else ``127.0.0.1``) and ``MASTER_PORT`` (else a random free port):
    with one of them missing, every node believes it is node 0, or each listens on its own port, and the ranks
    wait for each other until the process group's 30-minute timeout. Measured here before this check: a lone
    ``--num_nodes 2 --devices 1`` process without ``NODE_RANK`` printed ``Initializing distributed: GLOBAL_RANK:
    0, MEMBER: 1/2`` and waited (killed after 150 s) with the run lock held. Checked before anything is written.
    """
    if num_nodes <= 1 or _cluster_launched():
        return
    missing = [v for v in ("NODE_RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v, "").strip()]
    if "NODE_RANK" in missing and os.environ.get("GROUP_RANK", "").strip():
        missing.remove("NODE_RANK")  # Lightning reads torchrun's name for it too
    how = (
        f"start main_continual.py once on each of the {num_nodes} nodes, with the same arguments and NODE_RANK=0 .. "
        f"{num_nodes - 1} (0 on the main node), MASTER_ADDR=<the main node's address> and MASTER_PORT=<a free port "
        "there> set on every node; or launch with SLURM (job_launcher.py --mode slurm) or torchrun"
    )
    if missing:
        raise RunError(f"--num_nodes {num_nodes} without SLURM or torchrun needs {', '.join(missing)} set: {how}")
    node = os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "")).strip()
    if not node.isdigit() or int(node) >= num_nodes:
        raise RunError(f"NODE_RANK={node} is not one of 0 .. {num_nodes - 1} (--num_nodes {num_nodes}): {how}")
    port = os.environ["MASTER_PORT"].strip()
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise RunError(f"MASTER_PORT={port} is not a port number: {how}")
