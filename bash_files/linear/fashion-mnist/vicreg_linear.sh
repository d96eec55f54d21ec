#!/bin/bash
# Linear evaluation (frozen backbone, per-task accuracy) of a vicreg continual checkpoint on fashion_mnist.
# Run: DATA_DIR=/path/to/datasets PRETRAINED_PATH=experiments/<run>/<task checkpoint> \
#      python job_launcher.py --script bash_files/linear/fashion-mnist/vicreg_linear.sh
python3 main_linear.py \
    --dataset fashion_mnist \
    --data_dir ${DATA_DIR:-/usr/share/datasets/fashion-mnist} \
    --pretrained_model $PRETRAINED_PATH \
    --encoder slim_resnet9 \
    --max_epochs 10 \
    --batch_size 256 \
    --optimizer sgd \
    --lr 0.1 \
    --weight_decay 0 \
    --scheduler step \
    --crop_size 28 \
    --num_workers 2 \
    --name vicreg-fashion_mnist-linear-eval
