#!/bin/bash
# Paper setting (CaSSLe, Fini et al., CVPR 2022): CaSSLe decorrelative distillation for wmse on cifar100, class-incremental, 5 tasks.
# Run: DATA_DIR=/path/to/datasets python job_launcher.py --script bash_files/continual/cifar/wmse_distill.sh [--mode slurm] [-- --max_epochs 1]
# CaSSLe workflow: with PRETRAINED_PATH=experiments/<run>/task0.ckpt set, the run starts at task 1 from that checkpoint (task 0 is not retrained).
# Log to Weights & Biases: add `-- --wandb --project cassle --entity <your-entity>`.
# Published setting: 1 GPU(s) x batch 256; lr is scaled by global batch / 256.
# The CaSSLe repo has no W-MSE script: hyper-parameters from solo-learn scripts/pretrain/cifar/wmse.yaml
# (Adam there; this project's adamw with weight decay 1e-6 is the closest optimiser).
python3 main_continual.py \
    --dataset cifar100 \
    --data_dir $DATA_DIR \
    --split_strategy class \
    --num_tasks 5 \
    --encoder resnet18 \
    --method wmse \
    --strategy cassle \
    --distiller decorrelative \
    --distill_lamb 1.0 \
    --distill_proj_hidden_dim 2048 \
    --distill_barlow_lamb 0.005 \
    --distill_scale_loss 0.1 \
    --max_epochs 500 \
    --batch_size 256 \
    --optimizer adamw \
    --scheduler warmup_cosine \
    --warmup_start_lr 0.0 \
    --lr 2e-3 \
    --classifier_lr 3e-3 \
    --weight_decay 1e-6 \
    --crop_size 32 \
    --min_scale 0.2 \
    --max_scale 1.0 \
    --brightness 0.8 \
    --contrast 0.8 \
    --saturation 0.8 \
    --hue 0.2 \
    --color_jitter_prob 0.8 \
    --grayscale_prob 0.2 \
    --gaussian_prob 0.0 \
    --solarization_prob 0.0 \
    --horizontal_flip_prob 0.5 \
    --proj_hidden_dim 1024 \
    --output_dim 64 \
    --whitening_size 128 \
    --whitening_iters 1 \
    --whitening_eps 0.0 \
    --accelerator gpu \
    --devices 1 \
    --precision 16-mixed \
    --num_workers 4 \
    --name wmse-cifar100-5T-decorrelative \
    --save_checkpoint \
    ${PRETRAINED_PATH:+--pretrained_model "$PRETRAINED_PATH" --task_idx 1}
