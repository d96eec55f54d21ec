#!/bin/bash
# Paper setting (CaSSLe, Fini et al., CVPR 2022): CaSSLe contrastive distillation for mocov2plus on domainnet, domain-incremental, 6 tasks.
# Run: DATA_DIR=/path/to/datasets python job_launcher.py --script bash_files/continual/domainnet/mocov2plus_distill.sh [--mode slurm] [-- --max_epochs 1]
# CaSSLe workflow: with PRETRAINED_PATH=experiments/<run>/task0.ckpt set, the run starts at task 1 from that checkpoint (task 0 is not retrained).
# Log to Weights & Biases: add `-- --wandb --project cassle --entity <your-entity>`.
# Published setting: 4 GPU(s) x batch 64; lr is scaled by global batch / 256.
python3 main_continual.py \
    --dataset domainnet \
    --data_dir $DATA_DIR/domainnet \
    --split_strategy domain \
    --num_tasks 6 \
    --encoder resnet18 \
    --method mocov2plus \
    --strategy cassle \
    --distiller contrastive \
    --distill_lamb 1.0 \
    --distill_proj_hidden_dim 2048 \
    --distill_temperature 0.2 \
    --max_epochs 200 \
    --batch_size 64 \
    --optimizer sgd \
    --scheduler cosine \
    --warmup_epochs 0 \
    --lr 0.4 \
    --classifier_lr 0.3 \
    --weight_decay 1e-4 \
    --crop_size 224 \
    --brightness 0.4 \
    --contrast 0.4 \
    --saturation 0.4 \
    --hue 0.1 \
    --gaussian_prob 0.5 \
    --solarization_prob 0.0 \
    --proj_hidden_dim 2048 \
    --output_dim 128 \
    --queue_size 65536 \
    --temperature 0.2 \
    --base_tau_momentum 0.99 \
    --final_tau_momentum 0.999 \
    --accelerator gpu \
    --devices 4 \
    --precision 16-mixed \
    --num_workers 5 \
    --name mocov2plus-domainnet-6T-contrastive \
    --save_checkpoint \
    ${PRETRAINED_PATH:+--pretrained_model "$PRETRAINED_PATH" --task_idx 1}
