"""Devices and accelerators as the command lines name them (one parser for main_continual and main_linear)."""

from __future__ import annotations

import os
import re

from cassle.errors import ArgumentError


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


def is_global_zero_process() -> bool:
    """Whether this process is the global rank 0 of a (possibly multi-process) run, from the launch environment
    (``RANK`` / ``SLURM_PROCID`` and ``LOCAL_RANK``; a plain process is rank 0). Usable before a trainer exists:
    the processes Lightning starts for the other devices run the same script with ``LOCAL_RANK`` set."""
    return (
        int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) or 0) == 0
        and int(os.environ.get("LOCAL_RANK", "0") or 0) == 0
    )
