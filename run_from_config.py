#!/usr/bin/env python3
"""Run a sweep of continual experiments described by a JSON config.

    python run_from_config.py --config configs/example.json [--parallel 2] [--dry_run]

``common_params`` are shared by every experiment; an experiment's ``params``
override them, ``hyperparams_search`` expands into a grid and ``seeds`` into
repeated runs. Each run has its own directory; rerunning skips finished runs
and resumes unfinished ones. The logic lives in :mod:`cassle.sweep`.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from cassle.sweep import main as sweep_main

    return sweep_main(argv)


if __name__ == "__main__":
    sys.exit(main())
