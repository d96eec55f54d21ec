"""cassle/config.py: typed configs own the defaults and their checks; args.json converts both ways."""

from __future__ import annotations

import dataclasses
import functools
import json
import math

import pytest

import main_continual
from cassle.args import parse_args
from cassle.args.parser import build_parser
from cassle.config import (
    COMPONENTS,
    AugmentationConfig,
    DataConfig,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    ReplayConfig,
    RunConfig,
    TrainerConfig,
    hparams_class,
    upgrade_flat,
)
from cassle.methods import METHODS
from cassle.strategies import STRATEGIES, build_model_class
from tests.helpers import TINY

#: component fields whose command-line default is set elsewhere on purpose: a method's published projector
#: sizes (add_method_args); values derived at start-up have no flag at all
NOT_ON_THE_COMMAND_LINE = {"num_views", "return_raw", "mean", "std", "num_classes"}


def _parser_defaults(method: str = "barlow_twins", strategy: str = "er") -> dict:
    p = build_parser(METHODS[method], STRATEGIES[strategy])
    out: dict = {}
    for a in p._actions:  # the first action of a dest holds its default (--gpus is a hidden alias of --devices)
        if a.dest != "help":
            out.setdefault(a.dest, a.default)
    return out


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_the_command_line_takes_every_default_from_the_typed_config(name):
    comp = COMPONENTS[name]
    cli = _parser_defaults()
    for f in dataclasses.fields(comp):
        if f.name in NOT_ON_THE_COMMAND_LINE or f.name in ("proj_hidden_dim", "output_dim", "crop_size"):
            continue
        if f.name in ("lars", "grad_clip_lars", "no_labels", "gpu_augment", "dali", "online", "save_checkpoint"):
            assert cli[f.name] is False and f.default is False
            continue
        assert f.name in cli, f"{name}.{f.name} has no --{f.name}"
        want = list(f.default) if isinstance(f.default, tuple) else f.default
        assert cli[f.name] == want, f"--{f.name}: command line {cli[f.name]!r}, {comp.__name__} {f.default!r}"


def test_defaults_that_used_to_disagree_now_have_one_home():
    from cassle.data.datamodule import ContinualDataModule
    from cassle.data.transforms import AUGMENTATION_DEFAULTS

    cli = _parser_defaults()
    model = METHODS["barlow_twins"].from_flat(
        dict(encoder="resnet9", base_width=4, crop_size=8, proj_hidden_dim=8, output_dim=8)
    )
    assert model.max_epochs == cli["max_epochs"] == OptimConfig.max_epochs == 500  # was 100 in methods/base.py
    assert ContinualDataModule.from_flat({"dataset": "digits"}).num_workers == cli["num_workers"] == 2  # was 0
    assert AUGMENTATION_DEFAULTS["solarization_prob"] == AugmentationConfig.solarization_prob == (0.0, 0.2)
    assert cli["solarization_prob"] == [0.0, 0.2]


def test_flat_round_trip_of_a_parsed_command_line():
    args = parse_args(TINY + ["--strategy", "cassle", "--distill_temperature", "0.3"])
    model_cls = build_model_class(args.method, args.strategy)
    cfg = RunConfig.from_flat(vars(args), model_cls.all_method_args(), model_cls.all_strategy_args())
    assert isinstance(cfg.data, DataConfig) and cfg.data.dataset == "digits" and cfg.data.num_workers == 0
    assert cfg.optim.lr == 0.05 and cfg.model.encoder == "resnet9" and cfg.trainer.seed == 3
    assert cfg.eval.probes == ("knn", "ridge") and cfg.augmentation.solarization_prob == (0.0, 0.2)
    # the method's and the strategy's keys live in separate objects: no shared namespace
    assert cfg.strategy.distill_temperature == 0.3 and not hasattr(cfg.strategy, "lamb")
    assert cfg.method.lamb == pytest.approx(0.0051) and not hasattr(cfg.method, "distill_temperature")
    flat = json.loads(json.dumps(cfg.to_flat(), default=str))
    for k, v in json.loads(json.dumps(vars(args), default=str)).items():
        assert flat[k] == v, k
    again = RunConfig.from_flat(flat, model_cls.all_method_args(), model_cls.all_strategy_args())
    assert again == cfg


def test_components_receive_their_own_typed_config():
    model_cls = build_model_class("simclr", "cassle")
    flat = dict(encoder="resnet9", base_width=4, crop_size=8, proj_hidden_dim=8, output_dim=8, lr="0.2")
    m = model_cls.from_flat(flat)
    assert isinstance(m.optim_cfg, OptimConfig) and m.optim_cfg.lr == 0.2 and m.lr == 0.2  # converted from text
    assert isinstance(m.model_cfg, ModelConfig) and m.model_cfg.encoder == "resnet9"
    assert m.method_cfg.temperature == m.temperature == METHODS["simclr"].all_method_args()["temperature"][1]
    assert m.strategy_cfg.distill_temperature is None and m.distill_temperature == 0.2  # family default
    assert not hasattr(m, "cfg")  # no flat dict travels with the model
    er = build_model_class("byol", "er").from_flat(
        dict(encoder="resnet9", base_width=4, crop_size=8, mem_size=7, seed=11)
    )
    assert isinstance(er.replay_cfg, ReplayConfig) and er.replay_cfg.mem_size == 7 and er.replay_seed == 11


def test_each_layer_takes_only_the_parts_it_declares(monkeypatch):
    """``from_config`` hands each layer of a composed class its declared RunConfig parts, keyword by keyword:
    the replay layer gets replay / data / augmentation, the strategy its hyperparameters, the method
    model / optim / method; a flat key is refused, naming the converters."""
    cls = build_model_class("byol", "er")
    assert cls.config_part_names() == ("model", "optim", "method", "strategy", "replay", "data", "augmentation")
    run = RunConfig.from_flat(
        dict(encoder="resnet9", base_width=4, crop_size=8, mem_size=9, gpu_augment=True, min_scale=[0.5]),
        cls.all_method_args(),
        cls.all_strategy_args(),
    )
    seen: dict[str, set] = {}
    from cassle.methods.base import BaseMethod
    from cassle.strategies.base import StrategyMixin
    from cassle.strategies.replay import ReplayMixin

    def spying(layer):
        original = layer.__init__

        @functools.wraps(original)  # Lightning's save_hyperparameters reads the __init__ signature
        def spy(self, **parts):
            seen[layer.__name__] = set(parts)
            original(self, **parts)

        return spy

    for layer in (BaseMethod, StrategyMixin, ReplayMixin):
        monkeypatch.setattr(layer, "__init__", spying(layer))
    m = cls.from_config(run)
    assert seen["ReplayMixin"] == {"model", "optim", "method", "strategy", "replay", "data", "augmentation", "seed"}
    assert seen["StrategyMixin"] == {"model", "optim", "method", "strategy", "seed"}
    assert seen["BaseMethod"] == {"model", "optim", "method", "seed"}
    assert m.replay_cfg is run.replay and m.model_cfg is run.model and m.stream_aug_cfg.min_scale == (0.5,)
    assert m.stream_gpu_augment is True and m.buffer.mem_size == 9
    with pytest.raises(TypeError, match=r"not flat keys \(lr\).*from_flat\(cfg\) or \.from_config\(run\)"):
        METHODS["byol"](lr=0.1)


@pytest.mark.parametrize(
    "comp, values, needle",
    [
        (DataConfig, {"train_fraction": 0.0}, "--train_fraction"),
        (DataConfig, {"num_workers": -1}, "--num_workers"),
        (DataConfig, {"split_strategy": "tasks"}, "--split_strategy"),
        (DataConfig, {"gpu_augment": True, "dali": True}, "exclusive"),
        (OptimConfig, {"lr": math.nan}, "--lr"),
        (OptimConfig, {"optimizer": "adam"}, "optimizer"),
        (OptimConfig, {"optimizer": "adamw", "lars": True}, "lars"),
        (OptimConfig, {"weight_decay": -1e-4}, "--weight_decay"),
        (AugmentationConfig, {"hue": (0.7,)}, "--hue"),
        (AugmentationConfig, {"min_scale": (0.9,), "max_scale": (0.5,)}, "--min_scale"),
        (AugmentationConfig, {"grayscale_prob": (1.5,)}, "probability"),
        (TrainerConfig, {"seed": -1}, "--seed"),
        (EvalConfig, {"knn_k": 0}, "--knn_k"),
        (ReplayConfig, {"replay_batch_size": 0}, "--replay_batch_size"),
    ],
)
def test_each_component_refuses_its_bad_values(comp, values, needle):
    with pytest.raises(ValueError, match=needle.replace("-", r"\-")):
        comp(**values)


def test_from_flat_names_the_key_of_a_value_of_the_wrong_type():
    with pytest.raises(ValueError, match="--batch_size: 'many'"):
        OptimConfig.from_flat({"batch_size": "many"})
    with pytest.raises(ValueError, match="--max_epochs"):
        OptimConfig.from_flat({"max_epochs": 2.5})
    hp = hparams_class("T", {"omega": (float, 0.1, ""), "crit": (str, "cosine", "", ("cosine", "mse"))})
    assert hp.from_flat({"omega": "0.5"}).omega == 0.5 and hp.from_flat({}).crit == "cosine"
    with pytest.raises(ValueError, match="--crit must be one of cosine, mse"):
        hp.from_flat({"crit": "l1"})


def test_an_old_args_json_is_upgraded():
    old = {"backbone": "resnet9", "proj_output_dim": 64, "brightness": 0.3, "precision": "32-true"}
    up = upgrade_flat(old)
    assert up["encoder"] == "resnet9" and up["output_dim"] == 64 and up["brightness"] == [0.3]
    cfg = RunConfig.from_flat(old)
    assert cfg.model.encoder == "resnet9" and cfg.augmentation.brightness == (0.3,)
    assert cfg.data.train_fraction == 1.0  # an option that version did not have takes today's default


@pytest.mark.slow
def test_a_run_written_by_an_earlier_version_still_resumes(tmp_path, capsys):
    """args.json of an earlier version (CaSSLe key names, scalar augmentations, no newer options) matches the
    same command: the rerun resumes (here: finds the run finished) instead of refusing other arguments."""
    argv = TINY + ["--checkpoint_dir", str(tmp_path / "run"), "--num_tasks", "1", "--max_epochs", "1"]
    argv += ["--probes", "none", "--no_baseline"]
    assert main_continual.main(argv) == 0
    capsys.readouterr()
    path = tmp_path / "run" / "args.json"
    saved = json.loads(path.read_text())
    saved["backbone"] = saved.pop("encoder")
    saved["proj_output_dim"] = saved.pop("output_dim")
    saved["brightness"] = saved["brightness"][0]
    for newer in ("train_fraction", "gpu_augment", "dali", "domain_order", "no_baseline"):
        saved.pop(newer)
    path.write_text(json.dumps(saved))
    assert main_continual.main(argv) == 0, capsys.readouterr().err
    assert "already finished" in capsys.readouterr().out
    # a real change is still refused, naming it
    assert main_continual.main([*argv, "--lr", "0.07"]) == 2
    assert "--lr 0.05 -> 0.07" in capsys.readouterr().err


def test_contracts_list_every_method_argument():
    """docs/contracts.md names every method-specific key a registered method adds to the command line."""
    import re
    from pathlib import Path

    from cassle.methods import METHODS

    text = (Path(__file__).resolve().parent.parent / "docs" / "contracts.md").read_text()
    section = text[text.index("Method-specific (added by") : text.index("Replay / online (always present)")]
    documented = {w for chunk in re.findall(r"`([^`]*)`", section) for w in chunk.split()}
    keys = {k for cls in METHODS.values() for k in cls.all_method_args()}
    assert keys <= documented, sorted(keys - documented)
