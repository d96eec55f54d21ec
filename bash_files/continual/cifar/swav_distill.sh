#!/bin/bash
# Paper setting (CaSSLe, Fini et al., CVPR 2022): CaSSLe knowledge distillation for swav on cifar100, class-incremental, 5 tasks.
# Run: DATA_DIR=/path/to/datasets python job_launcher.py --script bash_files/continual/cifar/swav_distill.sh [--mode slurm] [-- --max_epochs 1]
# CaSSLe workflow: with PRETRAINED_PATH=experiments/<run>/task0.ckpt set, the run starts at task 1 from that checkpoint (task 0 is not retrained).
# Log to Weights & Biases: add `-- --wandb --project cassle --entity <your-entity>`.
# Published setting: 1 GPU(s) x batch 256; lr is scaled by global batch / 256.
python3 main_continual.py \
    --dataset cifar100 \
    --data_dir $DATA_DIR \
    --split_strategy class \
    --num_tasks 5 \
    --encoder resnet18 \
    --method swav \
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
    --scheduler warmup_cosine \
    --lr 0.6 \
    --classifier_lr 0.1 \
    --weight_decay 1e-6 \
    --crop_size 32 \
    --brightness 0.8 \
    --contrast 0.8 \
    --saturation 0.8 \
    --hue 0.2 \
    --gaussian_prob 0.0 0.0 \
    --solarization_prob 0.0 \
    --proj_hidden_dim 2048 \
    --output_dim 128 \
    --queue_size 3840 \
    --num_prototypes 3000 \
    --epoch_queue_starts 50 \
    --freeze_prototypes_epochs 2 \
    --accelerator gpu \
    --devices 1 \
    --precision 16-mixed \
    --num_workers 4 \
    --name swav-cifar100-5T-knowledge \
    --save_checkpoint \
    ${PRETRAINED_PATH:+--pretrained_model "$PRETRAINED_PATH" --task_idx 1}
