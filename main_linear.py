#!/usr/bin/env python3
"""Linear evaluation of a continual SSL checkpoint (CaSSLe's headline protocol).

    python main_linear.py --pretrained_model experiments/RUN/task4.ckpt \\
        --max_epochs 100 --batch_size 256 --lr 0.1 --optimizer sgd --scheduler step

The dataset, encoder, crop size and task split default to those of the run that
wrote the checkpoint. Results go to <checkpoint folder>/linear/<name>/
(linear_results.json, linear_results.csv, logs/). The logic lives in
:func:`cassle.cli.linear_main` (also installed as ``cassle-linear``).
"""

from __future__ import annotations

import sys

from cassle.cli import linear_main as main

if __name__ == "__main__":
    sys.exit(main())
