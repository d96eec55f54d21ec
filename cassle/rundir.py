"""What a run directory is: which of its files the launcher owns, and which arguments identify the run.

Shared by :mod:`cassle.continual` (refusing a directory that holds another
run, resuming one that holds this run), :mod:`cassle.launcher` (the files it
writes before the run starts) and :mod:`cassle.sweep` (a run's status).
"""

from __future__ import annotations

import re
from typing import Any

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
    return name in LAUNCHER_FILES or bool(_LAUNCHER_FILE_RE.match(name))


def run_identity(cfg: dict[str, Any]) -> dict[str, Any]:
    """The arguments that make a run this run (``args.json`` minus :data:`RESUMABLE_CHANGES`)."""
    return {k: v for k, v in cfg.items() if k not in RESUMABLE_CHANGES}
