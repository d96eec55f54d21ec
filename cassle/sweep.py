"""Experiment sweeps from a JSON config: grids, seeds, skip/resume, one results table.

``run_from_config.py`` is the command-line front; this module holds the logic.

A config is a JSON object::

    {
      "output_dir": "experiments/example",          # optional (default experiments/<config name>)
      "common_params": {"dataset": "digits", "num_tasks": 2, "max_epochs": 1},
      "experiments": [
        {"name": "barlow", "params": {"method": "barlow_twins"}, "seeds": [1, 2]},
        {"name": "simclr", "params": {"method": "simclr"},
         "hyperparams_search": {"lr": [0.05, 0.2], "temperature": [0.1, 0.2]}}
      ]
    }

Every key of ``common_params`` / ``params`` / ``hyperparams_search`` is a
``main_continual.py`` argument without its leading ``--``: ``true`` is a bare
flag, ``false`` / ``null`` leave the argument out, a list gives several values.
An experiment's ``params`` override ``common_params``; ``hyperparams_search``
expands into the cartesian product of its value lists (in the order written);
``seeds`` repeats every grid point once per seed (``--seed``).

Every run gets its own directory ``<output_dir>/<experiment>[-key=value...][-seed<s>]``
(passed as ``--checkpoint_dir`` and ``--name``); two runs mapping to the same
directory are a config error. Every expanded argument list is validated with
:func:`cassle.args.parse_args` before the first run starts, so a typo fails at
once. A rerun skips finished runs (``run_state.json`` lists every task) and
lets ``main_continual`` resume unfinished ones from their directory.

At the end ``results.csv`` (one row per run: the parameters that vary, status
and the final metrics ``<probe>.<metric>`` from ``results/metrics.json``) and
``summary.csv`` (runs differing only by seed grouped: mean and sample std of
each metric) are written atomically into ``output_dir`` and printed. A run
directory that already holds a run with other arguments (the config changed
since) is a config error too, so a finished run is never reported for
arguments it was not trained with.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cassle.checkpoint import atomic_write_text
from cassle.errors import SweepError  # noqa: F401  (re-exported)

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


# ------------------------------------------------------------------ config
def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and structurally check a sweep config (raises :class:`SweepError`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SweepError(f"cannot read config {path}: {e.strerror or e}") from None
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise SweepError(f"config {path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
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
    from cassle.rundir import run_identity

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
                saved = run_identity(json.loads(saved_file.read_text()))
            except (OSError, json.JSONDecodeError) as e:
                raise SweepError(f"{saved_file} is unreadable ({e}); delete {r.run_dir} to restart that run") from None
            new = json.loads(json.dumps(run_identity(args_to_cfg(args)), default=str))
            diff = sorted(k for k in new if new[k] != saved.get(k))
            if diff:
                shown = ", ".join(f"{k}: {saved.get(k)!r} -> {new[k]!r}" for k in diff[:5])
                raise SweepError(
                    f"{r.run_dir} holds an earlier run of {r.name!r} with other arguments ({shown}); "
                    "use another output_dir or experiment name, or delete that directory"
                )


# ----------------------------------------------------------------- running
def run_status(run: Run) -> str:
    """``finished`` (every task done), ``unfinished`` (a run directory to resume) or ``new``."""
    state_file = run.run_dir / "run_state.json"
    if state_file.exists():
        try:
            done = json.loads(state_file.read_text()).get("completed_tasks", [])
        except (OSError, json.JSONDecodeError):
            done = []
        if run.num_tasks and len(set(done)) >= run.num_tasks:
            return "finished"
    if (run.run_dir / "args.json").exists():
        return "unfinished"
    return "new"


def _run_in_process(run: Run) -> int:
    from cassle.cli import continual_main

    return int(continual_main(list(run.argv)))


def _run_subprocess(run: Run, log_dir: Path, parallel: int = 1) -> int:
    """``main_continual.py`` in a child process, output appended to ``log_dir/<run>.log``.

    Unless the user set ``OMP_NUM_THREADS``, each child gets ``cpu_count // parallel``
    threads so parallel runs do not oversubscribe the CPU.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, parallel))))
    with open(log_dir / f"{run.name}.log", "ab") as log:
        proc = subprocess.run(
            [sys.executable, *CONTINUAL_COMMAND, *run.argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=os.getcwd(),
            env=env,
        )
    return proc.returncode


def execute(
    runs: Sequence[Run], parallel: int = 1, log_dir: Path | None = None, runner: Callable[[Run], int] | None = None
) -> None:
    """Run every run that is not finished; sets each run's ``status``.

    ``parallel == 1`` calls ``main_continual.main`` in this process, one run
    after the other; ``parallel > 1`` starts up to that many
    ``main_continual.py`` subprocesses, each logging to ``log_dir/<run>.log``.
    Statuses: ``skipped`` (already finished), ``done``, ``resumed`` (finished
    an interrupted run), ``failed``.
    """
    todo = []
    for r in runs:
        before = run_status(r)
        if before == "finished":
            r.status = "skipped"
            print(f"[sweep] {r.name}: already finished, skipped")
        else:
            r.status = "resume" if before == "unfinished" else "new"
            todo.append(r)
    if runner is None:
        runner = (
            _run_in_process
            if parallel <= 1
            else (lambda r: _run_subprocess(r, log_dir or Path("sweep_logs"), parallel))
        )

    def one(r: Run) -> None:
        print(f"[sweep] {r.name}: {'resuming' if r.status == 'resume' else 'starting'}", flush=True)
        start = time.time()
        try:
            rc = runner(r)
            err = "" if rc == 0 else f"main_continual exited with status {rc}"
        except Exception as e:  # a crashing run must not stop the others
            rc, err = 1, f"{type(e).__name__}: {e}"
        r.seconds = time.time() - start
        r.status = ("resumed" if r.status == "resume" else "done") if rc == 0 else "failed"
        r.error = err
        print(f"[sweep] {r.name}: {r.status} in {r.seconds:.1f}s{' (' + err + ')' if err else ''}", flush=True)

    if parallel <= 1:
        for r in todo:
            one(r)
    else:
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            list(pool.map(one, todo))


# ----------------------------------------------------------------- results
def read_metrics(run: Run) -> dict[str, float]:
    """``{"<probe>.<metric>": value}`` from the run's ``results/metrics.json`` (empty if absent)."""
    path = run.run_dir / "results" / "metrics.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    out: dict[str, float] = {}
    for probe, m in sorted(data.get("probes", {}).items()):
        for key in METRICS:
            v = m.get(key)
            out[f"{probe}.{key}"] = float(v) if isinstance(v, (int, float)) else math.nan
    return out


def _varying_params(runs: Sequence[Run]) -> list[str]:
    keys: list[str] = []
    for r in runs:
        for k in r.params:
            if k not in keys and k != "seed":
                keys.append(k)
    return [k for k in keys if len({json.dumps(r.params.get(k), sort_keys=True) for r in runs}) > 1]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of the finite ``values``."""
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return " ".join(str(x) for x in v)
    return "" if v is None else str(v)


def results_tables(runs: Sequence[Run]) -> tuple[list[str], list[list[Any]], list[str], list[list[Any]]]:
    """``(run_header, run_rows, summary_header, summary_rows)`` of the sweep."""
    metrics = {r.name: read_metrics(r) for r in runs}
    metric_keys: list[str] = []
    for m in metrics.values():
        metric_keys += [k for k in m if k not in metric_keys]
    params = _varying_params(runs)
    header = ["run", "experiment", *params, "seed", "status", *metric_keys]
    rows = [
        [
            r.name,
            r.experiment,
            *[r.params.get(k) for k in params],
            r.params.get("seed"),
            r.status,
            *[metrics[r.name].get(k, math.nan) for k in metric_keys],
        ]
        for r in runs
    ]

    groups: dict[str, list[Run]] = {}
    for r in runs:
        key = json.dumps(
            [r.experiment, {k: v for k, v in r.params.items() if k != "seed"}], sort_keys=True, default=str
        )
        groups.setdefault(key, []).append(r)
    s_header = ["experiment", *params, "seeds", "n"] + [f"{k} {s}" for k in metric_keys for s in ("mean", "std")]
    s_rows = []
    for members in groups.values():
        first = members[0]
        stats: list[Any] = []
        for k in metric_keys:
            stats += list(mean_std([metrics[r.name].get(k, math.nan) for r in members]))
        finished = [r for r in members if metrics[r.name]]
        s_rows.append(
            [
                first.experiment,
                *[first.params.get(k) for k in params],
                " ".join(str(r.params["seed"]) for r in members if r.params.get("seed") is not None),
                len(finished),
                *stats,
            ]
        )
    return header, rows, s_header, s_rows


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow([repr(v) if isinstance(v, float) and math.isfinite(v) else _cell(v) for v in row])
    return buf.getvalue()


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def write_results(runs: Sequence[Run], output_dir: Path) -> str:
    """Write ``results.csv`` and ``summary.csv`` into ``output_dir``; return the printed text."""
    header, rows, s_header, s_rows = results_tables(runs)
    atomic_write_text(output_dir / "results.csv", _csv(header, rows))
    atomic_write_text(output_dir / "summary.csv", _csv(s_header, s_rows))
    metric_keys = header[header.index("status") + 1 :]
    n_params = len(s_header) - 2 - 2 * len(metric_keys)
    pretty_rows = []
    for row in s_rows:
        cells = [_cell(v) for v in row[: n_params + 2]]
        n = row[n_params + 1]
        for i in range(len(metric_keys)):
            m, s = row[n_params + 2 + 2 * i], row[n_params + 3 + 2 * i]
            cells.append("" if not math.isfinite(m) else (f"{m:.2f} ± {s:.2f}" if n > 1 else f"{m:.2f}"))
        pretty_rows.append(cells)
    text = (
        "Runs:\n"
        + _text_table(header, [[_cell(v) for v in r] for r in rows])
        + "\n\nSummary (mean ± sample std over seeds; a single run shows its value):\n"
        + _text_table(s_header[: n_params + 2] + metric_keys, pretty_rows)
        + f"\n\nWritten: {output_dir / 'results.csv'}, {output_dir / 'summary.csv'}"
    )
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """``run_from_config.py``: 0 if every run finished, 1 if some failed, 2 on a bad config."""
    import argparse

    p = argparse.ArgumentParser(prog="run_from_config.py", allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="JSON sweep config (see cassle/sweep.py)")
    p.add_argument(
        "--output_dir", default=None, help="parent of the run directories (default: the config's output_dir)"
    )
    p.add_argument("--parallel", type=int, default=1, help="runs at once (>1: main_continual.py subprocesses)")
    p.add_argument("--dry_run", action="store_true", help="validate and print the commands; run nothing")
    a = p.parse_args(argv)
    if a.parallel < 1:
        print("error: --parallel must be at least 1", file=sys.stderr)
        return 2
    try:
        cfg = load_config(a.config)
        runs = expand(cfg, a.output_dir, Path(a.config).stem)
        validate(runs)
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    output_dir = runs[0].run_dir.parent
    print(f"[sweep] {len(runs)} run(s) under {output_dir}")
    if a.dry_run:
        for r in runs:
            print(f"[{run_status(r)}] {r.command()}")
        return 0
    execute(runs, parallel=a.parallel, log_dir=output_dir / "_logs")
    print(write_results(runs, output_dir))
    failed = [r for r in runs if r.status == "failed"]
    for r in failed:
        print(f"[sweep] FAILED {r.name}: {r.error}", file=sys.stderr)
    return 1 if failed else 0
