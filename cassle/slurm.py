"""The SLURM job file ``job_launcher.py --mode slurm`` writes (an array of continuations that resume the run)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from cassle.errors import LauncherError


@dataclass
class SlurmOptions:
    job_name: str
    num_gpus: int = 1
    cpus_per_task: int = 5
    hours: int = 20
    partition: str | None = None
    account: str | None = None
    constraint: str | None = None
    mem: str | None = None
    requeue: int = 0


def render_sbatch(opts: SlurmOptions, exp_dir: Path, command_path: Path) -> str:
    """The ``job.sbatch`` text. With ``requeue R > 0`` the job is an array ``0-R%1``:
    R continuations that run one after the other, each resuming from ``--checkpoint_dir``."""
    if opts.num_gpus < 0 or opts.cpus_per_task < 1 or opts.hours < 1 or opts.requeue < 0:
        raise LauncherError("need --num_gpus >= 0, --cpus_per_task >= 1, --hours >= 1, --requeue >= 0")
    log = "slurm-%A_%a" if opts.requeue > 0 else "slurm-%j"
    job_name = re.sub(r"[^A-Za-z0-9_.+-]", "_", opts.job_name) or "cassle"
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --output={exp_dir}/{log}.out",
        f"#SBATCH --error={exp_dir}/{log}.err",
        "#SBATCH --open-mode=append",
        "#SBATCH --nodes=1",
        f"#SBATCH --ntasks-per-node={max(opts.num_gpus, 1)}",
    ]
    if opts.num_gpus > 0:
        lines.append(f"#SBATCH --gres=gpu:{opts.num_gpus}")
    lines.append(f"#SBATCH --cpus-per-task={opts.cpus_per_task}")
    lines.append(f"#SBATCH --time={opts.hours:02d}:00:00")
    for key in ("partition", "account", "constraint", "mem"):
        value = getattr(opts, key)
        if value:
            lines.append(f"#SBATCH --{key}={value}")
    if opts.requeue > 0:
        lines.append(f"#SBATCH --array=0-{opts.requeue}%1")
    lines += [
        "",
        "# one task per GPU: Lightning reads the SLURM environment set up by srun",
        "export PYTHONUNBUFFERED=1",
        'echo "job ${SLURM_JOB_ID} (array task ${SLURM_ARRAY_TASK_ID:-none}) on $(hostname) at $(date)"',
        f"srun --kill-on-bad-exit=1 bash {shlex.quote(str(command_path))}",
        "",
    ]
    return "\n".join(lines)
