#!/usr/bin/env python3
"""Framework overhead of a training step: Lightning + cassle vs a bare PyTorch loop.

Both sides do the same math on the same fixed in-memory batch, starting from
the same weights: backbone pass per view, online classifier on detached
features, the method's projector and loss, ``loss.backward()``, the same
optimizer (SGD, lr scaled by batch/256) and the same per-step warmup-cosine
schedule. The cassle side is the real thing: the ``Strategy(Method)`` class
from :func:`cassle.strategies.build_model_class`, driven by a Lightning
``Trainer`` configured as ``main_continual.py`` configures it (CSV logger,
``log_every_n_steps`` 10, no checkpointing callbacks, no progress bar). Only
the step loop is timed (a callback stamps the start of the first timed batch
and the end of the last), after ``--warmup`` untimed steps; the bare loop is
timed over the same steps.

Runs are interleaved (bare, Lightning, bare, Lightning, ...) ``--reps`` times
and each printed ratio is the median over the repetitions of the per-pair
ratio ``lightning / bare``, measured in the same run. Lines printed::

    step_overhead[<method>] lightning/bare = 1.0xx  (median of R pairs; bare x ms/step, lightning y ms/step)

plus, with ``--diagnose``, the same ratio for variants that switch one thing
off on the Lightning side (logger, per-step logging, online classifier) so the
source of an overhead can be read off, and one that adds main_continual.py's
divergence stop (``FiniteLoss``, a host sync of the loss every step): its cost.

    PYTHONPATH=$PWD python bench/step_overhead.py                 # ~1 min on 2 cores
    PYTHONPATH=$PWD python bench/step_overhead.py --diagnose --methods barlow_twins simclr
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--methods", nargs="+", default=["barlow_twins"])
    p.add_argument("--encoder", default="slim_resnet9")
    p.add_argument("--crop_size", type=int, default=16)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--proj_dim", type=int, default=256)
    p.add_argument("--num_classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=30, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before the timed ones")
    p.add_argument("--reps", type=int, default=5, help="interleaved (bare, lightning) pairs")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--diagnose", action="store_true", help="also time Lightning variants with one feature off")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def make_cfg(a: argparse.Namespace, method: str, total_steps: int) -> dict[str, Any]:
    return dict(
        method=method,
        strategy="finetune",
        encoder=a.encoder,
        crop_size=a.crop_size,
        num_classes=a.num_classes,
        proj_hidden_dim=a.proj_dim,
        output_dim=a.proj_dim,
        pred_hidden_dim=a.proj_dim,
        batch_size=a.batch_size,
        lr=0.3,
        classifier_lr=0.1,
        optimizer="sgd",
        scheduler="warmup_cosine",
        warmup_epochs=1,
        max_epochs=1,
        queue_size=0 if method == "swav" else 4096,
        num_prototypes=300,
    )


def make_batch(a: argparse.Namespace, num_views: int) -> tuple:
    g = torch.Generator().manual_seed(a.seed)
    views = [torch.randn(a.batch_size, 3, a.crop_size, a.crop_size, generator=g) for _ in range(num_views)]
    targets = torch.randint(0, a.num_classes, (a.batch_size,), generator=g)
    return torch.arange(a.batch_size), views, targets


class FixedBatches(torch.utils.data.Dataset):
    """``n`` items, each the same pre-built batch (use with ``batch_size=None``)."""

    def __init__(self, batch: tuple, n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple:
        return self.batch


def bare_step_fn(model: Any, method: str) -> Callable[[tuple], torch.Tensor]:
    """The method's loss written as plain PyTorch on the model's own modules (no Lightning)."""
    from cassle import losses

    def common(views, targets):
        feats = [model.backbone(v) for v in views]
        cls = F.cross_entropy(model.classifier(feats[0].detach()), targets) if model.classifier is not None else 0.0
        return feats, cls

    if method == "barlow_twins":

        def step(batch):
            _, views, targets = batch
            feats, cls = common(views, targets)
            z = [model.projector(f) for f in feats]
            return cls + losses.barlow_loss_func(z[0], z[1], lamb=model.lamb, scale_loss=model.scale_loss)
    elif method == "simclr":

        def step(batch):
            _, views, targets = batch
            feats, cls = common(views, targets)
            z = [model.projector(f) for f in feats]
            return cls + losses.simclr_loss_func(
                torch.cat(z), torch.arange(len(targets)).repeat(len(z)), temperature=model.temperature
            )
    elif method == "vicreg":

        def step(batch):
            _, views, targets = batch
            feats, cls = common(views, targets)
            z = [model.projector(f) for f in feats]
            return cls + losses.vicreg_loss_func(
                z[0],
                z[1],
                sim_loss_weight=model.sim_loss_weight,
                var_loss_weight=model.var_loss_weight,
                cov_loss_weight=model.cov_loss_weight,
            )
    else:
        raise SystemExit(f"step_overhead.py has a bare loop for barlow_twins, simclr, vicreg; not {method}")
    return step


def run_bare(model: Any, method: str, batch: tuple, a: argparse.Namespace, total: int) -> float:
    from cassle.methods.optim import build_optimizer, build_scheduler

    scale = model.lr_scale()
    groups = []
    for g in model.learnable_params:
        g = dict(g)
        if "lr" in g:
            g["lr"] = g["lr"] * scale
        groups.append(g)
    opt = build_optimizer(
        "sgd", groups, lr=model.lr * scale, weight_decay=model.weight_decay, momentum=model.sgd_momentum
    )
    sched = build_scheduler("warmup_cosine", opt, total_steps=total, warmup_steps=1)
    step = bare_step_fn(model, method)
    model.train()
    t0 = 0.0
    for i in range(total):
        if i == a.warmup:
            t0 = time.perf_counter()
        loss = step(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return (time.perf_counter() - t0) / a.steps


def run_lightning(
    model: Any,
    batch: tuple,
    a: argparse.Namespace,
    total: int,
    logger: bool = True,
    log_every: int = 10,
    finite_loss: bool = False,
) -> float:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    from cassle.callbacks import FiniteLoss

    class Stamp(pl.Callback):
        t0 = t1 = 0.0

        def on_train_batch_start(self, trainer, pl_module, b, batch_idx):
            if batch_idx == a.warmup:
                Stamp.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, b, batch_idx):
            if batch_idx == total - 1:
                Stamp.t1 = time.perf_counter()

    loader = torch.utils.data.DataLoader(FixedBatches(batch, total), batch_size=None, shuffle=False)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(
            max_epochs=1,
            accelerator="cpu",
            devices=1,
            logger=CSVLogger(tmp, name="logs") if logger else False,
            # main_continual.py's divergence stop, checked every step as on the CPU (on a GPU: every log interval)
            callbacks=[Stamp(), *([FiniteLoss(0, 1.0, every_step=True)] if finite_loss else [])],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            log_every_n_steps=log_every,
            num_sanity_val_steps=0,
            default_root_dir=tmp,
        )
        trainer.fit(model, train_dataloaders=loader)
    return (Stamp.t1 - Stamp.t0) / a.steps


def main() -> int:
    a = parse()
    warnings.filterwarnings("ignore")
    import logging

    for name in (
        "lightning",
        "lightning.pytorch",
        "lightning.fabric",
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch.accelerators.cuda",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
    if a.threads:
        torch.set_num_threads(a.threads)
    from cassle.strategies import build_model_class

    total = a.warmup + a.steps
    for method in a.methods:
        cls = build_model_class(method, "finetune")
        torch.manual_seed(a.seed)
        proto = cls.from_flat(make_cfg(a, method, total))
        batch = make_batch(a, cls.num_views)
        variants: dict[str, dict[str, Any]] = {"lightning": {}}
        if a.diagnose:
            variants.update(
                {
                    "lightning, no logger": {"logger": False},
                    "lightning, log_every_n_steps=1000": {"log_every": 1000},
                    "lightning, no online classifier": {"no_classifier": True},
                    "lightning + FiniteLoss every step": {"finite_loss": True},
                }
            )
        pairs: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}  # (bare, lightning) per rep
        run_bare(copy.deepcopy(proto), method, batch, a, total)  # untimed: first-call kernel selection, allocator
        run_lightning(copy.deepcopy(proto), batch, a, total)
        for rep in range(a.reps):
            for name, kw in variants.items():
                kw = dict(kw)
                no_cls = kw.pop("no_classifier", False)
                m_bare, m_light = copy.deepcopy(proto), copy.deepcopy(proto)
                if no_cls:
                    m_bare.classifier = m_light.classifier = None
                bt = run_bare(m_bare, method, batch, a, total)
                lt = run_lightning(m_light, batch, a, total, **kw)
                pairs[name].append((bt, lt))
        for name, ps in pairs.items():
            ratio = statistics.median(lt / bt for bt, lt in ps)
            bare_ms = 1e3 * statistics.median(bt for bt, _ in ps)
            light_ms = 1e3 * statistics.median(lt for _, lt in ps)
            print(
                f"step_overhead[{method}] {name}/bare = {ratio:.3f}  "
                f"(median of {len(ps)} interleaved pairs; bare {bare_ms:.1f} ms/step, {name} {light_ms:.1f} ms/step; "
                f"batch {a.batch_size}, {a.encoder} {a.crop_size}px)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
