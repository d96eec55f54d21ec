#!/usr/bin/env python3
"""Launch a bash_files/*.sh experiment locally or on SLURM.

    DATA_DIR=~/datasets python job_launcher.py --script bash_files/continual/cifar/barlow.sh \
        [--mode normal|slurm] [--base_experiment_dir ./experiments] [--experiment_name NAME] \
        [--num_nodes N] [--num_gpus G] [--cpus_per_task C] [--hours H] [--partition P] [--account A] \
        [--constraint C] [--mem M] [--requeue R] [--sbatch OPTION ...] [--setup LINE ...] [--dry_run] \
        [-- --max_epochs 1 ...]

Arguments after `--` override the script's; an unknown launcher option is an error. See cassle/launcher.py.
"""

import sys

from cassle.launcher import main

if __name__ == "__main__":
    sys.exit(main())
