#!/bin/bash
# Paper setting (CaSSLe, Fini et al., CVPR 2022): fine-tuning baseline for barlow_twins on domainnet, domain-incremental, 6 tasks.
# Run: DATA_DIR=/path/to/datasets python job_launcher.py --script bash_files/continual/domainnet/barlow.sh [--mode slurm] [-- --max_epochs 1]
# Log to Weights & Biases: add `-- --wandb --project cassle --entity <your-entity>`.
# Published setting: 4 GPU(s) x batch 64; lr is scaled by global batch / 256.
python3 main_continual.py \
    --dataset domainnet \
    --data_dir $DATA_DIR/domainnet \
    --split_strategy domain \
    --num_tasks 6 \
    --encoder resnet18 \
    --method barlow_twins \
    --strategy finetune \
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
    --name barlow-domainnet-6T \
    --save_checkpoint
