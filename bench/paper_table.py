#!/usr/bin/env python3
"""The CaSSLe paper's CIFAR-100 table, run with the published settings and printed next to the paper's.

Fini et al., "Self-Supervised Models are Continual Learners" (CVPR 2022),
Table 1 (CIFAR-100, 5 class-incremental tasks, linear top-1 after the last
task): fine-tuning → CaSSLe for six methods. For every method and strategy
this runs the published script ``bash_files/continual/cifar/<name>.sh``
(``<name>_distill.sh`` for CaSSLe) through ``main_continual.py``, then
``bash_files/linear/cifar/<name>_linear.sh`` through ``main_linear.py`` on the
run's last task checkpoint, and prints our linear top-1 next to the paper's.

Each run has its own directory under ``--out``; finished runs and finished
linear evaluations are kept (rerunning resumes the unfinished ones, as
``main_continual.py`` does), so the table can be grown over several jobs.

On a GPU machine with CIFAR-100 (``$DATA_DIR/cifar-100-python``, the python
version from https://www.cs.toronto.edu/~kriz/cifar.html)::

    DATA_DIR=~/datasets python bench/paper_table.py              # 12 runs of 5 x 500 epochs, then 12 linear evals
    DATA_DIR=~/datasets python bench/paper_table.py --methods byol --strategies cassle
    python bench/paper_table.py --table_only --out experiments/paper_table

A smaller budget (the comparison with the paper is then only indicative)::

    DATA_DIR=~/datasets python bench/paper_table.py --continual_args --max_epochs 50 \\
        --linear_args --max_epochs 20

``--continual_args`` / ``--linear_args`` are appended to (or replace the values
of) every script's flags; ``--set FLAG=VALUE`` replaces a flag only in the
scripts that already have it (e.g. ``--set pred_hidden_dim=512`` touches BYOL's
scripts only).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cassle.fileio import atomic_write, atomic_write_text  # noqa: E402
from cassle.scripts import LauncherError, apply_overrides, format_args, parse_args_list, parse_script  # noqa: E402

#: linear top-1 (%) on CIFAR-100 after 5 class-incremental tasks: (fine-tuning, CaSSLe), the paper's Table 1
PAPER = {
    "barlow_twins": (54.3, 60.4),
    "byol": (52.7, 62.2),
    "mocov2plus": (47.3, 59.5),
    "simclr": (48.9, 58.3),
    "swav": (55.5, 57.8),
    "vicreg": (51.5, 53.6),
}
#: method -> the stem of its scripts in bash_files/
SCRIPT_NAME = {
    "barlow_twins": "barlow",
    "byol": "byol",
    "mocov2plus": "mocov2plus",
    "simclr": "simclr",
    "swav": "swav",
    "vicreg": "vicreg",
}
STRATEGIES = ("finetune", "cassle")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--methods", nargs="+", default=list(PAPER), choices=list(PAPER))
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    p.add_argument(
        "--data_dir", default=os.environ.get("DATA_DIR"), help="folder holding cifar-100-python/ (default: $DATA_DIR)"
    )
    p.add_argument("--out", default=str(ROOT / "experiments" / "paper_table"), help="one directory per run in here")
    p.add_argument("--scripts", default=str(ROOT / "bash_files"), help="folder with continual/cifar and linear/cifar")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FLAG=VALUE",
        help="replace FLAG's values in the scripts that have it (repeatable; VALUE may hold spaces)",
    )
    p.add_argument("--table_only", action="store_true", help="only collect finished runs and print the table")
    p.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
    p.add_argument(
        "--continual_args",
        nargs=argparse.REMAINDER,
        default=[],
        help="flags for every main_continual.py run (after the script's own; ends at --linear_args)",
    )
    p.add_argument(
        "--linear_args",
        nargs=argparse.REMAINDER,
        default=[],
        help="flags for every main_linear.py run (after the script's own; ends at --continual_args)",
    )
    head, linear = _parse_tail(list(sys.argv[1:] if argv is None else argv))
    a = p.parse_args(head)
    a.linear_args = linear
    for item in a.set:
        if "=" not in item:
            p.error(f"--set expects FLAG=VALUE, got {item!r}")
    if not a.table_only and not a.data_dir:
        p.error("no data folder: pass --data_dir or set DATA_DIR to the folder holding cifar-100-python/")
    return a


def _parse_tail(argv: list[str]) -> tuple[list[str], list[str]]:
    """``(argv without the --linear_args part, the --linear_args flags)``, in either order with --continual_args."""
    if "--linear_args" not in argv:
        return argv, []
    i = argv.index("--linear_args")
    rest = argv[i + 1 :]
    if "--continual_args" in rest:  # --linear_args ... --continual_args ...
        j = rest.index("--continual_args")
        return argv[:i] + rest[j:], rest[:j]
    return argv[:i], rest  # [--continual_args ...] --linear_args ...


def run_dir(a: argparse.Namespace, method: str, strategy: str) -> Path:
    return Path(a.out) / f"{method}-{strategy}"


def _with_sets(args: dict, sets: list[str]) -> dict:
    out = {k: list(v) for k, v in args.items()}
    for item in sets:
        flag, _, value = item.partition("=")
        flag = flag.lstrip("-")
        if flag in out:
            out[flag] = value.split()
    return out


def continual_command(a: argparse.Namespace, method: str, strategy: str) -> list[str]:
    stem = SCRIPT_NAME[method] + ("_distill" if strategy == "cassle" else "")
    script = parse_script(
        Path(a.scripts) / "continual" / "cifar" / f"{stem}.sh",
        env={k: v for k, v in {**os.environ, "DATA_DIR": a.data_dir or ""}.items() if k != "PRETRAINED_PATH"},
    )
    args = _with_sets(script.args, a.set)
    args = apply_overrides(args, parse_args_list(a.continual_args, "--continual_args"))
    args = apply_overrides(args, {"checkpoint_dir": [str(run_dir(a, method, strategy))]})
    return [sys.executable, str(ROOT / Path(script.entrypoint).name), *format_args(args)]


def linear_command(a: argparse.Namespace, method: str, checkpoint: Path) -> list[str]:
    env = {**os.environ, "DATA_DIR": a.data_dir or "", "PRETRAINED_PATH": str(checkpoint)}
    script = parse_script(Path(a.scripts) / "linear" / "cifar" / f"{SCRIPT_NAME[method]}_linear.sh", env=env)
    args = _with_sets(script.args, a.set)
    args = apply_overrides(args, parse_args_list(a.linear_args, "--linear_args"))
    args = apply_overrides(args, {"name": ["paper_table"]})
    return [sys.executable, str(ROOT / Path(script.entrypoint).name), *format_args(args)]


def last_checkpoint(d: Path) -> Path | None:
    """The last task checkpoint of a finished run, else ``None``."""
    try:
        m = json.loads((d / "results" / "metrics.json").read_text())
        args = json.loads((d / "args.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    num_tasks = int(args.get("num_tasks", 0))
    done = m.get("tasks_done", [])
    if num_tasks < 1 or len(done) != num_tasks:
        return None
    ckpt = d / f"task{num_tasks - 1}.ckpt"
    return ckpt if ckpt.exists() else None


def linear_top1(d: Path) -> float | None:
    try:
        return float(
            json.loads((d / "linear" / "paper_table" / "linear_results.json").read_text())["metrics"]["val_acc1"]
        )
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def default_runner(cmd: list[str], log: Path) -> int:
    """Run one command, its output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        return subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)


def table(a: argparse.Namespace) -> tuple[str, list[dict]]:
    """Markdown table (ours next to the paper's) and its rows, from the finished runs."""
    rows = []
    for m in a.methods:
        r = {"method": m}
        for i, s in enumerate(STRATEGIES):
            r[f"{s}_ours"] = linear_top1(run_dir(a, m, s))
            r[f"{s}_paper"] = PAPER[m][i]
        rows.append(r)

    def f(x: float | None) -> str:
        return "–" if x is None else f"{x:.1f}"

    lines = [
        "| method | finetune (ours) | finetune (paper) | CaSSLe (ours) | CaSSLe (paper) | Δ ours | Δ paper |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        d_ours = (
            None if r["finetune_ours"] is None or r["cassle_ours"] is None else r["cassle_ours"] - r["finetune_ours"]
        )
        lines.append(
            f"| {r['method']} | {f(r['finetune_ours'])} | {f(r['finetune_paper'])} | {f(r['cassle_ours'])} | "
            f"{f(r['cassle_paper'])} | {'–' if d_ours is None else f'{d_ours:+.1f}'} | "
            f"{r['cassle_paper'] - r['finetune_paper']:+.1f} |"
        )
    text = (
        "CIFAR-100, 5 class-incremental tasks, linear top-1 (%) on the whole test set after the last task "
        "(paper: Fini et al., CVPR 2022, Table 1); – = not run yet.\n\n" + "\n".join(lines) + "\n"
    )
    return text, rows


def write_table(a: argparse.Namespace) -> str:
    text, rows = table(a)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "paper_table.md", text)

    def write_csv(fh) -> None:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["method"])
        w.writeheader()
        w.writerows(rows)

    atomic_write(out / "paper_table.csv", write_csv)
    return text


def main(argv: list[str] | None = None, runner: Callable[[list[str], Path], int] = default_runner) -> int:
    a = parse(argv)
    if a.table_only:
        print(write_table(a))
        return 0
    try:  # read every script before running anything: a broken one fails here, not after hours
        plan = [(m, s, continual_command(a, m, s)) for m in a.methods for s in a.strategies]
        for m in a.methods:
            linear_command(a, m, Path("task.ckpt"))
    except LauncherError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = 0
    for m, s, cmd in plan:
        d = run_dir(a, m, s)
        if a.dry_run:
            print(" ".join(cmd))
            print(" ".join(linear_command(a, m, d / "task<last>.ckpt")))
            continue
        ckpt = last_checkpoint(d)
        if ckpt is None:
            print(f"[paper_table] {d.name}: pretraining", flush=True)
            rc = runner(cmd, d.parent / f"{d.name}.log")
            ckpt = last_checkpoint(d)
            if rc != 0 or ckpt is None:
                print(
                    f"[paper_table] {d.name}: pretraining FAILED (exit {rc}), see {d.parent / (d.name + '.log')}",
                    flush=True,
                )
                failed += 1
                continue
        if linear_top1(d) is None:
            print(f"[paper_table] {d.name}: linear evaluation of {ckpt.name}", flush=True)
            rc = runner(linear_command(a, m, ckpt), d.parent / f"{d.name}-linear.log")
            if rc != 0 or linear_top1(d) is None:
                print(
                    f"[paper_table] {d.name}: linear evaluation FAILED (exit {rc}), see {d.parent / (d.name + '-linear.log')}",
                    flush=True,
                )
                failed += 1
                continue
        print(f"[paper_table] {d.name}: linear top-1 {linear_top1(d):.2f}", flush=True)
    if a.dry_run:
        return 0
    print(write_table(a))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
