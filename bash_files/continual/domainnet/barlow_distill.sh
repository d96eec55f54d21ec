#!/bin/bash
# Paper setting (CaSSLe, Fini et al., CVPR 2022): CaSSLe decorrelative distillation for barlow_twins on domainnet, domain-incremental, 6 tasks.
# Run: DATA_DIR=/path/to/datasets python job_launcher.py --script bash_files/continual/domainnet/barlow_distill.sh [--mode slurm] [-- --max_epochs 1]
# CaSSLe workflow: with PRETRAINED_PATH=experiments/<run>/task0.ckpt set, the run starts at task 1 from that checkpoint (task 0 is not retrained).
# Log to Weights & Biases: add `-- --wandb --project cassle --entity <your-entity>`.
# Published setting: 4 GPU(s) x batch 64; lr is scaled by global batch / 256.
python3 main_continual.py \
    --dataset domainnet \
    --data_dir $DATA_DIR/domainnet \
    --split_strategy domain \
    --num_tasks 6 \
    --encoder resnet18 \
    --method barlow_twins \
    --strategy cassle \
    --distiller decorrelative \
    --distill_lamb 1.0 \
    --distill_proj_hidden_dim 2048 \
    --distill_barlow_lamb 0.005 \
    --distill_scale_loss 0.1 \
    --max_epochs 200 \
    --batch_size 64 \
    --optimizer sgd \
    --lars \
    --eta_lars 0.02 \
    --exclude_bias_n_norm \
    --scheduler warmup_cosine \
    --lr 0.4 \
    --classifier_lr 0.1 \
    --weight_decay 1e-4 \
    --crop_size 224 \
    --brightness 0.4 \
    --contrast 0.4 \
    --saturation 0.2 \
    --hue 0.1 \
    --gaussian_prob 1.0 0.1 \
    --solarization_prob 0.0 0.2 \
    --proj_hidden_dim 2048 \
    --output_dim 2048 \
    --scale_loss 0.1 \
    --accelerator gpu \
    --devices 4 \
    --precision 16-mixed \
    --num_workers 5 \
    --name barlow-domainnet-6T-decorrelative \
    --save_checkpoint \
    ${PRETRAINED_PATH:+--pretrained_model "$PRETRAINED_PATH" --task_idx 1}
