"""Entry points: ``main_continual.py`` / ``cassle-continual`` and ``main_linear.py`` / ``cassle-linear``.

The top-level scripts are thin wrappers around these functions, and
``pyproject.toml`` installs them as console commands, so a non-editable
install (which packages only ``cassle*``) has them too. Each returns 0 on
success and 2 on a bad input, whose one-line message (``error: ...``, naming
the fix) goes to stderr before any work starts.
"""

from __future__ import annotations

import logging
import sys

from cassle.errors import CassleError

#: what ``main_continual.py`` with no arguments at all runs: the README's first command, the embedded digits demo
#: (5 class-incremental tasks, about 2.5 minutes on 2 CPU cores); every bash file gives its own settings explicitly
DEMO_ARGS: tuple[str, ...] = (
    "--dataset", "digits", "--encoder", "slim_resnet9", "--method", "barlow_twins", "--num_tasks", "5",
    "--max_epochs", "25", "--batch_size", "64", "--lr", "0.1", "--proj_hidden_dim", "512", "--output_dim", "512",
    "--gpu_augment", "--num_workers", "0",
)  # fmt: skip


def _entry(parse, run, argv: list[str] | None) -> int:
    """Parse ``argv`` and run; a :class:`CassleError` becomes one ``error: ...`` line on stderr and status 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from cassle.fileio import storage_error

    try:
        run(parse(argv))
    except CassleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk or a read-only folder anywhere (Lightning's loggers, the run lock): one line
        err = storage_error(e)
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def continual_main(argv: list[str] | None = None) -> int:
    """Continual self-supervised pretraining, all tasks in one process; rerunning resumes the run.

    No arguments at all (``argv`` empty, or ``None`` with an empty command line) run :data:`DEMO_ARGS`.
    """
    from cassle.args import parse_args
    from cassle.continual import run

    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        print(
            "main_continual.py without arguments: running the embedded digits demo (the README's first command):\n"
            f"  main_continual.py {' '.join(DEMO_ARGS)}\n"
            "  (main_continual.py --help lists every option)",
            flush=True,
        )
        argv = list(DEMO_ARGS)
    return _entry(parse_args, run, argv)


def linear_main(argv: list[str] | None = None) -> int:
    """Linear evaluation of a task checkpoint (frozen backbone, all classes)."""
    from cassle.args.linear import parse_linear_args
    from cassle.eval.linear import run_linear

    return _entry(parse_linear_args, run_linear, argv)


if __name__ == "__main__":  # python -m cassle.cli ARGS == main_continual.py ARGS
    sys.exit(continual_main())
