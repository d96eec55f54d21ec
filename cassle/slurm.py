"""The SLURM job file ``job_launcher.py --mode slurm`` writes (an array of continuations that resume the run).

The layout is the one Lightning's ``SLURMEnvironment`` expects: ``--nodes N``, ``--ntasks-per-node`` = the
processes per node (one per GPU, or the CPU run's ``--devices``), ``--gpus-per-node G``, and one ``srun`` that starts
every task; Lightning then reads ``SLURM_PROCID`` / ``SLURM_LOCALID`` / ``SLURM_NODEID`` / ``SLURM_NTASKS`` and checks
them against the command's ``--devices`` and ``--num_nodes``. Options the launcher has no flag for (``--qos``,
``--signal``, ``--exclusive``, ...) are passed through as written (:func:`sbatch_option`), and setup lines
(``module load ...``, ``conda activate ...``) run in the job before ``srun``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from cassle.errors import LauncherError

#: sbatch options the job file sets from a launcher flag: passing them with --sbatch would contradict it
OWN_OPTIONS = {
    "job-name": "--experiment_name / the script's --name",
    "output": "the experiment directory (logs go there)",
    "error": "the experiment directory (logs go there)",
    "open-mode": "the experiment directory (logs are appended)",
    "nodes": "--num_nodes",
    "ntasks": "--num_gpus / --num_nodes (tasks = nodes x tasks per node)",
    "ntasks-per-node": "--num_gpus (or, on the CPU, the command's --devices)",
    "gpus-per-node": "--num_gpus",
    "gpus": "--num_gpus",
    "gres": "--num_gpus",
    "cpus-per-task": "--cpus_per_task",
    "time": "--hours",
    "partition": "--partition",
    "account": "--account",
    "constraint": "--constraint",
    "mem": "--mem",
    "array": "--requeue",
}
_SHORT = {"J": "job-name", "o": "output", "e": "error", "N": "nodes", "n": "ntasks", "G": "gpus", "c": "cpus-per-task",
          "t": "time", "p": "partition", "A": "account", "C": "constraint", "a": "array"}  # fmt: skip


def sbatch_option(text: str) -> str:
    """One ``--sbatch`` value as the option it puts in the job file: ``qos=high`` and ``--qos=high`` give
    ``--qos=high``, ``exclusive`` gives ``--exclusive``, ``-q high`` stays. Refuses an option the launcher sets
    from one of its own flags (one line naming that flag), and text that is not one option."""
    opt = text.strip()
    if not opt or "\n" in opt or "\r" in opt:
        raise LauncherError(
            f"--sbatch {text!r} is not an sbatch option: pass one option per --sbatch, e.g. --sbatch qos=high"
        )
    if not opt.startswith("-"):
        opt = "--" + opt
    m = re.fullmatch(r"--([A-Za-z][A-Za-z0-9-]*)(?:[= ](.*))?", opt) or re.fullmatch(r"-([A-Za-z])(?:[= ]?(.*))?", opt)
    if m is None:
        raise LauncherError(
            f"--sbatch {text!r} is not an sbatch option (expected e.g. qos=high, --signal=USR1@300, exclusive)"
        )
    name = m.group(1) if opt.startswith("--") else _SHORT.get(m.group(1), m.group(1))
    if name in OWN_OPTIONS:
        raise LauncherError(f"--sbatch {text!r}: the launcher sets --{name} itself; use {OWN_OPTIONS[name]} instead")
    return opt


def setup_line(text: str) -> str:
    """One ``--setup`` value: a line of shell run in the job before ``srun`` (``module load cuda/12.1``)."""
    line = text.strip()
    if not line or "\n" in line or "\r" in line:
        raise LauncherError(
            f"--setup {text!r} must be one line of shell (e.g. --setup 'module load cuda/12.1'); repeat --setup for more"
        )
    return line


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
    num_nodes: int = 1
    #: processes per node; default: one per GPU (at least one)
    tasks_per_node: int | None = None
    #: more sbatch options, as :func:`sbatch_option` normalises them
    extra: list[str] = field(default_factory=list)
    #: shell lines run in the job before ``srun``
    setup: list[str] = field(default_factory=list)

    def check(self) -> None:
        """Every value in range, or one :class:`LauncherError` naming the flag."""
        for flag, value, low in (
            ("--num_gpus", self.num_gpus, 0), ("--cpus_per_task", self.cpus_per_task, 1), ("--hours", self.hours, 1),
            ("--requeue", self.requeue, 0), ("--num_nodes", self.num_nodes, 1),
        ):  # fmt: skip
            if value < low:
                raise LauncherError(f"{flag} must be at least {low}, got {value}")
        if self.tasks_per_node is not None and self.tasks_per_node < 1:
            raise LauncherError(f"the job needs at least one task per node, got {self.tasks_per_node}")
        if self.num_gpus > 0 and self.tasks_per_node not in (None, self.num_gpus):
            raise LauncherError(
                f"--num_gpus {self.num_gpus} runs one task per GPU, not {self.tasks_per_node}: Lightning needs "
                "--ntasks-per-node = --devices"
            )

    @property
    def ntasks_per_node(self) -> int:
        return self.tasks_per_node or max(self.num_gpus, 1)


def render_sbatch(opts: SlurmOptions, exp_dir: Path, command_path: Path) -> str:
    """The ``job.sbatch`` text. With ``requeue R > 0`` the job is an array ``0-R%1``:
    R continuations that run one after the other, each resuming from ``--checkpoint_dir``."""
    opts.check()
    log = "slurm-%A_%a" if opts.requeue > 0 else "slurm-%j"
    job_name = re.sub(r"[^A-Za-z0-9_.+-]", "_", opts.job_name) or "cassle"
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --output={exp_dir}/{log}.out",
        f"#SBATCH --error={exp_dir}/{log}.err",
        "#SBATCH --open-mode=append",
        f"#SBATCH --nodes={opts.num_nodes}",
        f"#SBATCH --ntasks-per-node={opts.ntasks_per_node}",
    ]
    if opts.num_gpus > 0:
        lines.append(f"#SBATCH --gpus-per-node={opts.num_gpus}")
    lines.append(f"#SBATCH --cpus-per-task={opts.cpus_per_task}")
    lines.append(f"#SBATCH --time={opts.hours:02d}:00:00")
    for key in ("partition", "account", "constraint", "mem"):
        value = getattr(opts, key)
        if value:
            lines.append(f"#SBATCH --{key}={value}")
    if opts.requeue > 0:
        lines.append(f"#SBATCH --array=0-{opts.requeue}%1")
    # a stopped run (SIGUSR1 before the time limit, SIGTERM) requeues itself with scontrol (cassle/preempt.py)
    lines.append("#SBATCH --requeue")
    lines += [f"#SBATCH {o}" for o in opts.extra]
    if opts.setup:
        lines += ["", "# setup (job_launcher.py --setup)", *opts.setup]
    lines += [
        "",
        "# one task per GPU (or per CPU process): Lightning reads the SLURM environment srun sets up",
        "export PYTHONUNBUFFERED=1",
        "export SRUN_CPUS_PER_TASK=${SLURM_CPUS_PER_TASK}  # srun no longer inherits --cpus-per-task (SLURM 22.05)",
        'echo "job ${SLURM_JOB_ID} (array task ${SLURM_ARRAY_TASK_ID:-none}, restart ${SLURM_RESTART_COUNT:-0}) '
        'on $(hostname) at $(date)"',
        f"srun --kill-on-bad-exit=1 bash {shlex.quote(str(command_path))}",
        "",
    ]
    return "\n".join(lines)
