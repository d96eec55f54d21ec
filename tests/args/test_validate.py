"""Argument validation that spans components: input paths vs replay / online."""

from __future__ import annotations

import pytest

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
