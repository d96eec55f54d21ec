#!/usr/bin/env python3
"""Continual self-supervised pretraining: all tasks in one process.

    python main_continual.py --dataset digits --encoder slim_resnet9 --method barlow_twins \\
        --num_tasks 5 --max_epochs 25 --batch_size 64 --lr 0.1 --proj_hidden_dim 512 --output_dim 512 --gpu_augment

Rerunning the same command resumes the run in its --checkpoint_dir.
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from cassle.args import ArgumentError, parse_args
    from cassle.checkpoint import CheckpointError
    from cassle.continual import RunError, run

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = parse_args(argv)
        run(args)
    except (ArgumentError, RunError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
