#!/usr/bin/env python3
"""Linear evaluation of a continual SSL checkpoint (CaSSLe's headline protocol).

    python main_linear.py --pretrained_model experiments/RUN/task4.ckpt \\
        --max_epochs 100 --batch_size 256 --lr 0.1 --optimizer sgd --scheduler step

The dataset, encoder, crop size and task split default to those of the run that
wrote the checkpoint. Results go to <checkpoint folder>/linear/<name>/
(linear_results.json, linear_results.csv, logs/).
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the linear evaluation; 0 on success, 2 on a bad input (message on stderr)."""
    from cassle.args import ArgumentError
    from cassle.args.linear import parse_linear_args
    from cassle.checkpoint import CheckpointError
    from cassle.eval.linear import LinearEvalError, run_linear

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = parse_linear_args(argv)
        run_linear(args)
    except (ArgumentError, CheckpointError, LinearEvalError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
