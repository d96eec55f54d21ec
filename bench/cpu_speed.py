#!/usr/bin/env python3
"""Training-step speed on the CPU: which of channels_last, bf16 autocast and ``torch.compile`` pay off?

Issue 9 asks to make the Split-Fashion-MNIST recipe faster before asking it for more compute. This times the
benchmark's own step — ``slim_resnet9`` at 16 px, Barlow Twins with 512-wide heads, batch 128, SGD — as a bare
PyTorch loop (the method's ``training_step`` + backward + step, no Lightning: the framework's own overhead is
``bench/step_overhead.py``'s subject), in variants that change one thing each:

* ``fp32``: the baseline;
* ``channels_last``: model and inputs in NHWC memory format;
* ``channels_last_model``: the model only (inputs stay NCHW): what ``main_continual.py --channels_last`` does;
* ``bf16``: ``torch.autocast("cpu", dtype=torch.bfloat16)`` around the forward pass;
* ``compile``: ``torch.compile`` of the backbone (compile time excluded: it happens in the warm-up steps).

Variants are interleaved (fp32, channels_last, bf16, compile, fp32, ...) ``--reps`` times after ``--warmup`` untimed
steps each, so a noisy machine slows them alike; each line prints the median over the repetitions of
``variant / fp32`` step time, measured in the same run::

    cpu_speed[<variant>] time/fp32 = 0.xx  (median of R; fp32 x ms/step, variant y ms/step)

    PYTHONPATH=$PWD python bench/cpu_speed.py                   # ~3 min on 2 cores
    PYTHONPATH=$PWD python bench/cpu_speed.py --variants fp32 bf16 --reps 5
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

import torch

from cassle.methods import METHODS

VARIANTS = ("fp32", "channels_last", "channels_last_model", "bf16", "compile")


def make_model(args: argparse.Namespace) -> torch.nn.Module:
    """The benchmark's model (``--method`` on ``--encoder`` at ``--base_width``), seeded, in train mode."""
    torch.manual_seed(0)
    cfg = dict(
        encoder=args.encoder,
        base_width=args.base_width,
        crop_size=args.crop_size,
        num_classes=10,
        proj_hidden_dim=args.proj_dim,
        output_dim=args.proj_dim,
        batch_size=args.batch_size,
        lr=0.3,
        max_epochs=10,
    )
    return METHODS[args.method].from_flat(cfg).train()


def build(variant: str, args: argparse.Namespace) -> tuple[Callable[[], None], Callable[[], None]]:
    """``(step, sync)`` for one variant: ``step()`` runs one optimizer step on a fixed batch."""
    model = make_model(args)
    g = torch.Generator().manual_seed(1)
    views = [torch.randn(args.batch_size, 3, args.crop_size, args.crop_size, generator=g) for _ in range(2)]
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    if variant == "channels_last_model":
        model = model.to(memory_format=torch.channels_last)
    if variant == "compile":
        model.backbone = torch.compile(model.backbone)
    batch = (torch.arange(args.batch_size), views, torch.randint(0, 10, (args.batch_size,), generator=g))
    opt = torch.optim.SGD([p for grp in model.learnable_params for p in grp["params"]], lr=0.05, momentum=0.9)
    amp = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        if variant == "bf16"
        else (lambda: contextlib.nullcontext())
    )

    def step() -> None:
        with amp():
            loss = model.training_step(batch, 0)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.float().backward()
        opt.step()

    return step, lambda: None


def time_steps(step: Callable[[], None], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--method", default="barlow_twins")
    p.add_argument("--encoder", default="slim_resnet9")
    p.add_argument("--base_width", type=int, default=None, help="the encoder's first-stage width (default: its own)")
    p.add_argument("--crop_size", type=int, default=16)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--proj_dim", type=int, default=512)
    p.add_argument("--steps", type=int, default=5, help="timed steps per repetition")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant (compilation happens here)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = ["fp32"] + [v for v in args.variants if v != "fp32"]
    steps = {}
    for v in variants:
        step, _ = build(v, args)
        for _ in range(args.warmup):
            step()
        steps[v] = step
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.reps):
        for v in variants:
            times[v].append(time_steps(steps[v], args.steps))
    ratios = {}
    for v in variants[1:]:
        r = statistics.median(t / b for t, b in zip(times[v], times["fp32"]))
        ratios[v] = r
        print(
            f"cpu_speed[{v}] time/fp32 = {r:.2f}  (median of {args.reps}; fp32 "
            f"{1000 * statistics.median(times['fp32']):.0f} ms/step, {v} {1000 * statistics.median(times[v]):.0f} ms/step)",
            flush=True,
        )
    return ratios


if __name__ == "__main__":
    main()
