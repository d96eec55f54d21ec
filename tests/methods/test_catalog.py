"""The method catalogue is generated from the registry: every method appears once, with its own family."""

from __future__ import annotations

import pytest

from cassle.args import parse_args
from cassle.losses.distill import DISTILL_LOSSES
from cassle.methods import METHODS
from cassle.methods.catalog import families, format_catalog, method_rows


def test_one_row_per_registered_method_with_its_declared_family() -> None:
    rows = method_rows()
    assert [r["method"] for r in rows] == sorted(METHODS)
    for r in rows:
        cls = METHODS[r["method"]]
        assert r["family"] == cls.family and r["class"] == cls.__name__
        assert r["views"] == str(cls.num_views)


def test_families_partition_the_methods() -> None:
    fam = families()
    assert sorted(m for names in fam.values() for m in names) == sorted(METHODS)
    assert "barlow_twins" in fam["decorrelative"] and "swav" in fam["knowledge"]


def test_format_names_every_method_and_marks_families_without_a_distiller() -> None:
    text = format_catalog()
    for name in METHODS:
        assert name in text
    undistillable = [f for f in families() if f not in DISTILL_LOSSES]
    assert undistillable == ["reconstructive"]
    assert "reconstructive: mae  (no distiller" in text


def test_list_methods_flag_prints_the_catalogue_and_exits_cleanly(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        parse_args(["--list_methods"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == format_catalog()
