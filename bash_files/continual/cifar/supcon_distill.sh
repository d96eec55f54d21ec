#!/bin/bash
# Hyper-parameters of solo-learn's scripts/pretrain/cifar/supcon.yaml (SupCon, Khosla et al., NeurIPS 2020; augmentations: its symmetric.yaml), 500 epochs per task as in CaSSLe's scripts: CaSSLe contrastive distillation for supcon on cifar100, class-incremental, 5 tasks.
# Run: DATA_DIR=/path/to/datasets python job_launcher.py --script bash_files/continual/cifar/supcon_distill.sh [--mode slurm] [-- --max_epochs 1]
# CaSSLe workflow: with PRETRAINED_PATH=experiments/<run>/task0.ckpt set, the run starts at task 1 from that checkpoint (task 0 is not retrained).
# Log to Weights & Biases: add `-- --wandb --project cassle --entity <your-entity>`.
# Published setting: 1 GPU(s) x batch 256; lr is scaled by global batch / 256.
python3 main_continual.py \
    --dataset cifar100 \
    --data_dir $DATA_DIR \
    --split_strategy class \
    --num_tasks 5 \
    --encoder resnet18 \
    --method supcon \
    --strategy cassle \
    --distiller contrastive \
    --distill_lamb 1.0 \
    --distill_proj_hidden_dim 2048 \
    --max_epochs 500 \
    --batch_size 256 \
    --optimizer sgd \
    --scheduler warmup_cosine \
    --lr 0.4 \
    --classifier_lr 0.1 \
    --weight_decay 1e-5 \
    --crop_size 32 \
    --brightness 0.8 \
    --contrast 0.8 \
    --saturation 0.8 \
    --hue 0.2 \
    --gaussian_prob 0.5 0.5 \
    --solarization_prob 0.0 \
    --proj_hidden_dim 2048 \
    --output_dim 256 \
    --temperature 0.2 \
    --accelerator gpu \
    --devices 1 \
    --precision 16-mixed \
    --num_workers 4 \
    --name supcon-cifar100-5T-contrastive \
    --save_checkpoint \
    ${PRETRAINED_PATH:+--pretrained_model "$PRETRAINED_PATH" --task_idx 1}
