"""Sweep configs: reading and checking the JSON, expanding grids and seeds into runs, validating every run's
arguments before any starts."""

from __future__ import annotations

import itertools
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cassle.errors import SweepError  # noqa: F401  (re-exported)
from cassle.fileio import read_json_object

#: keys an experiment may have
EXPERIMENT_KEYS = ("name", "params", "hyperparams_search", "seeds")
#: top-level keys of a config
CONFIG_KEYS = ("output_dir", "common_params", "experiments")
#: arguments the sweep sets itself, one per run
OWNED_ARGS = ("checkpoint_dir", "name")
#: metrics of ``results/metrics.json`` reported per probe
METRICS = ("average_accuracy", "average_forgetting", "backward_transfer", "forward_transfer", "joint_accuracy")

#: how a child process runs main_continual.py (works from an installed package, not only a checkout)
CONTINUAL_COMMAND = ("-m", "cassle.cli")


@dataclass
class Run:
    """One expanded run of a sweep."""

    name: str
    experiment: str
    run_dir: Path
    params: dict[str, Any]
    grid: dict[str, Any]
    seed: int | None
    argv: list[str] = field(default_factory=list)
    num_tasks: int = 0
    status: str = "pending"
    error: str = ""
    seconds: float = 0.0

    def command(self) -> str:
        """The equivalent shell command."""
        return shlex.join(["python", "main_continual.py", *self.argv])


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and structurally check a sweep config (raises :class:`SweepError`)."""
    try:
        cfg = read_json_object(path)
    except ValueError as e:
        raise SweepError(f"config: {e}; a sweep config is a JSON object with {list(CONFIG_KEYS)}") from None
    check_config(cfg)
    return cfg


def check_config(cfg: Any) -> None:
    """Check the config's structure (types, known keys, non-empty grids)."""
    if not isinstance(cfg, dict):
        raise SweepError(f"a sweep config must be a JSON object with {list(CONFIG_KEYS)}, got {type(cfg).__name__}")
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        raise SweepError(f"unknown config key(s) {unknown}; allowed: {list(CONFIG_KEYS)}")
    common = cfg.get("common_params", {})
    if not isinstance(common, dict):
        raise SweepError("common_params must be an object of main_continual arguments")
    exps = cfg.get("experiments")
    if not isinstance(exps, list) or not exps:
        raise SweepError("the config needs a non-empty list 'experiments'")
    names = set()
    for i, exp in enumerate(exps):
        where = f"experiments[{i}]"
        if not isinstance(exp, dict):
            raise SweepError(f"{where} must be an object with keys {list(EXPERIMENT_KEYS)}")
        bad = sorted(set(exp) - set(EXPERIMENT_KEYS))
        if bad:
            raise SweepError(
                f"{where}: unknown key(s) {bad}; allowed: {list(EXPERIMENT_KEYS)} (arguments go under 'params')"
            )
        name = exp.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SweepError(f"{where} needs a non-empty 'name'")
        if name in names:
            raise SweepError(
                f"two experiments are named {name!r}; names must be unique (they name the run directories)"
            )
        names.add(name)
        where = f"experiment {name!r}"
        if not isinstance(exp.get("params", {}), dict):
            raise SweepError(f"{where}: 'params' must be an object of main_continual arguments")
        grid = exp.get("hyperparams_search")
        if grid is not None:
            if not isinstance(grid, dict) or not grid:
                raise SweepError(f"{where}: 'hyperparams_search' must be a non-empty object {{param: [values, ...]}}")
            for key, values in grid.items():
                if not isinstance(values, list) or not values:
                    raise SweepError(
                        f"{where}: hyperparams_search[{key!r}] is an empty grid; give a non-empty list of values"
                    )
        seeds = exp.get("seeds")
        if seeds is not None:
            if (
                not isinstance(seeds, list)
                or not seeds
                or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
            ):
                raise SweepError(f"{where}: 'seeds' must be a non-empty list of integers")
            if len(set(seeds)) != len(seeds):
                raise SweepError(f"{where}: 'seeds' repeats a seed: {seeds}")
        for source, keys in (
            ("common_params", common),
            ("params", exp.get("params", {})),
            ("hyperparams_search", grid or {}),
        ):
            for key in keys:
                if key in OWNED_ARGS:
                    raise SweepError(
                        f"{where}: '{key}' in {source} is set by the sweep for every run; remove it (use output_dir)"
                    )
                if seeds is not None and key == "seed":
                    raise SweepError(f"{where}: give the seed either in 'seeds' or as '{key}' in {source}, not both")


def to_argv(params: Mapping[str, Any]) -> list[str]:
    """``{"lr": 0.1, "wandb": True, "probes": ["knn"]}`` -> ``["--lr", "0.1", "--wandb", "--probes", "knn"]``."""
    argv: list[str] = []
    for key, value in params.items():
        flag = f"--{key}"
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv += [flag, *[str(v) for v in value]]
        elif isinstance(value, dict):
            raise SweepError(f"argument {key!r} has an object value {value!r}; give a number, string, bool or list")
        else:
            argv += [flag, str(value)]
    return argv


def _slug(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        value = "_".join(str(v) for v in value)
    return re.sub(r"[^A-Za-z0-9.+=-]+", "_", str(value)).strip("_") or "x"


def expand(
    cfg: Mapping[str, Any], output_dir: str | os.PathLike | None = None, config_name: str = "sweep"
) -> list[Run]:
    """Every run of the config: grid x seeds per experiment, with its directory and argv."""
    check_config(cfg)
    out = Path(output_dir or cfg.get("output_dir") or Path("experiments") / config_name)
    common = dict(cfg.get("common_params", {}))
    runs: list[Run] = []
    for exp in cfg["experiments"]:
        grid_spec = exp.get("hyperparams_search") or {}
        keys = list(grid_spec)
        points = [dict(zip(keys, combo)) for combo in itertools.product(*(grid_spec[k] for k in keys))] or [{}]
        seeds: list[int | None] = list(exp.get("seeds") or [None])
        for point in points:
            for seed in seeds:
                parts = [_slug(exp["name"])] + [f"{_slug(k)}={_slug(v)}" for k, v in point.items()]
                if seed is not None:
                    parts.append(f"seed{seed}")
                name = "-".join(parts)
                params = {**common, **exp.get("params", {}), **point}
                if seed is not None:
                    params["seed"] = seed
                run_dir = out / name
                params_with_dir = {**params, "name": name, "checkpoint_dir": str(run_dir)}
                runs.append(Run(name, exp["name"], run_dir, params, dict(point), seed, to_argv(params_with_dir)))
    seen: dict[str, str] = {}
    for r in runs:
        if r.name in seen:
            raise SweepError(
                f"two runs map to the same directory {r.run_dir} ({seen[r.name]} and {r.experiment}); "
                "rename an experiment or make the grid values distinct"
            )
        seen[r.name] = r.experiment
    return runs


def validate(runs: Sequence[Run]) -> None:
    """Parse every run's argv like ``main_continual`` would; the first bad one raises :class:`SweepError`."""
    from cassle.args import ArgumentError, parse_args
    from cassle.continual import args_to_cfg
    from cassle.rundir import changed_arguments
    from cassle.strategies import build_model_class

    for r in runs:
        try:
            args = parse_args(r.argv)
        except ArgumentError as e:
            raise SweepError(
                f"run {r.name!r} has a bad argument: {e}".replace(
                    "run `python main_continual.py --help`", "see `python main_continual.py --help`"
                )
            ) from None
        r.num_tasks = int(args.num_tasks)
        saved_file = r.run_dir / "args.json"
        if saved_file.exists():  # a rerun: the directory must hold this very run (else skip/resume would lie)
            try:
                saved = read_json_object(saved_file)
            except ValueError as e:
                raise SweepError(f"run {r.name!r}: {e}; delete {r.run_dir} to restart that run") from None
            diff = changed_arguments(saved, args_to_cfg(args), build_model_class(args.method, args.strategy))
            if diff:
                shown = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(diff.items())[:5])
                raise SweepError(
                    f"{r.run_dir} holds an earlier run of {r.name!r} with other arguments ({shown}); "
                    "use another output_dir or experiment name, or delete that directory"
                )
