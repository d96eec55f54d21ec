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
from dataclasses import dataclass, field
from pathlib import Path

from cassle.errors import LauncherError  # noqa: F401  (re-exported)
from cassle.fileio import _umask, atomic_write_text
from cassle.rundir import LAUNCHER_FILES, is_launcher_file  # noqa: F401  (re-exported)

ENTRYPOINTS = ("main_continual.py", "main_linear.py")
REPO_ROOT = Path(__file__).resolve().parent.parent
_FLAG_RE = re.compile(r"^--?[A-Za-z_]")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
Args = dict  # ordered mapping flag name (no dashes) -> list[str] of values


@dataclass
class ScriptCommand:
    """The python command found in a script."""

    entrypoint: str  # e.g. "main_continual.py" (as written in the script)
    args: Args = field(default_factory=dict)
    env: dict = field(default_factory=dict)  # VAR=value prefixes on the command line


# --------------------------------------------------------------------------- parsing


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash-newline continuations; return ``(first line number, line)`` pairs."""
    text = text.replace("\r\n", "\n")
    out, buf, start = [], [], None
    for no, line in enumerate(text.split("\n"), 1):
        if start is None:
            start = no
        # an odd number of trailing backslashes continues the line
        stripped = line.rstrip(" \t")
        trailing = len(stripped) - len(stripped.rstrip("\\"))
        if trailing % 2 == 1:
            buf.append(stripped[:-1])
            continue
        buf.append(line)
        out.append((start, " ".join(buf)))
        buf, start = [], None
    if buf:
        out.append((start, " ".join(buf)))
    return out


def _expand(line: str, env: dict, missing: list) -> str:
    """Strip a ``#`` comment and expand ``$VAR`` / ``${VAR}`` / ``${VAR:-default}``.

    Quote-aware like bash: nothing inside single quotes is touched; expanded values
    are re-quoted so that :func:`shlex.split` keeps each one a single word. Names of
    unset variables are appended to ``missing``.
    """

    def lookup(name: str, default: str | None) -> str:
        value = env.get(name)
        if value is None or (default is not None and value == ""):
            if default is not None:
                return default
            missing.append(name)
            return ""
        return value

    out, i, n, quote = [], 0, len(line), None
    while i < n:
        c = line[i]
        if quote == "'":
            out.append(c)
            if c == "'":
                quote = None
            i += 1
            continue
        if c == "\\" and i + 1 < n:
            out.append(line[i : i + 2])
            i += 2
            continue
        if quote is None and c == "#" and (i == 0 or line[i - 1] in " \t;"):
            break  # comment to the end of the line
        if c in "'\"":
            if quote is None:
                quote = c
            elif quote == c:
                quote = None
            out.append(c)
            i += 1
            continue
        if c == "$" and i + 1 < n:
            if line[i + 1] == "{":
                end = line.find("}", i + 2)
                if end == -1:
                    raise LauncherError(f"unterminated ${{...}} in: {line.strip()}")
                inner = line[i + 2 : end]
                name, sep, default = inner.partition(":-")
                if not _NAME_RE.fullmatch(name):
                    raise LauncherError(f"unsupported expansion ${{{inner}}} in: {line.strip()}")
                value = lookup(name, default if sep else None)
                i = end + 1
            else:
                m = _NAME_RE.match(line, i + 1)
                if not m:
                    out.append(c)
                    i += 1
                    continue
                value = lookup(m.group(0), None)
                i = m.end()
            if quote == '"':
                out.append(value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$"))
            else:
                out.append(shlex.quote(value) if value else "")
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_args_list(tokens: list[str], what: str = "arguments") -> Args:
    """Read ``--flag v1 v2 --switch --key=value`` into ``{"flag": ["v1", "v2"], "switch": [], ...}``.

    A token is a flag when it starts with ``-`` followed by a letter or ``_`` (so
    ``-1`` and ``-0.5`` are values). A flag given twice keeps the last values.
    """
    args: Args = {}
    current = None
    for tok in tokens:
        if _FLAG_RE.match(tok):
            name, eq, value = tok.lstrip("-").partition("=")
            if not name:
                raise LauncherError(f"empty flag {tok!r} in {what}")
            args.pop(name, None)  # re-given: last one wins, at its new position
            args[name] = [value] if eq else []
            current = name
        elif current is None:
            raise LauncherError(f"value {tok!r} before any --flag in {what}")
        else:
            args[current].append(tok)
    return args


def format_args(args: Args) -> list[str]:
    """Inverse of :func:`parse_args_list`."""
    out = []
    for name, values in args.items():
        out.append(f"--{name}")
        out.extend(values)
    return out


def parse_script(path: str | os.PathLike, env: dict | None = None) -> ScriptCommand:
    """Find the ``python ... main_continual.py|main_linear.py ...`` command in a bash script.

    ``env`` defaults to ``os.environ``; simple ``VAR=value`` / ``export VAR=value``
    lines before the command update it. Raises :class:`LauncherError` when the
    script is missing, has no (or several) python commands, or uses an unset
    variable on the command line.
    """
    path = Path(path)
    if not path.is_file():
        raise LauncherError(f"script {str(path)!r} does not exist")
    env = dict(os.environ if env is None else env)
    found: list[tuple[int, list[str], list[str]]] = []
    for lineno, line in _logical_lines(path.read_text()):
        missing: list[str] = []
        expanded = _expand(line, env, missing)
        try:
            tokens = shlex.split(expanded)
        except ValueError as e:
            raise LauncherError(f"{path}:{lineno}: cannot tokenize ({e})") from None
        if not tokens:
            continue
        body = tokens[1:] if tokens[0] == "export" else tokens
        if body and all(_ASSIGN_RE.match(t) for t in body):  # VAR=value lines
            for t in body:
                k, _, v = t.partition("=")
                env[k] = v
            continue
        hits = [i for i, t in enumerate(tokens) if os.path.basename(t) in ENTRYPOINTS]
        if not hits:
            continue
        if missing:
            names = ", ".join(f"${m}" for m in dict.fromkeys(missing))
            raise LauncherError(
                f"{path}:{lineno} uses {names} but it is not set in the environment: "
                f"run e.g. `{missing[0]}=/path/to/it python job_launcher.py ...`"
            )
        found.append((lineno, tokens[: hits[0] + 1], tokens[hits[0] + 1 :]))
    if not found:
        raise LauncherError(f"{path} has no `python3 {' | '.join(ENTRYPOINTS)} ...` command")
    if len(found) > 1:
        lines = ", ".join(str(f[0]) for f in found)
        raise LauncherError(f"{path} has {len(found)} python commands (lines {lines}); keep one per script")
    lineno, prefix, rest = found[0]
    cmd_env = {}
    for t in prefix[:-1]:
        if _ASSIGN_RE.match(t):
            k, _, v = t.partition("=")
            cmd_env[k] = v
    return ScriptCommand(
        entrypoint=prefix[-1],
        args=parse_args_list(rest, what=f"{path}:{lineno}"),
        env=cmd_env,
    )


def apply_overrides(args: Args, overrides: Args) -> Args:
    """Return a copy of ``args`` where each override replaces its flag's values (in place) or is appended."""
    merged = {k: list(v) for k, v in args.items()}
    for k, v in overrides.items():
        merged[k] = list(v)
    return merged


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


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="job_launcher.py",
        allow_abbrev=False,
        description="Run a bash_files/*.sh script locally or submit it to SLURM. "
        "Unrecognised arguments (or all after `--`) override the script's own, e.g. `-- --max_epochs 1`.",
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
        help="GPUs (= tasks) per job; default: the script's --devices on gpu, else 0",
    )
    p.add_argument("--cpus_per_task", type=int, default=None, help="default: the script's --num_workers + 1")
    p.add_argument("--hours", type=int, default=20)
    p.add_argument("--partition", default=None)
    p.add_argument("--account", default=None)
    p.add_argument("--constraint", default=None)
    p.add_argument("--mem", default=None, help="e.g. 64G")
    p.add_argument("--requeue", type=int, default=0, help="R > 0: R continuations after the first job (array 0-R%%1)")
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
    args = dict(args)
    if num_gpus > 0:
        args["accelerator"] = ["gpu"]
        args["devices"] = [str(num_gpus)]
    else:
        args["accelerator"] = ["cpu"]
        args["devices"] = ["1"]
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
    parser = build_parser()
    opts, unknown = parser.parse_known_args(own)
    try:
        return _run(opts, unknown + after)
    except LauncherError as e:
        print(f"job_launcher.py: error: {e}", file=sys.stderr)
        return 2


def _run(opts: argparse.Namespace, override_tokens: list[str]) -> int:
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
        if num_gpus < 0:
            raise LauncherError("--num_gpus must be >= 0")
        args = set_devices(args, num_gpus)

    exp_dir, resumed = make_experiment_dir(
        opts.base_experiment_dir, opts.experiment_name, opts.script, create=not opts.dry_run
    )
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
        )
        sbatch_text = render_sbatch(slurm, exp_dir, command_path)

    if opts.dry_run:
        print(f"# experiment dir (not created, dry run): {exp_dir}")
        print(command_text, end="")
        if sbatch_text:
            print(f"# {exp_dir / 'job.sbatch'}:")
            print(sbatch_text, end="")
        return 0

    print(f"experiment dir: {exp_dir}" + (" (exists: resuming)" if resumed else ""))
    atomic_write_text(command_path, command_text, mode=0o755 & ~_umask())

    if opts.mode == "normal":
        env = dict(os.environ, **cmd.env)
        sys.stdout.flush()
        return run_forwarding_signals(argv, cwd=workdir, env=env)

    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise LauncherError(
            "sbatch not found on PATH: run from a SLURM login node (Debian/Ubuntu: apt-get install slurm-client) "
            "or use --mode normal"
        )
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
