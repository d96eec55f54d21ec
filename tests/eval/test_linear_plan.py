"""cassle/eval/linear_plan.py: what ``main_linear.py`` accepts, here checkpoints of solo-learn and CaSSLe."""

from __future__ import annotations

import json

import pytest
import torch

import main_linear
from cassle.args.linear import parse_linear_args
from cassle.eval.linear_plan import prepare_linear
from tests.helpers import write_foreign_checkpoint

FAST = ["--max_epochs", "1", "--batch_size", "128", "--num_workers", "0", "--no_progress_bar", "--accelerator", "cpu"]
ARCH = ["--encoder", "resnet9", "--base_width", "4", "--crop_size", "8"]


@pytest.fixture
def foreign(tmp_path):
    path = tmp_path / "solo" / "byol-cifar-ep=999.ckpt"
    path.parent.mkdir()
    state = write_foreign_checkpoint(path, prefix="encoder.")  # the CaSSLe repository's key names
    # solo-learn / CaSSLe write their own args.json next to the checkpoint: not cassle's, so never read
    (path.parent / "args.json").write_text(json.dumps({"dataset": "cifar100", "num_tasks": 5, "seed": 5}))
    return path, state


def test_main_linear_evaluates_a_foreign_checkpoint(foreign, capsys):
    path, state = foreign
    argv = ["--pretrained_model", str(path), *ARCH, "--dataset", "digits", "--num_tasks", "2", *FAST]
    plan = prepare_linear(parse_linear_args(argv))
    assert all(torch.equal(plan.backbone.state_dict()[k], v) for k, v in state.items())
    assert plan.info["dataset"] == "digits" and plan.info["num_tasks"] == 2
    assert main_linear.main(argv) == 0, capsys.readouterr().err
    saved = json.loads((path.parent / "linear" / path.stem / "linear_results.json").read_text())
    assert saved["method"] == "unknown (foreign checkpoint)" and saved["foreign_checkpoint"] is True
    assert saved["encoder"] == "resnet9" and saved["pretrained_model"] == str(path.resolve())
    assert "foreign checkpoint" in capsys.readouterr().out


@pytest.mark.parametrize(
    "drop, needle", [("--dataset", "pass --dataset"), ("--encoder", "pass --encoder")], ids=["dataset", "encoder"]
)
def test_main_linear_foreign_checkpoint_asks_for_what_it_does_not_record(foreign, capsys, drop, needle):
    path, _ = foreign
    argv = ["--pretrained_model", str(path), *ARCH, "--dataset", "digits", *FAST]
    i = argv.index(drop)
    assert main_linear.main(argv[:i] + argv[i + 2 :]) == 2
    err = capsys.readouterr().err
    assert needle in err and "foreign" in err and "Traceback" not in err


def test_main_linear_foreign_checkpoint_with_the_wrong_encoder(foreign, capsys):
    path, _ = foreign
    argv = ["--pretrained_model", str(path), "--encoder", "resnet18", "--base_width", "4", "--crop_size", "8"]
    assert main_linear.main([*argv, "--dataset", "digits", *FAST]) == 2
    err = capsys.readouterr().err
    assert "resnet18 lacks" in err and "--encoder resnet9 --base_width 4" in err
