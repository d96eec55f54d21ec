#!/bin/bash
# Linear evaluation (frozen backbone, per-task accuracy) of a vicreg continual checkpoint on cifar100.
# Run: DATA_DIR=/path/to/datasets PRETRAINED_PATH=experiments/<run>/<task checkpoint> \
#      python job_launcher.py --script bash_files/linear/cifar/vicreg_linear.sh
python3 main_linear.py \
    --dataset cifar100 \
    --data_dir $DATA_DIR \
    --pretrained_model $PRETRAINED_PATH \
    --encoder resnet18 \
    --feature_norm none \
    --augment \
    --max_epochs 100 \
    --batch_size 256 \
    --optimizer sgd \
    --lr 0.1 \
    --weight_decay 0 \
    --scheduler step \
    --crop_size 32 \
    --num_workers 4 \
    --name vicreg-cifar100-linear-eval
