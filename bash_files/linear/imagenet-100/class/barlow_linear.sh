#!/bin/bash
# Linear evaluation (frozen backbone, per-task accuracy) of a barlow_twins checkpoint of the class-incremental ImageNet-100 runs (bash_files/continual/imagenet-100/class/).
# Run: DATA_DIR=/path/to/datasets PRETRAINED_PATH=experiments/<run>/<task checkpoint> \
#      python job_launcher.py --script bash_files/linear/imagenet-100/class/barlow_linear.sh
python3 main_linear.py \
    --dataset imagenet100 \
    --data_dir $DATA_DIR/imagenet-100 \
    --pretrained_model $PRETRAINED_PATH \
    --split_strategy class \
    --num_tasks 5 \
    --encoder resnet18 \
    --feature_norm none \
    --augment \
    --max_epochs 100 \
    --batch_size 256 \
    --optimizer sgd \
    --lr 0.1 \
    --weight_decay 0 \
    --scheduler step \
    --crop_size 224 \
    --num_workers 8 \
    --name barlow-imagenet100-class-linear-eval
