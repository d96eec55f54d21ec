"""cassle/run_plan.py: what ``prepare_run`` accepts before a run trains (here: ``--pretrained_model``)."""

from __future__ import annotations

import pytest
import torch

import main_continual
from cassle.args import parse_args
from cassle.checkpoint import load_weights
from cassle.run_plan import prepare_run
from tests.helpers import TINY, write_foreign_checkpoint


@pytest.mark.parametrize("method", ["barlow_twins", "byol"])  # byol: its momentum backbone starts as the backbone
def test_pretrained_model_accepts_a_foreign_checkpoint(tmp_path, method, capsys):
    path = tmp_path / "solo" / "byol-last.ckpt"
    path.parent.mkdir()
    state = write_foreign_checkpoint(path)  # resnet9, width 4, crop 8: what TINY builds
    argv = TINY + ["--checkpoint_dir", str(tmp_path / "run"), "--num_tasks", "2", "--method", method]
    plan = prepare_run(parse_args(argv + ["--pretrained_model", str(path), "--task_idx", "1"]))
    assert plan.pretrained["foreign"] and plan.start_task == 1
    model = plan.model_cls.from_config(plan.config)
    projector = {k: v.clone() for k, v in model.projector.state_dict().items()}
    load_weights(model, plan.pretrained)
    assert all(torch.equal(model.backbone.state_dict()[k], v) for k, v in state.items())
    assert all(torch.equal(model.projector.state_dict()[k], v) for k, v in projector.items())  # not in the file
    if hasattr(model, "momentum_backbone"):
        assert all(torch.equal(model.momentum_backbone.state_dict()[k], v) for k, v in state.items())
    assert "foreign checkpoint" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()  # prepare_run writes nothing


def test_pretrained_foreign_checkpoint_of_another_encoder_stops_before_writing(tmp_path, capsys):
    path = tmp_path / "last.ckpt"
    write_foreign_checkpoint(path, "resnet18", 8, 4)
    argv = TINY + ["--checkpoint_dir", str(tmp_path / "run"), "--num_tasks", "2", "--pretrained_model", str(path)]
    assert main_continual.main(argv) == 2
    err = capsys.readouterr().err
    assert "--encoder resnet18 --base_width 4" in err and "resnet9" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
