#!/bin/bash
# Linear evaluation (frozen backbone, per-task accuracy) of a vicreg continual checkpoint on domainnet.
# Run: DATA_DIR=/path/to/datasets PRETRAINED_PATH=experiments/<run>/<task checkpoint> \
#      python job_launcher.py --script bash_files/linear/domainnet/vicreg_linear.sh
# One domain only (the paper's per-domain table): append `-- --domain <name>`, one of
# clipart infograph painting quickdraw real sketch.
python3 main_linear.py \
    --dataset domainnet \
    --data_dir $DATA_DIR/domainnet \
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
    --crop_size 224 \
    --num_workers 8 \
    --name vicreg-domainnet-linear-eval
