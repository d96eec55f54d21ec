#!/usr/bin/env python3
"""Quality benchmark: does CaSSLe beat fine-tuning on Split-Fashion-MNIST?

For every method in ``--methods`` this runs ``main_continual.py`` twice
(``--strategy finetune`` and ``--strategy cassle``), class-incremental over
``--num_tasks`` tasks, plus a joint, non-continual run (``--num_tasks 1``, the
upper bound) for each method in ``--joint_methods``. Each run gets its own
directory under ``--out`` (default ``bench/out/quality``, gitignored); a run
that already finished there is not retrained (``main_continual.py`` resumes or
just prints a finished run), so the table can be grown method by method.

After every run the table of final accuracies is rewritten to
``bench/<tag>_results.csv`` and ``bench/<tag>_results.md`` (``--tag``, default ``quality``):

* ``knn_joint`` / ``ridge_joint``: probe fit on all classes' training features
  after the last task, tested on the whole test set (10-way; the CaSSLe paper's
  headline is this, with a linear probe);
* ``knn_avg`` / ``ridge_avg``: final task-aware average ``mean_i R[T-1][i]``;
* ``knn_forget`` / ``ridge_forget``: forgetting of the task-aware probes
  (Chaudhry et al.; README "Evaluation protocol");
* ``wall_s``: wall time of the run on this machine (with ``--parallel N``,
  N runs shared the machine).

and ``bench/quality_diff.md`` holds CaSSLe − finetune per method. The reduced
budget (``--epochs``, ``--subset`` = ``--train_fraction``: a seeded,
class-stratified fraction of every task's training images, test sets whole,
``--crop_size``) is the same for every run; the joint run trains the same
number of epochs over the union of the tasks' subsets, so it takes as many
optimizer steps as a 5-task run.

    PYTHONPATH=$PWD nice -n 10 python bench/quality.py                      # all 13 runs
    PYTHONPATH=$PWD python bench/quality.py --methods barlow_twins byol simclr
    PYTHONPATH=$PWD python bench/quality.py --table_only                     # rebuild tables
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["barlow_twins", "byol", "mocov2plus", "simclr", "swav", "vicreg"]

#: method arguments scaled down to the small budget (projector widths are set for all methods by --proj_dim)
METHOD_OVERRIDES = {
    "byol": ["--pred_hidden_dim", "{proj}"],
    "mocov2plus": ["--queue_size", "4096"],  # the default 65536 exceeds the whole subset
    "swav": ["--num_prototypes", "300", "--queue_size", "0"],
    "vicreg": ["--lr", "0.05"],  # at --lr 0.3 (SGD) VICReg's loss and features went NaN within task 0
}
COLUMNS = ["method", "strategy", "tasks", "knn_joint", "ridge_joint", "knn_avg", "ridge_avg",
           "knn_forget", "ridge_forget", "knn_joint_init", "ridge_joint_init", "wall_s", "run_dir"]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--strategies", nargs="+", default=["finetune", "cassle"])
    p.add_argument("--joint_methods", nargs="*", default=["barlow_twins"],
                   help="methods that also get a joint (--num_tasks 1) run; empty for none")
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
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--num_workers", type=int, default=0)
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (each its own process)")
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "quality"))
    p.add_argument("--results", default=str(ROOT / "bench"), help="folder of <tag>_results.{csv,md}")
    p.add_argument("--tag", default="quality",
                   help="name of this table: files <tag>_results.{csv,md} and the bench/README.md block between "
                        "<!-- <tag>:begin --> and <!-- <tag>:end --> (e.g. another budget keeps its own table)")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more main_continual.py arguments, for every run")
    p.add_argument("--table_only", action="store_true", help="only rebuild the tables from finished runs")
    p.add_argument("--dry_run", action="store_true", help="print the commands")
    return p.parse_args()


def plan(a: argparse.Namespace) -> list[tuple[str, str, int]]:
    """``(method, strategy, num_tasks)`` in run order: a method's runs next to each other."""
    runs = []
    for m in a.methods:
        runs += [(m, s, a.num_tasks) for s in a.strategies]
        if m in a.joint_methods:
            runs.append((m, "finetune", 1))
    return runs


def run_dir(a: argparse.Namespace, method: str, strategy: str, tasks: int) -> Path:
    kind = "joint" if tasks == 1 else strategy
    return Path(a.out) / f"{method}-{kind}"


def command(a: argparse.Namespace, method: str, strategy: str, tasks: int) -> list[str]:
    proj = str(a.proj_dim)
    cmd = [
        sys.executable, str(ROOT / "main_continual.py"),
        "--dataset", a.dataset, "--data_dir", a.data_dir, "--encoder", a.encoder, "--crop_size", str(a.crop_size),
        "--method", method, "--strategy", strategy, "--num_tasks", str(tasks), "--split_strategy", "class",
        "--max_epochs", str(a.epochs), "--train_fraction", str(a.subset), "--batch_size", str(a.batch_size),
        "--lr", str(a.lr), "--warmup_epochs", str(a.warmup_epochs), "--proj_hidden_dim", proj, "--output_dim", proj,
        "--seed", str(a.seed), "--num_workers", str(a.num_workers), "--no_progress_bar",
        "--check_val_every_n_epoch", str(10 ** 6), "--probes", "knn", "ridge", "--accelerator", "cpu",
        "--checkpoint_frequency", str(max(1, a.epochs)),
        "--checkpoint_dir", str(run_dir(a, method, strategy, tasks)),
    ]
    if strategy == "cassle":
        cmd += ["--distill_proj_hidden_dim", proj]
    cmd += [x.format(proj=proj) for x in METHOD_OVERRIDES.get(method, [])]
    return cmd + list(a.extra)


def row(a: argparse.Namespace, method: str, strategy: str, tasks: int) -> dict | None:
    d = run_dir(a, method, strategy, tasks)
    try:
        m = json.loads((d / "results" / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if len(m.get("tasks_done", [])) != tasks:
        return None
    p = m["probes"]
    wall = d / "wall_s.txt"
    r = {"method": method, "strategy": "joint" if tasks == 1 else strategy, "tasks": tasks,
         "wall_s": float(wall.read_text()) if wall.exists() else float("nan"), "run_dir": str(d.relative_to(ROOT)) if d.is_relative_to(ROOT) else str(d)}
    for probe in ("knn", "ridge"):
        r[f"{probe}_joint"] = p[probe]["joint_accuracy"]
        r[f"{probe}_avg"] = p[probe]["average_accuracy"]
        r[f"{probe}_forget"] = p[probe]["average_forgetting"] if tasks > 1 else float("nan")
        r[f"{probe}_joint_init"] = float(p[probe].get("baseline_joint", float("nan")))
    return r


def fmt(x) -> str:
    if isinstance(x, float):
        return "–" if x != x else f"{x:.2f}"
    return str(x)


def write_tables(a: argparse.Namespace) -> list[dict]:
    rows = [r for r in (row(a, *k) for k in plan(a)) if r is not None]
    res = Path(a.results)
    with open(res / f"{a.tag}_results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()})
    lines = ["| method | strategy | kNN joint | ridge joint | kNN task-avg | ridge task-avg | kNN forgetting | ridge forgetting "
             "| kNN joint, random init | ridge joint, random init | wall s |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r[k]) for k in COLUMNS if k not in ("tasks", "run_dir")) + " |")
    by = {(r["method"], r["strategy"]): r for r in rows}
    diff = ["| method | Δ kNN joint | Δ ridge joint | Δ kNN task-avg | Δ ridge task-avg | Δ kNN forgetting | Δ ridge forgetting |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for m in a.methods:
        f, c = by.get((m, "finetune")), by.get((m, "cassle"))
        if f and c:
            diff.append(f"| {m} | " + " | ".join(f"{c[k] - f[k]:+.2f}" for k in
                        ("knn_joint", "ridge_joint", "knn_avg", "ridge_avg", "knn_forget", "ridge_forget")) + " |")
    text = ("Final accuracies (%) after the last task; joint = all-class probe over the whole test set; "
            "random init = the same probe on the untrained encoder (same seed).\n\n"
            + "\n".join(lines) + "\n\nCaSSLe − finetune (positive accuracy and negative forgetting favour CaSSLe):\n\n"
            + "\n".join(diff) + "\n")
    (res / f"{a.tag}_results.md").write_text(text)
    readme = res / "README.md"
    begin, end = f"<!-- {a.tag}:begin -->", f"<!-- {a.tag}:end -->"
    if readme.exists() and begin in readme.read_text():
        omp = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if os.environ.get("OMP_NUM_THREADS") else ""
        cmd = " ".join([f"{omp}PYTHONPATH=$PWD nice -n 10 python bench/quality.py"] + [x for x in sys.argv[1:] if x != "--table_only"])
        r = readme.read_text()
        block = f"{begin}\nCommand: `{cmd}`\n\n{text}{end}"
        readme.write_text(r[: r.index(begin)] + block + r[r.index(end) + len(end):])
    return rows


def main() -> int:
    a = parse()
    if a.table_only:
        print((Path(a.results) / f"{a.tag}_results.md").read_text() if write_tables(a) else "no finished run")
        return 0
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    todo = []
    for method, strategy, tasks in plan(a):
        d = run_dir(a, method, strategy, tasks)
        if a.dry_run:
            print(" ".join(command(a, method, strategy, tasks)))
        elif row(a, method, strategy, tasks) is not None:
            print(f"[quality] {d.name}: finished earlier, kept")
        else:
            todo.append((method, strategy, tasks))
    lock = threading.Lock()

    def one(key: tuple[str, str, int]) -> None:
        d = run_dir(a, *key)
        d.parent.mkdir(parents=True, exist_ok=True)
        print(f"[quality] {d.name}: running", flush=True)
        t0 = time.perf_counter()
        with open(d.parent / f"{d.name}.log", "a") as log:
            rc = subprocess.call(command(a, *key), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t0
        if rc != 0:
            print(f"[quality] {d.name}: FAILED (exit {rc}), see {d.parent / (d.name + '.log')}", flush=True)
            return
        (d / "wall_s.txt").write_text(f"{wall:.1f}\n")
        print(f"[quality] {d.name}: done in {wall:.0f} s", flush=True)
        with lock:
            write_tables(a)

    if todo:
        with ThreadPoolExecutor(max_workers=max(1, a.parallel)) as pool:
            list(pool.map(one, todo))
    if not a.dry_run:
        write_tables(a)
        print((Path(a.results) / f"{a.tag}_results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
