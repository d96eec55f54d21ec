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


def _setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def continual_main(argv: list[str] | None = None) -> int:
    """Continual self-supervised pretraining, all tasks in one process; rerunning resumes the run."""
    from cassle.args import parse_args
    from cassle.continual import run

    _setup_logging()
    try:
        run(parse_args(argv))
    except CassleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def linear_main(argv: list[str] | None = None) -> int:
    """Linear evaluation of a task checkpoint (frozen backbone, all classes)."""
    from cassle.args.linear import parse_linear_args
    from cassle.eval.linear import run_linear

    _setup_logging()
    try:
        run_linear(parse_linear_args(argv))
    except CassleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # python -m cassle.cli ARGS == main_continual.py ARGS
    sys.exit(continual_main())
