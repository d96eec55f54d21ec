#!/bin/bash
# Smoke-sized run on the embedded handwritten digits (no files needed, about a minute on a CPU):
# Barlow Twins, 5 class-incremental tasks, CaSSLe decorrelative distillation.
# Run: python job_launcher.py --script bash_files/continual/digits/barlow_distill.sh
# CaSSLe workflow: with PRETRAINED_PATH=experiments/<run>/task0.ckpt set, the run starts at task 1 from that checkpoint (task 0 is not retrained).
python3 main_continual.py \
    --dataset digits \
    --split_strategy class \
    --num_tasks 5 \
    --encoder slim_resnet9 \
    --method barlow_twins \
    --strategy cassle \
    --distiller decorrelative \
    --distill_lamb 1.0 \
    --distill_proj_hidden_dim 256 \
    --max_epochs 3 \
    --batch_size 64 \
    --optimizer sgd \
    --lars \
    --eta_lars 0.02 \
    --exclude_bias_n_norm \
    --scheduler warmup_cosine \
    --warmup_epochs 1 \
    --lr 0.3 \
    --classifier_lr 0.1 \
    --weight_decay 1e-4 \
    --crop_size 16 \
    --proj_hidden_dim 256 \
    --output_dim 256 \
    --scale_loss 0.1 \
    --accelerator cpu \
    --devices 1 \
    --precision 32 \
    --num_workers 0 \
    --name barlow-digits-5T-decorrelative \
    --save_checkpoint \
    ${PRETRAINED_PATH:+--pretrained_model "$PRETRAINED_PATH" --task_idx 1}
