"""cassle/checkpoint.py: loading is weights-only and every unreadable file is one clear CheckpointError."""

from __future__ import annotations

import pickle

import pytest
import torch

from cassle.checkpoint import CheckpointError, safe_torch_load


def test_round_trip(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "ok.ckpt")
    assert torch.equal(safe_torch_load(tmp_path / "ok.ckpt")["w"], torch.ones(2))


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        safe_torch_load(tmp_path / "nope.ckpt")


def test_empty_file_is_a_clear_error_not_an_index_error(tmp_path):
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.ckpt.*(empty|0 bytes)"):
        safe_torch_load(tmp_path / "empty.ckpt")


def test_truncated_file(tmp_path):
    torch.save({"w": torch.ones(1000)}, tmp_path / "t.ckpt")
    data = (tmp_path / "t.ckpt").read_bytes()
    (tmp_path / "t.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        safe_torch_load(tmp_path / "t.ckpt")


class _Bomb:
    def __reduce__(self):
        return (print, ("this would run",))


def test_pickle_bomb_refused_with_the_whole_warning(tmp_path):
    path = tmp_path / "bomb.ckpt"
    torch.save({"x": _Bomb()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError) as e:
        safe_torch_load(path)
    msg = str(e.value)
    assert "bomb.ckpt" in msg and "could run code" in msg and len(msg) < 600


# --------------------------------------------------------------------------- foreign checkpoints (issue 12)


def _stem_cifar_torchvision_resnet18():
    """solo-learn's / CaSSLe's ResNet-18: torchvision's, ``fc`` an Identity, CIFAR stem (3x3 conv1, no max-pool)."""
    from torch import nn
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    net.fc = nn.Identity()
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
    net.maxpool = nn.Identity()
    return net


@pytest.mark.parametrize("prefix", ["backbone.", "encoder."])  # solo-learn, the CaSSLe repository
def test_foreign_resnet18_of_solo_learn_and_cassle_maps_onto_ours(tmp_path, prefix):
    from cassle.backbones import build_backbone
    from cassle.checkpoint import load_task_checkpoint
    from cassle.eval.linear_model import backbone_state_dict, load_frozen_backbone

    theirs = _stem_cifar_torchvision_resnet18().state_dict()
    ours = build_backbone("resnet18", 32).state_dict()
    assert list(theirs) == list(ours) and all(theirs[k].shape == ours[k].shape for k in ours)
    sd = {f"{prefix}{k}": v for k, v in theirs.items()}
    sd |= {f"momentum_{prefix}{k}": torch.zeros_like(v) for k, v in theirs.items()}
    sd |= {"projector.0.weight": torch.zeros(4, 512), "classifier.bias": torch.zeros(100)}
    path = tmp_path / "solo.ckpt"
    torch.save({"state_dict": sd, "epoch": 999, "global_step": 1}, path)
    ckpt = load_task_checkpoint(path, encoder="resnet18", allow_foreign=True)
    assert ckpt["foreign"] and ckpt["method"] is None and ckpt["encoder"] == "resnet18"
    assert set(ckpt["state_dict"]) == {f"backbone.{k}" for k in theirs}  # projector, momentum, classifier dropped
    net = load_frozen_backbone("resnet18", 32, None, backbone_state_dict(ckpt["state_dict"]), str(path))
    assert all(torch.equal(net.state_dict()[k], theirs[k]) for k in theirs)


def test_foreign_plain_dict_of_tensors_is_accepted(tmp_path):
    from cassle.checkpoint import load_task_checkpoint

    path = tmp_path / "plain.pt"
    torch.save({"backbone.conv1.weight": torch.ones(4, 3, 3, 3), "head.w": torch.ones(2)}, path)
    ckpt = load_task_checkpoint(path, encoder="resnet9", allow_foreign=True)
    assert list(ckpt["state_dict"]) == ["backbone.conv1.weight"]


def test_foreign_checkpoint_needs_encoder_and_is_refused_as_a_run_s_own(tmp_path):
    from cassle.checkpoint import load_task_checkpoint
    from tests.helpers import write_foreign_checkpoint

    path = tmp_path / "last.ckpt"
    write_foreign_checkpoint(path)
    with pytest.raises(CheckpointError, match="--encoder"):
        load_task_checkpoint(path, allow_foreign=True)
    with pytest.raises(CheckpointError, match="not a cassle task checkpoint"):  # a run's own taskK.ckpt
        load_task_checkpoint(path, encoder="resnet9")


@pytest.mark.parametrize(
    "content", [{"state_dict": {}}, {"state_dict": {"projector.0.weight": torch.ones(2)}}, {}, [torch.ones(1)]]
)
def test_foreign_checkpoint_without_backbone_tensors_refused(tmp_path, content):
    from cassle.checkpoint import load_task_checkpoint

    path = tmp_path / "empty.ckpt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match="no backbone tensors") as e:
        load_task_checkpoint(path, encoder="resnet18", allow_foreign=True)
    assert "backbone." in str(e.value) and "encoder." in str(e.value)


def test_foreign_wrong_encoder_names_the_keys_and_the_fix(tmp_path):
    from cassle.checkpoint import check_backbone_state
    from tests.helpers import write_foreign_checkpoint

    state = write_foreign_checkpoint(tmp_path / "r9.ckpt", "resnet9", 8, 4)
    with pytest.raises(CheckpointError) as e:
        check_backbone_state("resnet18", 8, 4, state, "r9.ckpt", foreign=True)
    msg = str(e.value)
    assert "lacks" in msg and "backbone.layer1.0.conv1.weight" in msg and "resnet18 lacks" in msg
    assert "--encoder resnet9 --base_width 4" in msg  # the architecture the tensors fit
    with pytest.raises(CheckpointError) as e:  # names fit, shapes do not: the first mismatch
        check_backbone_state("resnet9", 8, 8, state, "r9.ckpt", foreign=True)
    msg = str(e.value)
    assert "'backbone.conv1.weight' has shape (4, 3, 3, 3)" in msg and "--base_width 4" in msg


def test_foreign_pickled_objects_refused_with_a_conversion_one_liner(tmp_path):
    """solo-learn's hyper_parameters are OmegaConf objects: weights_only=True refuses them (never
    weights_only=False here); the message gives the one line that converts a trusted file."""
    import argparse
    import re

    from cassle.checkpoint import load_task_checkpoint

    path = tmp_path / "solo-learn.ckpt"
    torch.save(
        {"state_dict": {"backbone.conv1.weight": torch.ones(4, 3, 3, 3)}, "hyper_parameters": argparse.Namespace()},
        path,
    )
    with pytest.raises(CheckpointError) as e:
        load_task_checkpoint(path, encoder="resnet9", allow_foreign=True)
    msg = str(e.value)
    assert "could run code" in msg and "weights_only=False" in msg and "trust" in msg
    code = re.search(r'python -c "([^"]+)"', msg).group(1)
    exec(code, {})  # what the user runs on a trusted file
    converted = tmp_path / "solo-learn-weights.ckpt"
    assert set(torch.load(converted, weights_only=True)) == {"state_dict"}
    assert list(load_task_checkpoint(converted, encoder="resnet9", allow_foreign=True)["state_dict"]) == [
        "backbone.conv1.weight"
    ]
