"""Entry points: the bare command runs the README's demo; bad input is one line and status 2."""

from __future__ import annotations

import shlex
from pathlib import Path

import cassle.continual
from cassle import cli
from cassle.args import parse_args

REPO = Path(__file__).resolve().parent.parent


def _readme_first_command() -> list[str]:
    for line in (REPO / "README.md").read_text().splitlines():
        if "python main_continual.py" in line:
            return shlex.split(line.split("python main_continual.py", 1)[1])
    raise AssertionError("README has no main_continual.py command")


def test_demo_is_the_readmes_first_command() -> None:
    assert list(cli.DEMO_ARGS) == _readme_first_command()


def test_no_arguments_run_the_demo(monkeypatch, capsys) -> None:
    seen = []
    monkeypatch.setattr(cassle.continual, "run", lambda args: seen.append(args))
    assert cli.continual_main([]) == 0
    assert vars(seen[0]) == vars(parse_args(list(cli.DEMO_ARGS)))
    assert "embedded digits demo" in capsys.readouterr().out


def test_arguments_are_not_replaced_by_the_demo(monkeypatch) -> None:
    seen = []
    monkeypatch.setattr(cassle.continual, "run", lambda args: seen.append(args))
    assert cli.continual_main(["--dataset", "digits", "--max_epochs", "3"]) == 0
    assert seen[0].max_epochs == 3 and seen[0].encoder == "resnet18"


def test_bad_input_is_one_error_line_and_status_2(capsys) -> None:
    assert cli.continual_main(["--method", "no_such_method"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "no_such_method" in err[0]


def test_every_option_has_help_and_the_default_shows_once() -> None:
    from cassle.args.parser import build_parser
    from cassle.methods import METHODS
    from cassle.strategies import STRATEGIES

    for method in sorted(METHODS):
        for strategy in sorted(STRATEGIES):
            parser = build_parser(METHODS[method], STRATEGIES[strategy])
            missing = [a.option_strings for a in parser._actions if not a.help]
            assert not missing, (method, strategy, missing)
    text = build_parser(METHODS["byol"], STRATEGIES["cassle"]).format_help()
    assert "(default: None)" not in text and "--method X --strategy Y --help" in text


def test_every_main_linear_option_has_help() -> None:
    """``main_linear.py --help`` left 11 options without a line (so without their default)."""
    from cassle.args.linear import build_linear_parser

    parser = build_linear_parser()
    assert [a.option_strings for a in parser._actions if not a.help] == []
    assert "(default: 0.1)" in parser.format_help()


def test_no_parser_in_the_repository_accepts_abbreviations() -> None:
    """``--max_epoch 3`` must be an error, not ``--max_epochs 3``: every ``ArgumentParser`` (entry points, launcher,
    sweep, benchmarks, scripts) is built with ``allow_abbrev=False`` (``cassle.args.parser._Parser`` sets it)."""
    import ast

    offenders = []
    for path in sorted(REPO.rglob("*.py")):
        rel = path.relative_to(REPO)
        if rel.parts[0] in {"tests", ".venv", "build"} or rel.parts[0].startswith("."):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(rel))):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name not in {"ArgumentParser", "add_parser"}:
                continue
            kw = {k.arg: k.value for k in node.keywords}
            ok = isinstance(kw.get("allow_abbrev"), ast.Constant) and kw["allow_abbrev"].value is False
            if not ok and not (str(rel) == "cassle/args/parser.py" and name == "ArgumentParser"):
                offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []
    assert any(REPO.glob("bench/*.py"))  # the walk saw the benchmarks
