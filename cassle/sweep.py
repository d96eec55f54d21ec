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

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cassle.errors import SweepError  # noqa: F401  (re-exported)
from cassle.fileio import read_json_object
from cassle.sweep_config import (  # noqa: F401  (re-exported)
    CONFIG_KEYS,
    CONTINUAL_COMMAND,
    EXPERIMENT_KEYS,
    METRICS,
    OWNED_ARGS,
    Run,
    check_config,
    expand,
    load_config,
    to_argv,
    validate,
)
from cassle.sweep_results import mean_std, read_metrics, results_tables, write_results  # noqa: F401


# ----------------------------------------------------------------- running
def run_status(run: Run) -> str:
    """``finished`` (every task done), ``unfinished`` (a run directory to resume) or ``new``."""
    state_file = run.run_dir / "run_state.json"
    if state_file.exists():
        try:
            done = read_json_object(state_file).get("completed_tasks", [])
        except ValueError:
            done = []
        done = done if isinstance(done, list) else []
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
