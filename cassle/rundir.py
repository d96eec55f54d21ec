"""What a run directory is: which of its files the launcher owns, and which arguments identify the run.

Shared by :mod:`cassle.continual` (refusing a directory that holds another
run, resuming one that holds this run), :mod:`cassle.launcher` (the files it
writes before the run starts) and :mod:`cassle.sweep` (a run's status).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cassle.errors import RunError

#: the lock file a running process holds in its run directory
LOCK_FILE = ".run.lock"

#: files the launcher writes into an experiment dir before the run starts
LAUNCHER_FILES = ("command.sh", "job.sbatch", "slurm_jobs.txt")
_LAUNCHER_FILE_RE = re.compile(r"^(slurm-[0-9%A-Za-z_]+\.(out|err)|\.(command\.sh|job\.sbatch)\..*\.tmp)$")

#: arguments that may change between a run and its resumption
RESUMABLE_CHANGES = {
    "num_workers",
    "devices",
    "accelerator",
    "num_nodes",
    "no_progress_bar",
    "log_every_n_steps",
    "wandb",
    "project",
    "entity",
    "offline",
    "tensorboard",
    "eval_batch_size",
    "checkpoint_frequency",
    "save_checkpoint",
    "check_val_every_n_epoch",
    "data_dir",
    "probes",
    "no_baseline",
    "checkpoint_dir",
    "gpu_augment",
    "dali",  # input paths: same augmentations, another random stream (like num_workers)
}


def is_launcher_file(name: str) -> bool:
    """True for a file job_launcher.py puts in an experiment dir (command.sh, job.sbatch, SLURM logs):
    a run directory holding only these is still a fresh one for main_continual.py."""
    return name in LAUNCHER_FILES or name == LOCK_FILE or bool(_LAUNCHER_FILE_RE.match(name))


#: arguments that may change when a run resumes after its loss diverged (run_state.json records it): the
#: optimisation settings that tame a divergence; args.json is then rewritten with the new values
DIVERGENCE_FIXES = {
    "lr", "min_lr", "warmup_start_lr", "warmup_epochs", "scheduler", "optimizer", "lars", "eta_lars",
    "grad_clip_lars", "exclude_bias_n_norm", "weight_decay", "classifier_lr", "momentum", "precision",
}  # fmt: skip


def run_identity(cfg: dict[str, Any]) -> dict[str, Any]:
    """The arguments that make a run this run (``args.json`` minus :data:`RESUMABLE_CHANGES`)."""
    return {k: v for k, v in cfg.items() if k not in RESUMABLE_CHANGES}


def _json(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def changed_arguments(saved: dict[str, Any], now: dict[str, Any], model_cls: type | None = None) -> dict[str, tuple]:
    """``--flag -> (saved value, value now)`` for the run-identifying arguments of ``now`` (a parsed command line)
    that differ from ``saved`` (an ``args.json``). ``saved`` is read through the typed configuration first
    (:meth:`cassle.config.RunConfig.from_flat`), so an ``args.json`` written by an earlier version (an option it
    did not have yet, a key under its CaSSLe name, a scalar augmentation value) still matches the same command.
    Keys only ``saved`` has (values derived at start-up: ``num_classes``, ``num_views``) are not compared."""
    from cassle.config import RunConfig

    method_args = model_cls.all_method_args() if hasattr(model_cls, "all_method_args") else None
    strategy_args = model_cls.all_strategy_args() if hasattr(model_cls, "all_strategy_args") else None
    try:
        upgraded = RunConfig.from_flat(saved, method_args, strategy_args).to_flat()
    except ValueError:  # a value today's version refuses: compare the file as it is
        upgraded = dict(saved)
    old, new = _json(run_identity(upgraded)), _json(run_identity(now))
    return {k: (old.get(k), new[k]) for k in sorted(new) if new[k] != old.get(k)}


def clean_temp_files(run_dir: str | os.PathLike) -> list[Path]:
    """Remove the ``.<name>.<random>.tmp`` files an atomic write killed mid-way left in ``run_dir`` (and its
    ``resume/`` and ``results/``); call it only while holding :func:`run_lock`. Returns what was removed."""
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / "resume", Path(run_dir) / "results"):
        if folder.is_dir():
            for p in folder.glob(".*.tmp"):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


@contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive OS lock (``flock``) on ``run_dir`` for as long as the block runs.

    The lock dies with its process (a ``kill -9`` never leaves a stale lock behind); a second
    process on the same directory gets one :class:`RunError` naming the holder, at once.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fh = open(run_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise RunError(
            f"{run_dir} is in use by {holder}: one process per run directory. Wait for it to finish (or stop it); "
            "the same command then resumes the run"
        ) from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
