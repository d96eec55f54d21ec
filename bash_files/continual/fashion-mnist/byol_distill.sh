#!/bin/bash
# CPU-sized continual run on Fashion-MNIST (5 class-incremental tasks, slim ResNet-9, 5 epochs per task):
# the paper's recipe scaled down; CaSSLe predictive distillation for byol.
# Data: apt-get install dataset-fashion-mnist (or DATA_DIR=<folder with the idx files>).
# Run: python job_launcher.py --script bash_files/continual/fashion-mnist/byol_distill.sh [-- --max_epochs 1]
# CaSSLe workflow: with PRETRAINED_PATH=experiments/<run>/task0.ckpt set, the run starts at task 1 from that checkpoint (task 0 is not retrained).
# Log to Weights & Biases: add `-- --wandb --project cassle --entity <your-entity>`.
python3 main_continual.py \
    --dataset fashion_mnist \
    --data_dir ${DATA_DIR:-/usr/share/datasets/fashion-mnist} \
    --split_strategy class \
    --num_tasks 5 \
    --encoder slim_resnet9 \
    --method byol \
    --strategy cassle \
    --distiller predictive \
    --distill_lamb 1.0 \
    --distill_proj_hidden_dim 256 \
    --max_epochs 5 \
    --batch_size 128 \
    --optimizer sgd \
    --lars \
    --eta_lars 0.02 \
    --exclude_bias_n_norm \
    --scheduler warmup_cosine \
    --warmup_epochs 1 \
    --lr 1.0 \
    --classifier_lr 0.1 \
    --weight_decay 1e-5 \
    --crop_size 28 \
    --brightness 0.4 \
    --contrast 0.4 \
    --gaussian_prob 0.0 0.0 \
    --solarization_prob 0.0 0.2 \
    --saturation 0.0 \
    --hue 0.0 \
    --proj_hidden_dim 512 \
    --output_dim 128 \
    --pred_hidden_dim 512 \
    --base_tau_momentum 0.99 \
    --final_tau_momentum 1.0 \
    --accelerator cpu \
    --devices 1 \
    --precision 32 \
    --num_workers 2 \
    --name byol-fashion_mnist-5T-predictive \
    --save_checkpoint \
    ${PRETRAINED_PATH:+--pretrained_model "$PRETRAINED_PATH" --task_idx 1}
