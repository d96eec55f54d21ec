"""cassle/registry.py: a method or strategy registers itself, in its own module, and every strategy wraps it."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch.nn as nn

from cassle.args import parse_args
from cassle.methods import BYOL, METHODS, BaseMethod
from cassle.registry import Registry
from cassle.strategies import STRATEGIES, build_model_class
from tests.helpers import TINY


def test_every_module_registered_its_class_under_its_name():
    assert METHODS["byol"] is BYOL and BYOL.method_name == "byol"
    assert {"barlow_twins", "simclr", "swav", "vicreg", "mae", "emp_ssl"} <= set(METHODS)
    assert {"finetune", "cassle", "er", "lump", "minred", "aep", "arp", "apre", "cassle_r"} == set(STRATEGIES)
    for name, cls in STRATEGIES.items():
        assert cls.strategy_name == name
    # bases are not registered
    assert "base" not in STRATEGIES and "replay" not in STRATEGIES and BaseMethod not in METHODS.values()


def test_a_taken_name_is_refused():
    reg = Registry("thing", attribute="thing_name")
    reg.register("a")(type("A", (), {}))
    with pytest.raises(ValueError, match="thing name 'a' is taken by A"):
        reg.register("a")(type("B", (), {}))


@pytest.fixture
def new_method():
    """A method defined the way a user adds one: one class, one decorator, nothing else edited."""

    @METHODS.register("tiny_new_method")
    class TinyNew(BaseMethod):
        family: ClassVar[str] = "predictive"
        method_args: ClassVar[dict] = {"tiny_weight": (float, 0.5, "weight of nothing")}

        def build_projector(self) -> nn.Module:
            return nn.Linear(self.num_features, self.output_dim)

    yield TinyNew
    del METHODS["tiny_new_method"]


def test_a_new_method_is_on_the_command_line_and_wrapped_by_every_strategy(new_method):
    args = parse_args([*TINY, "--method", "tiny_new_method", "--tiny_weight", "0.25", "--strategy", "cassle"])
    assert args.method == "tiny_new_method" and args.tiny_weight == 0.25
    for strategy in STRATEGIES:
        model_cls = build_model_class("tiny_new_method", strategy)
        assert issubclass(model_cls, new_method)
    model = build_model_class("tiny_new_method", "cassle").from_flat(vars(args))
    assert model.method_cfg.tiny_weight == 0.25 and model.distiller == "predictive"
