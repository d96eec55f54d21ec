#!/bin/bash
# Paper setting (CaSSLe, Fini et al., CVPR 2022): CaSSLe predictive_mse distillation for vicreg on imagenet100, class-incremental, 5 tasks.
# Run: DATA_DIR=/path/to/datasets python job_launcher.py --script bash_files/continual/imagenet-100/class/vicreg_distill.sh [--mode slurm] [-- --max_epochs 1]
# CaSSLe workflow: with PRETRAINED_PATH=experiments/<run>/task0.ckpt set, the run starts at task 1 from that checkpoint (task 0 is not retrained).
# Log to Weights & Biases: add `-- --wandb --project cassle --entity <your-entity>`.
# Published setting: 2 GPU(s) x batch 128; lr is scaled by global batch / 256.
python3 main_continual.py \
    --dataset imagenet100 \
    --data_dir $DATA_DIR/imagenet-100 \
    --split_strategy class \
    --num_tasks 5 \
    --encoder resnet18 \
    --method vicreg \
    --strategy cassle \
    --distiller predictive_mse \
    --distill_lamb 25.0 \
    --distill_proj_hidden_dim 2048 \
    --max_epochs 400 \
    --batch_size 128 \
    --optimizer sgd \
    --lars \
    --eta_lars 0.02 \
    --exclude_bias_n_norm \
    --scheduler warmup_cosine \
    --lr 0.4 \
    --classifier_lr 0.1 \
    --weight_decay 1e-4 \
    --crop_size 224 \
    --min_scale 0.2 \
    --brightness 0.4 \
    --contrast 0.4 \
    --saturation 0.2 \
    --hue 0.1 \
    --gaussian_prob 0.5 \
    --solarization_prob 0.1 \
    --proj_hidden_dim 2048 \
    --output_dim 2048 \
    --sim_loss_weight 25.0 \
    --var_loss_weight 25.0 \
    --cov_loss_weight 1.0 \
    --accelerator gpu \
    --devices 2 \
    --precision 16-mixed \
    --num_workers 5 \
    --name vicreg-imagenet100-5T-predictive_mse \
    --save_checkpoint \
    ${PRETRAINED_PATH:+--pretrained_model "$PRETRAINED_PATH" --task_idx 1}
