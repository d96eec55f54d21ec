#!/bin/bash
# Paper setting (CaSSLe, Fini et al., CVPR 2022): CaSSLe predictive distillation for nnbyol on cifar100, class-incremental, 5 tasks.
# Run: DATA_DIR=/path/to/datasets python job_launcher.py --script bash_files/continual/cifar/nnbyol_distill.sh [--mode slurm] [-- --max_epochs 1]
# CaSSLe workflow: with PRETRAINED_PATH=experiments/<run>/task0.ckpt set, the run starts at task 1 from that checkpoint (task 0 is not retrained).
# Log to Weights & Biases: add `-- --wandb --project cassle --entity <your-entity>`.
# Published setting: 1 GPU(s) x batch 256; lr is scaled by global batch / 256.
# The CaSSLe repo has no nnbyol script: method settings from solo-learn scripts/pretrain/cifar/nnbyol.yaml
# (optimizer, lr, heads, support set, asymmetric augmentations), continual ones (500 epochs per task) from CaSSLe's CIFAR scripts.
python3 main_continual.py \
    --dataset cifar100 \
    --data_dir $DATA_DIR \
    --split_strategy class \
    --num_tasks 5 \
    --encoder resnet18 \
    --method nnbyol \
    --strategy cassle \
    --distiller predictive \
    --distill_lamb 1.0 \
    --distill_proj_hidden_dim 2048 \
    --max_epochs 500 \
    --batch_size 256 \
    --optimizer sgd \
    --lars \
    --grad_clip_lars \
    --eta_lars 0.02 \
    --exclude_bias_n_norm \
    --scheduler warmup_cosine \
    --lr 1.0 \
    --classifier_lr 0.1 \
    --weight_decay 1e-5 \
    --crop_size 32 \
    --brightness 0.4 \
    --contrast 0.4 \
    --saturation 0.2 \
    --hue 0.1 \
    --gaussian_prob 0.0 0.0 \
    --solarization_prob 0.0 0.2 \
    --proj_hidden_dim 4096 \
    --output_dim 256 \
    --pred_hidden_dim 4096 \
    --queue_size 65536 \
    --base_tau_momentum 0.99 \
    --final_tau_momentum 1.0 \
    --accelerator gpu \
    --devices 1 \
    --precision 16-mixed \
    --num_workers 4 \
    --name nnbyol-cifar100-5T-predictive \
    --save_checkpoint \
    ${PRETRAINED_PATH:+--pretrained_model "$PRETRAINED_PATH" --task_idx 1}
