"""bench/cpu_speed.py runs its variants on a tiny step and reports one finite ratio per variant."""

from __future__ import annotations

import argparse
import importlib.util
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location("cpu_speed", REPO / "bench" / "cpu_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ratios_for_each_variant_on_a_tiny_step(capsys) -> None:
    bench = _load()
    argv = ["--variants", "fp32", "channels_last", "--crop_size", "8", "--batch_size", "4", "--proj_dim", "16"]
    ratios = bench.main(argv + ["--steps", "1", "--reps", "2", "--warmup", "1"])
    assert set(ratios) == {"channels_last"} and math.isfinite(ratios["channels_last"]) and ratios["channels_last"] > 0
    assert "cpu_speed[channels_last] time/fp32 = " in capsys.readouterr().out


def test_base_width_sets_the_encoders_width() -> None:
    bench = _load()
    p = argparse.Namespace(method="barlow_twins", encoder="slim_resnet9", crop_size=8, batch_size=4, proj_dim=16)
    narrow = bench.make_model(argparse.Namespace(**vars(p), base_width=4))
    default = bench.make_model(argparse.Namespace(**vars(p), base_width=None))
    # ResNet-9's stages double the first-stage width three times: 8 * base_width features
    assert narrow.backbone.num_features == 32
    assert default.backbone.num_features == 8 * 21


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(SystemExit):
        _load().main(["--variants", "fp64"])
