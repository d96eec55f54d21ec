#!/bin/bash
# Paper setting (CaSSLe, Fini et al., CVPR 2022): CaSSLe predictive distillation for byol on domainnet, domain-incremental, 6 tasks.
# Run: DATA_DIR=/path/to/datasets python job_launcher.py --script bash_files/continual/domainnet/byol_distill.sh [--mode slurm] [-- --max_epochs 1]
# CaSSLe workflow: with PRETRAINED_PATH=experiments/<run>/task0.ckpt set, the run starts at task 1 from that checkpoint (task 0 is not retrained).
# Log to Weights & Biases: add `-- --wandb --project cassle --entity <your-entity>`.
# Published setting: 4 GPU(s) x batch 256; lr is scaled by global batch / 256.
python3 main_continual.py \
    --dataset domainnet \
    --data_dir $DATA_DIR/domainnet \
    --split_strategy domain \
    --num_tasks 6 \
    --encoder resnet18 \
    --method byol \
    --strategy cassle \
    --distiller predictive \
    --distill_lamb 1.0 \
    --distill_proj_hidden_dim 2048 \
    --max_epochs 200 \
    --batch_size 256 \
    --optimizer sgd \
    --lars \
    --eta_lars 0.02 \
    --exclude_bias_n_norm \
    --scheduler warmup_cosine \
    --lr 0.6 \
    --classifier_lr 0.1 \
    --weight_decay 1e-5 \
    --crop_size 224 \
    --brightness 0.4 \
    --contrast 0.4 \
    --saturation 0.2 \
    --hue 0.1 \
    --gaussian_prob 1.0 0.1 \
    --solarization_prob 0.0 0.2 \
    --proj_hidden_dim 4096 \
    --output_dim 256 \
    --pred_hidden_dim 8192 \
    --base_tau_momentum 0.99 \
    --final_tau_momentum 1.0 \
    --accelerator gpu \
    --devices 4 \
    --precision 16-mixed \
    --num_workers 5 \
    --name byol-domainnet-6T-predictive \
    --save_checkpoint \
    ${PRETRAINED_PATH:+--pretrained_model "$PRETRAINED_PATH" --task_idx 1}
