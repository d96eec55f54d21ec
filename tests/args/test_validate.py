"""Argument validation that spans components: input paths vs replay / online."""

from __future__ import annotations

import pytest

from cassle.args import ArgumentError, parse_args

BASE = ["--dataset", "digits", "--encoder", "resnet9", "--base_width", "4", "--num_tasks", "2"]


@pytest.mark.parametrize("extra, needle", [
    (["--gpu_augment", "--strategy", "er"], "--gpu_augment does not support --strategy er"),
    (["--gpu_augment", "--online"], "--gpu_augment does not support --online"),
])
def test_batched_augment_with_replay_or_online_is_refused(extra, needle):
    with pytest.raises(ArgumentError, match=needle):
        parse_args(BASE + extra)


def test_batched_augment_with_finetune_and_cassle_is_accepted():
    for strategy in ("finetune", "cassle"):
        assert parse_args(BASE + ["--gpu_augment", "--strategy", strategy]).gpu_augment
