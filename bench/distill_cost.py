#!/usr/bin/env python3
"""Cost of CaSSLe's distillation: a CaSSLe training step vs a fine-tuning step at task 1.

Both models are ``build_model_class(method, strategy)`` with the same weights,
moved to task 1 with ``on_task_start(1)`` (CaSSLe then holds a frozen copy of
backbone + projector and trains its predictor), and driven by the same
Lightning ``Trainer`` harness as ``bench/step_overhead.py`` on the same fixed
in-memory batch. The CaSSLe step adds the frozen network's forward pass on
every view, the predictor and the family's distillation loss.

Runs are interleaved (finetune, cassle, finetune, cassle, ...) ``--reps``
times; each printed line is the median of the per-pair ratios, one per method::

    distill_cost[<method>] cassle/finetune = 1.xx  (median of R pairs; finetune x ms/step, cassle y ms/step)

    PYTHONPATH=$PWD python bench/distill_cost.py                      # Barlow Twins, ~1 min on 2 cores
    PYTHONPATH=$PWD python bench/distill_cost.py --methods barlow_twins byol simclr vicreg mocov2plus swav
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_overhead import make_batch, make_cfg, run_lightning  # noqa: E402


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--methods", nargs="+", default=["barlow_twins"])
    p.add_argument("--encoder", default="slim_resnet9")
    p.add_argument("--crop_size", type=int, default=16)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--proj_dim", type=int, default=256, help="projector hidden/output width")
    p.add_argument(
        "--distill_proj_hidden_dim", type=int, default=None, help="CaSSLe predictor hidden width (default: --proj_dim)"
    )
    p.add_argument("--num_classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=20, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before the timed ones")
    p.add_argument("--reps", type=int, default=5, help="interleaved (finetune, cassle) pairs")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def build(method: str, strategy: str, a: argparse.Namespace, total: int):
    from cassle.strategies import build_model_class

    cfg = make_cfg(a, method, total)
    cfg.update(strategy=strategy, distill_proj_hidden_dim=a.distill_proj_hidden_dim or a.proj_dim)
    cls = build_model_class(method, strategy)
    torch.manual_seed(a.seed)  # same backbone / projector weights for both strategies
    model = cls.from_flat(cfg)
    model.on_task_start(0)
    model.on_task_start(1)  # CaSSLe: the teacher is a frozen copy of the current weights
    return model, cls.num_views


def main() -> int:
    a = parse()
    warnings.filterwarnings("ignore")
    for name in (
        "lightning",
        "lightning.pytorch",
        "lightning.fabric",
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
    if a.threads:
        torch.set_num_threads(a.threads)
    total = a.warmup + a.steps
    for method in a.methods:
        ft, num_views = build(method, "finetune", a, total)
        cs, _ = build(method, "cassle", a, total)
        assert cs.distilling and not getattr(ft, "distilling", False)
        batch = make_batch(a, num_views)
        run_lightning(copy.deepcopy(ft), batch, a, total)  # untimed warm-up of both
        run_lightning(copy.deepcopy(cs), batch, a, total)
        pairs = []
        for _ in range(a.reps):
            tf = run_lightning(copy.deepcopy(ft), batch, a, total)
            tc = run_lightning(copy.deepcopy(cs), batch, a, total)
            pairs.append((tf, tc))
        ratio = statistics.median(tc / tf for tf, tc in pairs)
        print(
            f"distill_cost[{method}] cassle/finetune = {ratio:.3f}  (median of {len(pairs)} interleaved pairs; "
            f"finetune {1e3 * statistics.median(p[0] for p in pairs):.1f} ms/step, "
            f"cassle {1e3 * statistics.median(p[1] for p in pairs):.1f} ms/step; task 1, batch {a.batch_size}, "
            f"{a.encoder} {a.crop_size}px, projector {a.proj_dim}, predictor {a.distill_proj_hidden_dim or a.proj_dim})",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
