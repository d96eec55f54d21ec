"""The launcher's checks, run before anything is read, created or submitted: its own options
(:func:`check_options`) and the training command as its entry point would parse it (:func:`validate_command`)."""

from __future__ import annotations

import argparse
import os

from cassle.errors import CassleError, LauncherError
from cassle.scripts import ENTRYPOINTS, Args, format_args
from cassle.slurm import sbatch_option, setup_line


def check_options(opts: argparse.Namespace) -> None:
    """The launcher's own values, checked before anything is read or created."""
    if opts.mode != "slurm":
        slurm_only = [f for f, v in (("--sbatch", opts.sbatch), ("--setup", opts.setup)) if v]
        if opts.num_nodes is not None and opts.num_nodes > 1:
            slurm_only.append("--num_nodes")
        if slurm_only:
            raise LauncherError(f"{', '.join(slurm_only)} describe a SLURM job: add --mode slurm")
    for flag, value, low in (
        ("--num_gpus", opts.num_gpus, 0), ("--num_nodes", opts.num_nodes, 1), ("--cpus_per_task", opts.cpus_per_task, 1),
        ("--hours", opts.hours, 1), ("--requeue", opts.requeue, 0),
    ):  # fmt: skip
        if value is not None and value < low:
            raise LauncherError(f"{flag} must be at least {low}, got {value}")
    opts.sbatch = [sbatch_option(o) for o in opts.sbatch]
    opts.setup = [setup_line(line) for line in opts.setup]


def validate_command(entrypoint: str, args: Args) -> None:
    """Check the training command as ``main_continual.py`` / ``main_linear.py`` would, without running it (the
    checks of this machine's own devices left out: a login node has no GPU); a refusal is one
    :class:`LauncherError`. Another entry point (``--entrypoint``) is not checked."""
    import inspect

    name = os.path.basename(entrypoint)
    if name not in ENTRYPOINTS:
        return
    if name == "main_continual.py":
        from cassle.args import parse_args as parse
    else:
        from cassle.args.linear import parse_linear_args as parse
    tokens = format_args(args)
    kwargs = {}
    if "check_machine" in inspect.signature(parse).parameters:
        kwargs["check_machine"] = False
    elif (args.get("accelerator") or [""])[0].lower() in ("gpu", "cuda", "auto"):
        tokens = format_args(dict(args, accelerator=["cpu"]))  # the GPU is the compute node's, not this one's
    try:
        parse(tokens, **kwargs)
    except CassleError as e:
        why = " ".join(str(e).split("\n")[0].split())
        raise LauncherError(
            f"{name} would refuse this command: {why} — fix the script or override the value after `--`; "
            "nothing was created or submitted"
        ) from None
    except SystemExit:  # --help, --list_methods
        raise LauncherError(
            f"the command asks {name} to print and exit (--help / --list_methods): drop that flag"
        ) from None
