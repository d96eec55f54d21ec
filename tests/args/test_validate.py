"""Argument validation that spans components: input paths vs replay / online."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import main_continual
from cassle.args import ArgumentError, parse_args

BASE = ["--dataset", "digits", "--encoder", "resnet9", "--base_width", "4", "--num_tasks", "2"]
FOLDER = [
    "--dataset",
    "custom",
    "--data_dir",
    "unused",
    "--encoder",
    "resnet9",
    "--base_width",
    "4",
    "--num_tasks",
    "1",
]


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--dali", "--strategy", "er"], "--dali does not support --strategy er"),
        (["--dali", "--online"], "--dali does not support --online"),
    ],
)
def test_dali_with_replay_or_online_is_refused(extra, needle):
    with pytest.raises(ArgumentError, match=needle):
        parse_args(FOLDER + extra)


@pytest.mark.parametrize(
    "extra",
    [
        ["--strategy", "finetune"],
        ["--strategy", "cassle"],
        ["--strategy", "er"],
        ["--strategy", "minred"],
        ["--strategy", "lump", "--online", "--mb_passes", "2"],
    ],
)
def test_batched_augment_is_accepted_with_every_strategy_and_online(extra):
    assert parse_args(BASE + ["--gpu_augment"] + extra).gpu_augment


# Values that passed validation and crashed later (issue 10): each is refused by parse_args, before any file.
BAD_VALUES = [
    (["--base_width", "0"], "--base_width"),
    (["--num_workers", "-1"], "--num_workers"),
    (["--output_dim", "-1"], "--output_dim"),
    (["--proj_hidden_dim", "0"], "--proj_hidden_dim"),
    (["--weight_decay", "-1"], "--weight_decay"),
    (["--min_scale", "0.9", "--max_scale", "0.1"], "min_scale"),
    (["--brightness", "-1"], "--brightness"),
    (["--grayscale_prob", "2"], "--grayscale_prob"),
    (["--method", "simclr", "--temperature", "0"], "--temperature"),
    (["--seed", "-1"], "--seed"),
    (["--check_val_every_n_epoch", "0"], "--check_val_every_n_epoch"),
    (["--num_nodes", "0"], "--num_nodes"),
    (["--knn_k", "0"], "--knn_k"),
    (["--knn_temperature", "0"], "--knn_temperature"),
    (["--eval_batch_size", "0"], "--eval_batch_size"),
    (["--checkpoint_frequency", "0"], "--checkpoint_frequency"),
    (["--warmup_epochs", "-5"], "--warmup_epochs"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--name", "../../.."], "--name"),
    (["--max_epoch", "3"], "max_epoch"),  # no abbreviations: a typo is an error
    # found in the audit of issue 10: each crashed after the data was loaded (or a task trained)
    (["--encoder", "vit_tiny", "--crop_size", "7"], "--encoder vit_tiny cannot take 7x7 images"),
    (["--crop_size", "7"], "--encoder resnet9 cannot take 7x7 images"),  # its pooling needs 8 px
    (["--accelerator", "tpu"], "--accelerator must be one of auto, cpu, gpu, cuda"),
    (["--devices", "0"], "--devices must name at least one device"),
    (["--momentum", "-5"], r"--momentum .* \[0, 1\)"),
    (["--eta_lars", "-1"], "--eta_lars"),
    (["--lr_decay_steps", "0"], "--lr_decay_steps"),
    (["--method", "vicreg", "--sim_loss_weight", "nan"], "--sim_loss_weight must be a finite number"),
    (["--strategy", "cassle", "--distill_lamb", "inf"], "--distill_lamb must be a finite number"),
    # the methods' own ranges (check_cfg on the typed hyperparameters)
    (["--method", "byol", "--base_tau_momentum", "2"], r"--base_tau_momentum is an EMA momentum: .* \[0, 1\]"),
    (["--method", "dino", "--final_tau_momentum", "-0.1"], "--final_tau_momentum is an EMA momentum"),
    (["--method", "swav", "--sk_iters", "0"], "--sk_iters must be at least 1"),
    (["--method", "swav", "--sk_epsilon", "0"], "--sk_epsilon .* give a value > 0"),
]


@pytest.mark.parametrize("extra, needle", BAD_VALUES)
def test_bad_values_are_refused_before_any_work(extra, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ArgumentError, match=needle):
        parse_args(BASE + extra)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_checkpoint_dir_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(ArgumentError, match="--checkpoint_dir .* is a file"):
        parse_args(BASE + ["--checkpoint_dir", str(f)])


@pytest.mark.parametrize("flag", ["tensorboard", "wandb"])
def test_a_logger_without_its_package_is_refused_naming_the_install(flag, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == flag else real(name, *a))
    with pytest.raises(ArgumentError, match=rf"--{flag} needs the {flag} package: pip install 'cassle\[{flag}\]'"):
        parse_args(BASE + [f"--{flag}"])


def test_the_encoder_check_traces_shapes_and_accepts_what_works():
    for extra in (["--crop_size", "8"], ["--encoder", "vit_tiny", "--crop_size", "8"], ["--encoder", "resnet18"]):
        assert parse_args(BASE + extra).crop_size in (8, 16)


def test_a_missing_gpu_stops_the_run_before_any_file_naming_the_fix(tmp_path, capsys):
    """Issue 10/12: ``--accelerator gpu`` on a machine without one crashed in the first probe, after args.json
    was written. It stops now with one line saying how to run on the CPU; ``auto`` takes the CPU here. (On a GPU
    machine the same check refuses more --devices than it has.)"""
    run = tmp_path / "run"
    if torch.cuda.is_available():
        extra = ["--devices", str(torch.cuda.device_count() + 1)]
        needle, fix = "asks for more GPUs than this machine has", f"--devices {torch.cuda.device_count()}"
    else:
        extra, needle, fix = (
            ["--accelerator", "gpu"],
            "--accelerator gpu: this machine has no usable GPU",
            "--accelerator cpu",
        )
    assert main_continual.main(BASE + ["--checkpoint_dir", str(run), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and needle in err and fix in err
    assert not run.exists()  # nothing written: the corrected command is not refused as "other arguments"
    # validated for another machine (job_launcher.py --mode slurm on a login node): this machine is not asked
    accepted = parse_args(BASE + extra, check_machine=False)
    n = torch.cuda.device_count()
    assert (accepted.accelerator, accepted.devices) == (("auto", n + 1) if n else ("gpu", 1))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_a_gpu_bash_files_settings_on_a_cpu_machine_get_one_error_with_both_fixes(tmp_path, capsys):
    """The published bash files ask for ``--accelerator gpu --precision 16-mixed``: the missing GPU's error named
    only ``--accelerator cpu``, and the corrected command then stopped on fp16. Following the one error works."""
    from cassle.run_plan import prepare_run

    run = tmp_path / "run"
    gpu = ["--accelerator", "gpu", "--precision", "16-mixed"]
    assert main_continual.main(BASE + ["--checkpoint_dir", str(run), *gpu]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pass --accelerator cpu --precision 32" in err
    assert "through job_launcher.py: -- --accelerator cpu --precision 32" in err
    fixed = parse_args(BASE + ["--checkpoint_dir", str(run), *gpu, "--accelerator", "cpu", "--precision", "32"])
    prepare_run(fixed)  # the corrected command passes every check that runs before training
    assert not run.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: the slow test below drops that right")
def test_a_read_only_checkpoint_dir_is_refused_by_validation(tmp_path, monkeypatch):
    ro = tmp_path / "shared"
    ro.mkdir()
    ro.chmod(0o555)
    monkeypatch.chdir(ro)  # the default checkpoint_dir, experiments/<name>, would be created here
    with pytest.raises(ArgumentError, match=f"would be created in {ro}, which is not writable"):
        parse_args(BASE)
    with pytest.raises(ArgumentError, match=f"{ro} is not writable .*--checkpoint_dir"):
        parse_args(BASE + ["--checkpoint_dir", str(ro)])
    assert list(ro.iterdir()) == []


@pytest.mark.slow
def test_a_read_only_checkpoint_dir_is_one_line_before_any_work(tmp_path):
    """A real 0555 folder (as root, run without root's write-anywhere capability): main_continual.py stops with
    one line naming the folder, not a PermissionError traceback from the run lock."""
    ro = tmp_path / "shared"
    ro.mkdir()
    ro.chmod(0o555)
    cmd = [sys.executable, "main_continual.py", *BASE, "--checkpoint_dir", str(ro / "run")]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot drop root's write-anywhere capability")
        cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *cmd]
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=repo, timeout=300, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in done.stderr
    assert f"{ro / 'run'} would be created in {ro}, which is not writable" in err[0] and "--checkpoint_dir" in err[0]
    assert list(ro.iterdir()) == []
