"""Run a ``bash_files/*.sh`` experiment script locally or on SLURM.

A script in ``bash_files/`` holds one command, ``python3 main_continual.py
--flag value ...`` (or ``main_linear.py``), usually spread over several lines
with backslashes and reading ``$DATA_DIR`` / ``$PRETRAINED_PATH`` from the
environment. :func:`main` (the body of ``job_launcher.py``):

1. parses the script (:func:`parse_script`): comments stripped, continuations
   joined, variables expanded (an unset one is an error that names it), the
   python command found and its arguments read into an ordered mapping
   ``{flag: [values]}`` (:func:`parse_args_list`);
2. applies the command-line overrides (:func:`apply_overrides`): a flag given
   again replaces the script's values, a new flag is appended;
3. points ``--checkpoint_dir`` at a new experiment directory
   ``<base_experiment_dir>/<name>`` (:func:`make_experiment_dir`); naming an
   existing one with ``--experiment_name`` resumes it, since
   ``main_continual.py`` resumes from its ``--checkpoint_dir``;
4. writes the final command to ``<exp_dir>/command.sh`` and either runs it
   (``--mode normal``) or writes ``<exp_dir>/job.sbatch`` and submits it with
   ``sbatch`` (``--mode slurm``; :func:`render_sbatch`).

Everything that can be wrong is refused before the experiment directory is
made: the launcher's own options (an unknown one is an error: training
overrides go after ``--``), and in SLURM mode the training command itself,
validated here exactly as ``main_continual.py`` / ``main_linear.py`` would
(:func:`validate_command`), so a bad value is not found only after the queue
wait. ``--num_nodes N --num_gpus G`` give ``N`` nodes of ``G`` tasks (one per
GPU); on the CPU (``--num_gpus 0``) the command's ``--devices`` sets the tasks
per node. ``--sbatch OPTION`` adds any sbatch option (``--sbatch qos=high
--sbatch signal=USR1@300 --sbatch exclusive``) and ``--setup LINE`` a shell line
run before ``srun`` (``--setup 'module load cuda/12.1'``).

Example::

    DATA_DIR=~/datasets python job_launcher.py \\
        --script bash_files/continual/cifar/barlow_distill.sh \\
        --mode slurm --num_gpus 1 --hours 24 --requeue 2 -- --max_epochs 100
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from cassle.errors import CassleError, LauncherError  # noqa: F401  (re-exported)
from cassle.fileio import _umask, atomic_write_text
from cassle.launch_checks import check_options, validate_command  # noqa: F401  (re-exported)
from cassle.rundir import LAUNCHER_FILES, is_launcher_file  # noqa: F401  (re-exported)
from cassle.scripts import (  # noqa: F401  (re-exported)
    _ASSIGN_RE,
    _FLAG_RE,
    ENTRYPOINTS,
    REPO_ROOT,
    Args,
    ScriptCommand,
    apply_overrides,
    format_args,
    parse_args_list,
    parse_script,
)
from cassle.slurm import SlurmOptions, render_sbatch, sbatch_option, setup_line  # noqa: F401  (re-exported)

# --------------------------------------------------------------------------- experiment dir


def default_experiment_name(script: str | os.PathLike, now: _dt.datetime | None = None) -> str:
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    return f"{Path(script).stem}-{stamp}-{secrets.token_hex(3)}"


def make_experiment_dir(
    base: str | os.PathLike, name: str | None, script: str, create: bool = True
) -> tuple[Path, bool]:
    """Return ``(absolute experiment dir, resumed)``.

    Without ``name`` a fresh directory is always made (never an existing one).
    With ``name`` an existing directory is reused: that is how a run is resumed.
    """
    base = Path(base).expanduser().resolve()
    if name is not None:
        if not name or name in (".", "..") or "/" in name or os.sep in name:
            raise LauncherError(f"--experiment_name must be a plain directory name, got {name!r}")
        exp = base / name
        resumed = exp.is_dir()
        if create:
            exp.mkdir(parents=True, exist_ok=True)
        return exp, resumed
    for _ in range(100):
        exp = base / default_experiment_name(script)
        if not create:
            if not exp.exists():
                return exp, False
            continue
        base.mkdir(parents=True, exist_ok=True)
        try:
            exp.mkdir()
            return exp, False
        except FileExistsError:
            continue
    raise LauncherError(f"could not create a new experiment directory under {base}")


# --------------------------------------------------------------------------- rendering


def build_argv(python: str, entrypoint: str, args: Args) -> list[str]:
    return [python, entrypoint, *format_args(args)]


def render_command(argv: list[str], workdir: Path, env: dict, source: str) -> str:
    lines = [
        "#!/usr/bin/env bash",
        f"# written by job_launcher.py from {source} on {_dt.datetime.now().isoformat(timespec='seconds')}",
        "set -e",
        f"cd {shlex.quote(str(workdir))}",
    ]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    head, args = argv[:2], argv[2:]
    body = " ".join(shlex.quote(a) for a in head)
    # one flag per line, like the scripts in bash_files
    chunks, cur = [], []
    for a in args:
        if _FLAG_RE.match(a) and cur:
            chunks.append(cur)
            cur = []
        cur.append(a)
    if cur:
        chunks.append(cur)
    for c in chunks:
        body += " \\\n    " + " ".join(shlex.quote(a) for a in c)
    lines.append("exec " + body)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CLI


class _LauncherParser(argparse.ArgumentParser):
    """Raises :class:`LauncherError` (one line, printed by :func:`main`) instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise LauncherError(f"{message} (job_launcher.py --help lists its options)")


def build_parser() -> argparse.ArgumentParser:
    p = _LauncherParser(
        prog="job_launcher.py",
        allow_abbrev=False,
        description="Run a bash_files/*.sh script locally or submit it to SLURM. "
        "Arguments after `--` override the script's own, e.g. `-- --max_epochs 1`.",
    )
    p.add_argument("--script", required=True, help="bash file with one `python3 main_continual.py ...` command")
    p.add_argument("--mode", choices=("normal", "slurm"), default="normal")
    p.add_argument("--base_experiment_dir", default="./experiments")
    p.add_argument(
        "--experiment_name", default=None, help="directory name under --base_experiment_dir; an existing one is resumed"
    )
    p.add_argument(
        "--num_gpus",
        type=int,
        default=None,
        help="GPUs (= tasks) per node; default: the script's --devices on gpu, else 0 (CPU: the command's "
        "--devices sets the tasks per node)",
    )
    p.add_argument(
        "--num_nodes",
        type=int,
        default=None,
        help="SLURM nodes (the command's --num_nodes); default: the script's, or 1",
    )
    p.add_argument("--cpus_per_task", type=int, default=None, help="default: the script's --num_workers + 1")
    p.add_argument("--hours", type=int, default=20, help="the job's time limit in hours (at least 1)")
    p.add_argument("--partition", default=None)
    p.add_argument("--account", default=None)
    p.add_argument("--constraint", default=None)
    p.add_argument("--mem", default=None, help="e.g. 64G")
    p.add_argument("--requeue", type=int, default=0, help="R > 0: R continuations after the first job (array 0-R%%1)")
    p.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="OPTION",
        help="another sbatch option for the job file, repeatable: --sbatch qos=high --sbatch exclusive "
        "--sbatch signal=USR1@300 (a run stops at the next epoch end on SIGUSR1, saves and requeues itself)",
    )
    p.add_argument(
        "--setup",
        action="append",
        default=[],
        metavar="LINE",
        help="a shell line the job runs before srun, repeatable: --setup 'module load cuda/12.1' "
        "(with `conda activate`, pass --python python to use that environment's interpreter)",
    )
    p.add_argument("--python", default=sys.executable, help="interpreter (default: the one running the launcher)")
    p.add_argument("--entrypoint", default=None, help="replace the script's main_*.py (tests use a fake one)")
    p.add_argument("--workdir", default=str(REPO_ROOT), help="directory the command runs in (default: repo root)")
    p.add_argument("--dry_run", action="store_true", help="print the command (and job file) without creating anything")
    return p


def _int_or_none(values: list[str] | None) -> int | None:
    if values and len(values) == 1 and re.fullmatch(r"\d+", values[0]):
        return int(values[0])
    return None


def _default_num_gpus(args: Args) -> int:
    acc = (args.get("accelerator") or [""])[0].lower()
    if acc in ("gpu", "cuda"):
        return _int_or_none(args.get("devices")) or 1
    return 0


def set_devices(args: Args, num_gpus: int) -> Args:
    """``--num_gpus G > 0``: ``--accelerator gpu --devices G``. ``0``: the CPU, keeping a CPU command's own
    ``--devices N`` (N processes, gloo DDP) and otherwise one process."""
    args = dict(args)
    if num_gpus > 0:
        args["accelerator"] = ["gpu"]
        args["devices"] = [str(num_gpus)]
    else:
        on_cpu = (args.get("accelerator") or [""])[0].lower() == "cpu"
        args["accelerator"] = ["cpu"]
        args["devices"] = [str((_int_or_none(args.get("devices")) if on_cpu else None) or 1)]
    return args


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def run_forwarding_signals(argv: list[str], cwd: Path, env: dict) -> int:
    """Run ``argv`` with inherited stdout/stderr (streamed) and return its exit code.

    SIGTERM / SIGHUP sent to the launcher are passed on to the run (so killing the
    launcher never leaves an orphaned training process); Ctrl-C reaches both anyway.
    """
    proc = subprocess.Popen(argv, cwd=cwd, env=env)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
    try:
        while True:
            try:
                rc = proc.wait()
                return 128 - rc if rc < 0 else rc  # killed by signal N -> 128 + N, like a shell
            except KeyboardInterrupt:
                proc.send_signal(signal.SIGINT)  # wait for the run to stop cleanly
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, after = split_argv(argv)
    try:
        opts, unknown = build_parser().parse_known_args(own)
        if unknown:
            raise LauncherError(
                f"unknown job_launcher.py option {unknown[0]!r}: training overrides go after `--` "
                f"(e.g. `-- {' '.join(unknown)}`); job_launcher.py --help lists the launcher's own options"
            )
        return _run(opts, after)
    except LauncherError as e:
        print(f"job_launcher.py: error: {e}", file=sys.stderr)
        return 2


def _run(opts: argparse.Namespace, override_tokens: list[str]) -> int:
    check_options(opts)
    cmd = parse_script(opts.script)
    overrides = parse_args_list(override_tokens, what="the overrides")
    if "checkpoint_dir" in overrides:
        raise LauncherError("--checkpoint_dir is set by the launcher: use --base_experiment_dir / --experiment_name")
    args = apply_overrides(cmd.args, overrides)
    if "checkpoint_dir" in cmd.args:
        print(f"note: the script's --checkpoint_dir {cmd.args['checkpoint_dir']} is replaced by the experiment dir")

    num_gpus = opts.num_gpus
    if opts.mode == "slurm" and num_gpus is None:
        num_gpus = _default_num_gpus(args)
    if num_gpus is not None:
        args = set_devices(args, num_gpus)
    num_nodes = opts.num_nodes or _int_or_none(args.get("num_nodes")) or 1
    if opts.num_nodes is not None or num_nodes > 1:
        args["num_nodes"] = [str(num_nodes)]

    exp_dir, resumed = make_experiment_dir(opts.base_experiment_dir, opts.experiment_name, opts.script, create=False)
    args.pop("checkpoint_dir", None)
    args["checkpoint_dir"] = [str(exp_dir)]

    workdir = Path(opts.workdir).expanduser().resolve()
    entry = opts.entrypoint or cmd.entrypoint
    argv = build_argv(opts.python, entry, args)
    command_path = exp_dir / "command.sh"
    command_text = render_command(argv, workdir, cmd.env, source=str(opts.script))

    sbatch_text = None
    if opts.mode == "slurm":
        workers = _int_or_none(args.get("num_workers"))
        slurm = SlurmOptions(
            job_name=(args.get("name") or [Path(opts.script).stem])[0],
            num_gpus=num_gpus,
            cpus_per_task=opts.cpus_per_task or ((workers if workers is not None else 4) + 1),
            hours=opts.hours,
            partition=opts.partition,
            account=opts.account,
            constraint=opts.constraint,
            mem=opts.mem,
            requeue=opts.requeue,
            num_nodes=num_nodes,
            tasks_per_node=None if num_gpus > 0 else _int_or_none(args.get("devices")),
            extra=opts.sbatch,
            setup=opts.setup,
        )
        sbatch_text = render_sbatch(slurm, exp_dir, command_path)
        # the queue wait is long: the command is checked here, as the entry point would check it, before sbatch
        validate_command(entry, args)

    if opts.dry_run:
        print(f"# experiment dir (not created, dry run): {exp_dir}")
        print(command_text, end="")
        if sbatch_text:
            print(f"# {exp_dir / 'job.sbatch'}:")
            print(sbatch_text, end="")
        return 0

    sbatch = shutil.which("sbatch") if opts.mode == "slurm" else None
    if opts.mode == "slurm" and sbatch is None:
        raise LauncherError(
            "sbatch not found on PATH: run from a SLURM login node (Debian/Ubuntu: apt-get install slurm-client) "
            "or use --mode normal"
        )
    exp_dir, resumed = make_experiment_dir(opts.base_experiment_dir, opts.experiment_name, opts.script, create=True)
    if str(exp_dir) != args["checkpoint_dir"][0]:  # a fresh name was taken meanwhile: render again for the new one
        args["checkpoint_dir"] = [str(exp_dir)]
        argv = build_argv(opts.python, entry, args)
        command_path = exp_dir / "command.sh"
        command_text = render_command(argv, workdir, cmd.env, source=str(opts.script))
        if sbatch_text is not None:
            sbatch_text = render_sbatch(slurm, exp_dir, command_path)
    print(f"experiment dir: {exp_dir}" + (" (exists: resuming)" if resumed else ""))
    atomic_write_text(command_path, command_text, mode=0o755 & ~_umask())

    if opts.mode == "normal":
        env = dict(os.environ, **cmd.env)
        sys.stdout.flush()
        return run_forwarding_signals(argv, cwd=workdir, env=env)

    sbatch_path = exp_dir / "job.sbatch"
    atomic_write_text(sbatch_path, sbatch_text)
    res = subprocess.run([sbatch, "--parsable", str(sbatch_path)], capture_output=True, text=True)
    if res.returncode != 0:
        raise LauncherError(f"sbatch failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")
    job_id = res.stdout.strip().split(";")[0]
    with open(exp_dir / "slurm_jobs.txt", "a") as f:
        f.write(job_id + "\n")
    print(f"submitted SLURM job {job_id}; logs: {exp_dir}/slurm-*.out")
    return 0
