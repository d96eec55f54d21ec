#!/usr/bin/env python3
"""Launch a bash_files/*.sh experiment locally or on SLURM.

    DATA_DIR=~/datasets python job_launcher.py --script bash_files/continual/cifar/barlow.sh \
        [--mode normal|slurm] [--base_experiment_dir ./experiments] [--experiment_name NAME] \
        [--num_gpus N] [--cpus_per_task C] [--hours H] [--partition P] [--account A] \
        [--constraint C] [--mem M] [--requeue R] [--dry_run] [-- --max_epochs 1 ...]

Unrecognised arguments override the script's. See cassle/launcher.py for details.
"""

import sys

from cassle.launcher import main

if __name__ == "__main__":
    sys.exit(main())
