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
