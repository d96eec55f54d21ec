#!/usr/bin/env python3
"""Quality benchmark: does CaSSLe beat fine-tuning on Split-Fashion-MNIST?

For every method in ``--methods`` and every seed in ``--seeds`` this runs
``main_continual.py`` with every strategy of ``--strategies`` (default
``finetune`` and ``cassle``), class-incremental over ``--num_tasks`` tasks,
plus a joint, non-continual run (``--num_tasks 1``, the upper bound) for each
method in ``--joint_methods``
(default: all). After pretraining, ``main_linear.py`` trains a linear
classifier on the frozen backbone of the last task checkpoint (the CaSSLe
paper's protocol; ``--linear_epochs 0`` skips it). Each run gets its own
directory ``<method>-<finetune|cassle|joint>-s<seed>`` under ``--out``
(default ``bench/out/quality``, gitignored); finished runs and finished linear
evaluations are kept (``main_continual.py`` resumes an unfinished run), so the
command can be rerun after an interruption and the table grows run by run. A
run whose directory is gone but whose row is in ``bench/<tag>_results.csv``
keeps that row and is not rerun (delete the row to rerun it).

After every run the tables are rewritten to ``bench/<tag>_results.csv`` (one
row per run) and ``bench/<tag>_results.md`` and into ``bench/README.md``
between ``<!-- <tag>:begin -->`` and ``<!-- <tag>:end -->``:

* mean ± std over the seeds of the final ``knn_joint`` / ``ridge_joint`` /
  ``linear`` accuracies (probes fit on all classes after the last task,
  tested on the whole test set: 10-way) and of the task-aware forgetting
  (Chaudhry et al.; README "Evaluation protocol");
* CaSSLe − finetune per method (with ``--strategies finetune er`` or any
  other list: one such table per strategy other than fine-tuning, e.g.
  ER − finetune): mean ± std of the per-seed (paired) differences, and
  whether the mean exceeds one standard deviation.

The reduced budget (``--epochs``, ``--subset`` = ``--train_fraction``: a
seeded, class-stratified fraction of every task's training images, test sets
whole, ``--crop_size``, augmentations through ``--extra``) is the same for
every run; the joint run trains the same number of epochs over the union of
the tasks' subsets, so it takes as many optimizer steps as a 5-task run.

    PYTHONPATH=$PWD nice -n 10 python bench/quality.py                      # the whole table
    PYTHONPATH=$PWD python bench/quality.py --methods barlow_twins --seeds 5
    PYTHONPATH=$PWD python bench/quality.py --table_only                     # rebuild tables
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cassle.fileio import atomic_torch_save, atomic_write, atomic_write_text  # noqa: E402
from cassle.sweep_results import mean_std as _sweep_mean_std  # noqa: E402

METHODS = ["barlow_twins", "byol", "mocov2plus", "simclr", "swav", "vicreg"]

#: method arguments scaled down to the small budget (projector widths are set for all methods by --proj_dim)
METHOD_OVERRIDES = {
    "byol": ["--pred_hidden_dim", "{proj}"],
    "mocov2plus": ["--queue_size", "4096"],  # the default 65536 exceeds the whole subset
    "swav": ["--num_prototypes", "300", "--queue_size", "0"],
    "vicreg": ["--lr", "0.05"],  # at --lr 0.3 (SGD) VICReg's loss and features went NaN within task 0
}
COLUMNS = [
    "method",
    "strategy",
    "seed",
    "tasks",
    "knn_joint",
    "ridge_joint",
    "linear",
    "knn_avg",
    "ridge_avg",
    "knn_forget",
    "ridge_forget",
    "knn_joint_init",
    "ridge_joint_init",
    "linear_init",
    "wall_s",
    "run_dir",
]
#: the measures of the summary tables: (column, header)
MEASURES = [
    ("knn_joint", "kNN joint"),
    ("ridge_joint", "ridge joint"),
    ("linear", "linear"),
    ("knn_forget", "kNN forgetting"),
    ("ridge_forget", "ridge forgetting"),
]
LINEAR_NAME = "quality"
#: main_linear.py's folder of the random-initialisation linear baseline (joint runs: ``<run>/linear/quality_init``)
INIT_LINEAR_NAME = "quality_init"
#: columns a results CSV written before they existed may lack (read as NaN)
OPTIONAL_COLUMNS = ("linear_init",)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--strategies", nargs="+", default=["finetune", "cassle"])
    p.add_argument(
        "--joint_methods",
        nargs="*",
        default=None,
        help="methods that also get a joint (--num_tasks 1) run (default: all of --methods; none: empty)",
    )
    p.add_argument(
        "--seeds", nargs="+", type=int, default=[5, 6, 7], help="one run per seed (split, init, augmentations)"
    )
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data_dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--num_tasks", type=int, default=5)
    p.add_argument("--epochs", type=int, default=10, help="epochs per task")
    p.add_argument("--subset", type=float, default=0.1, help="--train_fraction of every task's training images")
    p.add_argument("--encoder", default="slim_resnet9")
    p.add_argument("--crop_size", type=int, default=16)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.3)
    p.add_argument("--warmup_epochs", type=float, default=1)
    p.add_argument("--proj_dim", type=int, default=512, help="projector hidden/output and CaSSLe predictor width")
    p.add_argument("--num_workers", type=int, default=0)
    p.add_argument(
        "--linear_epochs", type=int, default=10, help="main_linear.py epochs on the last checkpoint; 0 skips it"
    )
    p.add_argument("--linear_lr", type=float, default=0.1)
    p.add_argument(
        "--linear_args",
        nargs="*",
        default=[],
        help="more main_linear.py arguments (write them as --linear_args=--flag)",
    )
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (each its own process)")
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "quality"))
    p.add_argument("--results", default=str(ROOT / "bench"), help="folder of <tag>_results.{csv,md}")
    p.add_argument(
        "--tag",
        default="quality",
        help="name of this table: files <tag>_results.{csv,md} and the bench/README.md block between "
        "<!-- <tag>:begin --> and <!-- <tag>:end --> (e.g. another budget keeps its own table)",
    )
    p.add_argument(
        "--extra",
        nargs=argparse.REMAINDER,
        default=[],
        help="more main_continual.py arguments, for every run; must come last (everything after it is passed on, "
        "so --dry_run there would start the runs: it is refused)",
    )
    p.add_argument("--table_only", action="store_true", help="only rebuild the tables from finished runs")
    p.add_argument("--dry_run", action="store_true", help="print the commands")
    a = p.parse_args(argv)
    for own in ("--dry_run", "--table_only"):
        if own in a.extra:
            p.error(f"{own} was given after --extra, which passes it to main_continual.py: put it before --extra")
    if a.joint_methods is None:
        a.joint_methods = list(a.methods)
    return a


Key = tuple  # (method, strategy, num_tasks, seed)


def plan(a: argparse.Namespace) -> list[Key]:
    """``(method, strategy, num_tasks, seed)`` in run order: the continual pairs seed-major (a partial table covers
    every method and its paired differences grow seed by seed), then the joint runs, seed-major too (the joint
    run is the upper bound, not part of the CaSSLe − finetune comparison)."""
    runs = [(m, s, a.num_tasks, seed) for seed in a.seeds for m in a.methods for s in a.strategies]
    return runs + [(m, "finetune", 1, seed) for seed in a.seeds for m in a.methods if m in a.joint_methods]


def kind(strategy: str, tasks: int) -> str:
    return "joint" if tasks == 1 else strategy


def record_key(method: str, strategy: str, tasks: int, seed: int) -> tuple:
    """A planned run's key in :func:`read_results` (``(method, strategy or 'joint', seed, tasks)``)."""
    return (method, kind(strategy, tasks), seed, tasks)


def run_dir(a: argparse.Namespace, method: str, strategy: str, tasks: int, seed: int) -> Path:
    return Path(a.out) / f"{method}-{kind(strategy, tasks)}-s{seed}"


def command(a: argparse.Namespace, method: str, strategy: str, tasks: int, seed: int) -> list[str]:
    proj = str(a.proj_dim)
    cmd = [
        sys.executable,
        str(ROOT / "main_continual.py"),
        "--dataset",
        a.dataset,
        "--data_dir",
        a.data_dir,
        "--encoder",
        a.encoder,
        "--crop_size",
        str(a.crop_size),
        "--method",
        method,
        "--strategy",
        strategy,
        "--num_tasks",
        str(tasks),
        "--split_strategy",
        "class",
        "--max_epochs",
        str(a.epochs),
        "--train_fraction",
        str(a.subset),
        "--batch_size",
        str(a.batch_size),
        "--lr",
        str(a.lr),
        "--warmup_epochs",
        str(a.warmup_epochs),
        "--proj_hidden_dim",
        proj,
        "--output_dim",
        proj,
        "--seed",
        str(seed),
        "--num_workers",
        str(a.num_workers),
        "--no_progress_bar",
        "--check_val_every_n_epoch",
        str(10**6),
        "--probes",
        "knn",
        "ridge",
        "--accelerator",
        "cpu",
        "--checkpoint_frequency",
        str(max(1, a.epochs)),
        "--checkpoint_dir",
        str(run_dir(a, method, strategy, tasks, seed)),
    ]
    if strategy == "cassle":
        cmd += ["--distill_proj_hidden_dim", proj]
    cmd += [x.format(proj=proj) for x in METHOD_OVERRIDES.get(method, [])]
    return cmd + list(a.extra)


def linear_command(a: argparse.Namespace, checkpoint: Path, seed: int, name: str = LINEAR_NAME) -> list[str]:
    """main_linear.py on ``checkpoint``: the classifier sees every class, fit on the whole training set."""
    return [
        sys.executable,
        str(ROOT / "main_linear.py"),
        "--pretrained_model",
        str(checkpoint),
        "--max_epochs",
        str(a.linear_epochs),
        "--lr",
        str(a.linear_lr),
        "--optimizer",
        "sgd",
        "--scheduler",
        "cosine",
        "--weight_decay",
        "0",
        "--batch_size",
        "256",
        "--seed",
        str(seed),
        "--num_workers",
        str(a.num_workers),
        "--accelerator",
        "cpu",
        "--no_progress_bar",
        "--name",
        name,
        *[x for x in a.linear_args],
    ]


def init_checkpoint(d: Path) -> Path:
    """``d/init.ckpt``: the run's model as it was before its first step, for the random-initialisation linear
    baseline. Built by the function ``main_continual.py`` builds it with (:func:`cassle.run_plan.untrained_model`,
    from the run's own ``args.json``), so it holds the weights whose kNN / ridge probes the run recorded as
    ``baseline_joint`` (``tests/test_quality_bench.py`` checks that). Written in the task-checkpoint format with
    ``task_idx`` −1 (before task 0), so ``main_linear.py`` evaluates it like any task checkpoint."""
    from cassle.checkpoint import task_checkpoint
    from cassle.fileio import read_json_object
    from cassle.run_plan import untrained_model
    from cassle.strategies import build_model_class

    path = d / "init.ckpt"
    if path.exists():
        return path
    cfg = read_json_object(d / "args.json")
    model = untrained_model(build_model_class(cfg["method"], cfg["strategy"]), cfg)
    atomic_torch_save(task_checkpoint(model, 0, cfg) | {"task_idx": -1}, path)
    return path


def _metrics(d: Path, tasks: int) -> dict | None:
    try:
        m = json.loads((d / "results" / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return m if len(m.get("tasks_done", [])) == tasks else None


def linear_top1(d: Path, name: str = LINEAR_NAME) -> float | None:
    try:
        return float(json.loads((d / "linear" / name / "linear_results.json").read_text())["metrics"]["val_acc1"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def recorded(a: argparse.Namespace) -> dict[tuple, dict]:
    """The rows of an earlier ``<tag>_results.csv``, by ``(method, strategy, seed, tasks)``: the table is the
    record of the runs, so a run whose directory is gone (another machine, a cleaned ``--out``) keeps its row and
    is not run again. Delete the CSV (or the row) to rerun it."""
    return read_results(Path(a.results) / f"{a.tag}_results.csv")


def read_results(path: Path) -> dict[tuple, dict]:
    """The rows of a results CSV written by :func:`write_tables`, by ``(method, strategy, seed, tasks)``, numbers
    as floats (``{}`` when the file cannot be read); rows of another column layout are left out."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return {}
    out = {}
    for r in rows:
        try:
            r = {c: "nan" for c in OPTIONAL_COLUMNS} | r
            conv = {c: (r[c] if c in ("method", "strategy", "run_dir") else float(r[c])) for c in COLUMNS}
        except (KeyError, TypeError, ValueError):
            continue  # a row from another column layout: not a record of this table
        conv["seed"], conv["tasks"] = int(conv["seed"]), int(conv["tasks"])
        out[(conv["method"], conv["strategy"], conv["seed"], conv["tasks"])] = conv
    return out


def row(a: argparse.Namespace, method: str, strategy: str, tasks: int, seed: int) -> dict | None:
    d = run_dir(a, method, strategy, tasks, seed)
    m = _metrics(d, tasks)
    if m is None:
        if not d.exists():
            return recorded(a).get(record_key(method, strategy, tasks, seed))
        return None
    p = m["probes"]
    wall = d / "wall_s.txt"
    lin, lin_init = linear_top1(d), linear_top1(d, INIT_LINEAR_NAME)
    r = {
        "method": method,
        "strategy": kind(strategy, tasks),
        "seed": seed,
        "tasks": tasks,
        "linear": float("nan") if lin is None else lin,
        "linear_init": float("nan") if lin_init is None else lin_init,
        "wall_s": float(wall.read_text()) if wall.exists() else float("nan"),
        "run_dir": str(d.relative_to(ROOT)) if d.is_relative_to(ROOT) else str(d),
    }
    for probe in ("knn", "ridge"):
        r[f"{probe}_joint"] = p[probe]["joint_accuracy"]
        r[f"{probe}_avg"] = p[probe]["average_accuracy"]
        r[f"{probe}_forget"] = p[probe]["average_forgetting"] if tasks > 1 else float("nan")
        r[f"{probe}_joint_init"] = float(p[probe].get("baseline_joint", float("nan")))
    return r


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (n − 1; 0 for one value) and count of the finite ``values``
    (the sweep's :func:`cassle.sweep_results.mean_std`, plus the count)."""
    n = sum(1 for x in values if isinstance(x, (int, float)) and math.isfinite(x))
    return (*_sweep_mean_std(values), n)


def fmt_ms(stats: tuple[float, float, int], expected: int, sign: bool = False) -> str:
    """``mean ± std``; ``(n=k)`` when fewer than the ``expected`` seeds have finished."""
    mu, sd, n = stats
    if n == 0:
        return "–"
    s = f"{mu:+.2f}" if sign else f"{mu:.2f}"
    return s + (f" ± {sd:.2f}" if n > 1 else "") + ("" if n == expected else f" (n={n})")


#: how a strategy is named in the difference tables' titles (others: as given on the command line)
STRATEGY_LABELS = {"cassle": "CaSSLe", "er": "ER", "lump": "LUMP", "minred": "MinRed", "aep": "AEP", "arp": "ARP"}


def _label(strategy: str) -> str:
    return STRATEGY_LABELS.get(strategy, strategy)


def better_by_one_std(stats: dict[str, tuple[float, float, int]]) -> str:
    """``yes`` / ``no`` per accuracy probe (kNN / ridge / linear): is the mean paired difference larger than one
    standard deviation of the differences (and measured on more than one seed)?"""
    return " / ".join(
        "yes" if stats[col][2] > 1 and stats[col][0] > stats[col][1] else "no"
        for col in ("knn_joint", "ridge_joint", "linear")
    )


def _differences(a: argparse.Namespace, by: dict, strategy: str) -> str:
    """Markdown: ``strategy`` − finetune per method, mean ± std of the per-seed (paired) differences."""
    k, name = len(a.seeds), _label(strategy)
    lines = [
        "| method | "
        + " | ".join(f"Δ {h}" for _, h in MEASURES)
        + f" | {name} better by > 1 std (kNN / ridge / linear) |",
        "| --- | " + " | ".join("---:" for _ in MEASURES) + " | --- |",
    ]
    for m in a.methods:
        f = {r["seed"]: r for r in by.get((m, "finetune"), [])}
        c = {r["seed"]: r for r in by.get((m, strategy), [])}
        seeds = sorted(set(f) & set(c))
        if not seeds:
            continue
        stats = {col: mean_std([c[s][col] - f[s][col] for s in seeds]) for col, _ in MEASURES}
        verdict = better_by_one_std(stats)
        lines.append(
            f"| {m} | " + " | ".join(fmt_ms(stats[col], k, sign=True) for col, _ in MEASURES) + f" | {verdict} |"
        )
    return (
        f"{name} − finetune, mean ± std of the per-seed differences (positive accuracy and negative "
        f"forgetting favour {name}):\n\n" + "\n".join(lines) + "\n"
    )


def summary(a: argparse.Namespace, rows: list[dict]) -> str:
    """Markdown: mean ± std per (method, strategy), then each strategy other than fine-tuning minus fine-tuning
    from paired seeds (with the default strategies: CaSSLe − finetune)."""
    k = len(a.seeds)
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        by.setdefault((r["method"], r["strategy"]), []).append(r)
    head = [
        "| method | strategy | "
        + " | ".join(h for _, h in MEASURES)
        + " | random init: kNN / ridge joint (/ linear) | wall s |",
        "| --- | --- | " + " | ".join("---:" for _ in MEASURES) + " | ---: | ---: |",
    ]
    order = ["finetune"] + [s for s in a.strategies if s != "finetune"] + ["joint"]
    for m in a.methods:
        for s in order:
            rs = by.get((m, s))
            if not rs:
                continue
            cells = [fmt_ms(mean_std([r[c] for r in rs]), k) for c, _ in MEASURES]
            inits = [mean_std([r[c] for r in rs]) for c in ("knn_joint_init", "ridge_joint_init", "linear_init")]
            init = " / ".join(f"{mu:.2f}" + ("" if n == len(rs) else f" (n={n})") for mu, _, n in inits if n)
            wall = f"{mean_std([r['wall_s'] for r in rs])[0]:.0f}"
            head.append(f"| {m} | {s} | " + " | ".join(cells) + f" | {init} | {wall} |")
    others = [s for s in a.strategies if s != "finetune"]  # fine-tuning alone: no difference table
    return (
        "Final accuracies (%) after the last task, mean ± std over seeds "
        f"{', '.join(map(str, a.seeds))} (n < {len(a.seeds)} marks runs still missing); joint = all-class probe over "
        "the whole test set, linear = `main_linear.py` top-1; forgetting = task-aware (kNN / ridge); "
        "random init = the same probes on the untrained encoder (linear: `main_linear.py` on it, joint runs).\n\n"
        + "\n".join(head)
        + "".join("\n\n" + _differences(a, by, s) for s in others)
    )


def write_tables(a: argparse.Namespace) -> list[dict]:
    """Rewrite ``<tag>_results.{csv,md}`` and the README block; returns the rows of this command's runs.

    The tables show this command's runs (``plan(a)``); the CSV also keeps the recorded rows of every other run
    (another method, seed or strategy run by an earlier command under the same tag), since it is their only
    record once their directories are gone."""
    keys = plan(a)
    rows = [r for r in (row(a, *k) for k in keys) if r is not None]
    mine = {record_key(*k) for k in keys}
    others = [r for k, r in recorded(a).items() if k not in mine]
    res = Path(a.results)

    def write_csv(f) -> None:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in others + rows:
            w.writerow({k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()})

    atomic_write(res / f"{a.tag}_results.csv", write_csv)
    text = summary(a, rows)
    atomic_write_text(res / f"{a.tag}_results.md", text)
    readme = res / "README.md"
    begin, end = f"<!-- {a.tag}:begin -->", f"<!-- {a.tag}:end -->"
    if readme.exists() and begin in readme.read_text():
        omp = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if os.environ.get("OMP_NUM_THREADS") else ""
        cmd = " ".join(
            [f"{omp}PYTHONPATH=$PWD nice -n 10 python bench/quality.py"]
            + [x for x in sys.argv[1:] if x != "--table_only"]
        )
        r = readme.read_text()
        block = f"{begin}\nCommand: `{cmd}`\n\n{text.rstrip()}\n{end}"
        atomic_write_text(readme, r[: r.index(begin)] + block + r[r.index(end) + len(end) :])
    return rows


def linear_evaluations(a: argparse.Namespace, key: Key, d: Path) -> list[tuple[str, Path]]:
    """The ``main_linear.py`` evaluations of run ``key``, as ``(name, checkpoint)``: its last task checkpoint, and
    for a joint run also its untrained model (:func:`init_checkpoint`: the random-init linear baseline, one per
    joint run). None when ``--linear_epochs 0``."""
    if a.linear_epochs <= 0:
        return []
    todo = [(LINEAR_NAME, d / f"task{key[2] - 1}.ckpt")]
    return todo + ([(INIT_LINEAR_NAME, d / "init.ckpt")] if key[2] == 1 else [])


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    if a.table_only:
        write_tables(a)
        print((Path(a.results) / f"{a.tag}_results.md").read_text())
        return 0
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    todo = []
    for key in plan(a):
        d = run_dir(a, *key)
        if a.dry_run:
            print(" ".join(command(a, *key)))
            for name, ckpt in linear_evaluations(a, key, d):
                print(" ".join(linear_command(a, ckpt, key[3], name)))
        elif not d.exists() and row(a, *key) is not None:
            print(f"[quality] {d.name}: recorded in {a.tag}_results.csv (run directory gone), kept")
        elif row(a, *key) is not None and all(linear_top1(d, n) is not None for n, _ in linear_evaluations(a, key, d)):
            print(f"[quality] {d.name}: finished earlier, kept")
        else:
            todo.append(key)
    if a.dry_run:
        return 0
    lock = threading.Lock()
    failed = []

    def one(key: Key) -> None:
        d = run_dir(a, *key)
        d.parent.mkdir(parents=True, exist_ok=True)
        log_path = d.parent / f"{d.name}.log"
        if row(a, *key) is None:
            print(f"[quality] {d.name}: running", flush=True)
            t0 = time.perf_counter()
            with open(log_path, "a") as log:
                rc = subprocess.call(command(a, *key), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            wall = time.perf_counter() - t0
            if rc != 0 or row(a, *key) is None:
                print(f"[quality] {d.name}: FAILED (exit {rc}), see {log_path}", flush=True)
                failed.append(d.name)
                return
            atomic_write_text(d / "wall_s.txt", f"{wall:.1f}\n")
            print(f"[quality] {d.name}: done in {wall:.0f} s", flush=True)
        for name, ckpt in linear_evaluations(a, key, d):
            if linear_top1(d, name) is not None:
                continue
            what = "linear" if name == LINEAR_NAME else "random-init linear"
            t0 = time.perf_counter()
            if name == INIT_LINEAR_NAME:
                init_checkpoint(d)
            with open(log_path, "a") as log:
                rc = subprocess.call(
                    linear_command(a, ckpt, key[3], name), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
                )
            top1 = linear_top1(d, name)
            if rc != 0 or top1 is None:
                print(f"[quality] {d.name}: {what} evaluation FAILED (exit {rc}), see {log_path}", flush=True)
                failed.append(d.name)
            else:
                print(f"[quality] {d.name}: {what} top-1 {top1:.2f} in {time.perf_counter() - t0:.0f} s", flush=True)
        with lock:
            write_tables(a)

    if todo:
        with ThreadPoolExecutor(max_workers=max(1, a.parallel)) as pool:
            list(pool.map(one, todo))
    write_tables(a)
    print((Path(a.results) / f"{a.tag}_results.md").read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
