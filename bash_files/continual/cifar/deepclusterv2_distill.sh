#!/bin/bash
# Paper setting (CaSSLe, Fini et al., CVPR 2022): CaSSLe knowledge distillation for deepclusterv2 on cifar100, class-incremental, 5 tasks.
# Run: DATA_DIR=/path/to/datasets python job_launcher.py --script bash_files/continual/cifar/deepclusterv2_distill.sh [--mode slurm] [-- --max_epochs 1]
# CaSSLe workflow: with PRETRAINED_PATH=experiments/<run>/task0.ckpt set, the run starts at task 1 from that checkpoint (task 0 is not retrained).
# Log to Weights & Biases: add `-- --wandb --project cassle --entity <your-entity>`.
# Published setting: 1 GPU(s) x batch 256; lr is scaled by global batch / 256.
# Method and optimisation from solo-learn scripts/pretrain/cifar/deepclusterv2.yaml (LARS eta 0.02 with clipping and
# bias/norm exclusion, lr 0.6, min_lr 0.0006, 11 warm-up epochs, wd 1e-6, 2048 -> 128, 3 x 3000 prototypes) and its
# augmentations/symmetric.yaml; 500 epochs per task as CaSSLe's CIFAR runs (the yaml's 1000 is offline training).
python3 main_continual.py \
    --dataset cifar100 \
    --data_dir $DATA_DIR \
    --split_strategy class \
    --num_tasks 5 \
    --encoder resnet18 \
    --method deepclusterv2 \
    --strategy cassle \
    --distiller knowledge \
    --distill_lamb 1.0 \
    --distill_proj_hidden_dim 2048 \
    --distill_temperature 0.1 \
    --max_epochs 500 \
    --batch_size 256 \
    --optimizer sgd \
    --lars \
    --eta_lars 0.02 \
    --grad_clip_lars \
    --exclude_bias_n_norm \
    --scheduler warmup_cosine \
    --lr 0.6 \
    --min_lr 0.0006 \
    --warmup_start_lr 0.0 \
    --warmup_epochs 11 \
    --classifier_lr 0.1 \
    --weight_decay 1e-6 \
    --crop_size 32 \
    --min_scale 0.08 \
    --max_scale 1.0 \
    --brightness 0.8 \
    --contrast 0.8 \
    --saturation 0.8 \
    --hue 0.2 \
    --color_jitter_prob 0.8 \
    --grayscale_prob 0.2 \
    --gaussian_prob 0.5 \
    --solarization_prob 0.0 \
    --horizontal_flip_prob 0.5 \
    --proj_hidden_dim 2048 \
    --output_dim 128 \
    --temperature 0.1 \
    --num_prototypes 3000 \
    --num_prototype_heads 3 \
    --kmeans_iters 10 \
    --accelerator gpu \
    --devices 1 \
    --precision 16-mixed \
    --num_workers 4 \
    --name deepclusterv2-cifar100-5T-knowledge \
    --save_checkpoint \
    ${PRETRAINED_PATH:+--pretrained_model "$PRETRAINED_PATH" --task_idx 1}
