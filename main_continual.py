#!/usr/bin/env python3
"""Continual self-supervised pretraining: all tasks in one process.

    python main_continual.py --dataset digits --encoder slim_resnet9 --method barlow_twins \\
        --num_tasks 5 --max_epochs 25 --batch_size 64 --lr 0.1 --proj_hidden_dim 512 --output_dim 512 --gpu_augment

Rerunning the same command resumes the run in its --checkpoint_dir. The logic
lives in :func:`cassle.cli.continual_main` (also installed as ``cassle-continual``).
"""

from __future__ import annotations

import sys

from cassle.cli import continual_main as main

if __name__ == "__main__":
    sys.exit(main())
