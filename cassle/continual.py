"""The task loop: every task in one process, a checkpoint and probes after each.

``run(args)`` is what ``main_continual.py`` calls. In order:

1. :func:`prepare_run` checks everything that can be wrong (run directory,
   data, split, pretrained checkpoint, precision on this machine) before any
   file is written or any step is trained;
2. the random-initialisation baseline is probed (forward transfer needs it);
3. for each task: one ``Trainer.fit`` (resuming from ``resume/task{t}-last.ckpt``
   when an earlier run was interrupted mid-task), ``task{t}.ckpt`` written
   atomically, probes on frozen features fill row ``t`` of the accuracy matrix,
   results and run state rewritten atomically.

Running the same command again resumes: mid-task from the latest epoch
checkpoint, or at the next task; a finished run prints its results and exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import LearningRateMonitor

from cassle.callbacks import EpochCheckpoint as _EpochCheckpoint  # noqa: F401  (tests patch it here)
from cassle.callbacks import EpochLine, EpochSeeds, FiniteLoss, resume_epoch
from cassle.checkpoint import (
    AtomicCheckpointIO,
    CheckpointError,
    atomic_write_json,
    atomic_write_text,
    load_task_checkpoint,
    load_weights,
    safe_torch_load,
    task_checkpoint,
)
from cassle.devices import resolve_accelerator
from cassle.errors import DivergedError, RunError  # noqa: F401  (RunError re-exported)
from cassle.logs import build_loggers, log_results, quiet_framework_noise
from cassle.rundir import (  # noqa: F401  (RESUMABLE_CHANGES re-exported)
    DIVERGENCE_FIXES,
    RESUMABLE_CHANGES,
    changed_arguments,
    clean_temp_files,
    is_launcher_file,
    run_identity,
    run_lock,
)

log = logging.getLogger("cassle")


@dataclass
class RunPlan:
    """Everything ``prepare_run`` established, ready to train."""

    args: argparse.Namespace
    cfg: dict[str, Any]
    run_dir: Path
    datamodule: Any
    model_cls: type
    completed: list[int]
    start_task: int
    report: Any
    pretrained: dict[str, Any] | None
    #: ``{"task": t}`` while the run's last attempt stopped on a non-finite loss in task ``t``
    diverged: dict[str, Any] | None = None
    #: arguments changed since args.json (allowed after a divergence: :data:`cassle.rundir.DIVERGENCE_FIXES`)
    changed: dict[str, Any] | None = None
    #: optimizer steps each finished task took: the loggers' step continues across tasks
    task_steps: dict[int, int] = field(default_factory=dict)

    def step_offset(self, task: int) -> int:
        """The run's step at which ``task`` starts (the steps of the finished tasks before it)."""
        return sum(n for t, n in self.task_steps.items() if t < task and t in self.completed)


def args_to_cfg(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items()}


def _resolve_accelerator(args: argparse.Namespace) -> str:
    return resolve_accelerator(args.accelerator)


def prepare_run(args: argparse.Namespace) -> RunPlan:
    """Validate the run against its directory, data and checkpoints; write nothing."""
    from cassle.data.datamodule import ContinualDataModule
    from cassle.data.datasets import check_dataset
    from cassle.eval.report import ContinualReport
    from cassle.strategies import build_model_class

    run_dir = Path(args.checkpoint_dir)
    state_file = run_dir / "run_state.json"
    state: dict[str, Any] = {}
    fixes: dict[str, Any] = {}
    if (run_dir / "args.json").exists():
        try:
            saved = json.loads((run_dir / "args.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise RunError(
                f"{run_dir}/args.json is unreadable ({e}); pass another --checkpoint_dir or --name"
            ) from None
        if state_file.exists():
            try:
                state = json.loads(state_file.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise RunError(f"{state_file} is unreadable ({e}); delete the run directory to restart") from None
        # args.json also stores values derived at start-up (num_classes, num_views): compare the CLI's own
        diff = changed_arguments(saved, args_to_cfg(args), build_model_class(args.method, args.strategy))
        fixes = {k: v for k, v in diff.items() if k in DIVERGENCE_FIXES} if state.get("diverged") else {}
        diff = {k: v for k, v in diff.items() if k not in fixes}
        if diff:
            shown = ", ".join(f"--{k} {a!r} -> {b!r}" for k, (a, b) in list(diff.items())[:5])
            raise RunError(
                f"{run_dir} already holds a run with other arguments ({shown}). "
                "Rerun with the same arguments to resume it, or pass a new --name / --checkpoint_dir; "
                "nothing was overwritten."
            )
    elif run_dir.exists() and any(not is_launcher_file(p.name) for p in run_dir.iterdir()):
        raise RunError(
            f"{run_dir} exists, is not empty and holds no cassle run (no args.json); "
            "pass a new --name or --checkpoint_dir so nothing there is overwritten"
        )

    accel = _resolve_accelerator(args)
    if accel == "cpu" and args.precision == "16-mixed":
        raise RunError("--precision 16 needs a GPU; on the CPU use --precision bf16 or 32")

    try:
        check_dataset(args.dataset, args.data_dir, no_labels=args.no_labels)
    except ValueError as e:
        raise RunError(str(e)) from None

    model_cls = build_model_class(args.method, args.strategy)
    cfg = args_to_cfg(args)
    views_for = getattr(model_cls, "views_for", None)
    cfg["num_views"] = views_for(cfg) if views_for is not None else getattr(model_cls, "num_views", 2)
    cfg["return_raw"] = bool(getattr(model_cls, "needs_raw_images", False))  # replay: batches carry raw uint8 images
    dm = ContinualDataModule(cfg)
    try:
        dm.setup("fit")  # loads the data and computes the split: too many tasks etc. fail here
    except ValueError as e:
        raise RunError(str(e)) from None
    if args.no_labels:
        cfg["num_classes"] = 0
    else:
        cfg["num_classes"] = dm.num_classes

    completed = sorted(int(t) for t in state.get("completed_tasks", []))
    pretrained = None
    # the run continues from its newest readable task checkpoint: a missing or truncated one (a kill during a
    # copy, a deleted file) makes the rerun train that task again, from the task before it
    while completed:
        t = completed[-1]
        path = run_dir / f"task{t}.ckpt"
        try:
            pretrained = load_task_checkpoint(path, args.method, args.encoder)
            break
        except CheckpointError as e:
            why = "is missing" if not path.exists() else f"is unreadable ({str(e).splitlines()[0]})"
            print(f"{path} {why}: task {t} will be trained again" + (f" from task{t - 1}.ckpt" if t else ""))
            completed.pop()
    start = max([args.task_idx] + [t + 1 for t in completed])
    if pretrained is None and args.pretrained_model is not None:
        try:
            pretrained = load_task_checkpoint(args.pretrained_model, args.method, args.encoder)
        except CheckpointError as e:
            raise RunError(str(e)) from None
    resume_ckpt = run_dir / "resume" / f"task{start}-last.ckpt"
    if start < args.num_tasks and resume_ckpt.exists():
        try:
            safe_torch_load(resume_ckpt, "resume checkpoint")
        except CheckpointError as e:
            raise RunError(str(e)) from None

    report = (
        ContinualReport.from_dict(state["report"])
        if "report" in state
        else ContinualReport(args.num_tasks, args.probes)
    )
    from cassle.eval.report import run_title

    # the figures' title (also for a run_state.json written before titles existed)
    report.title = run_title(args.method, args.strategy, args.dataset, args.split_strategy, args.num_tasks)
    task_steps = {int(t): int(n) for t, n in state.get("task_steps", {}).items()}
    return RunPlan(
        args,
        cfg,
        run_dir,
        dm,
        model_cls,
        completed,
        start,
        report,
        pretrained,
        state.get("diverged"),
        fixes or None,
        task_steps,
    )


def _make_trainer(plan: RunPlan, task: int) -> pl.Trainer:
    args = plan.args
    devices = args.devices
    n_dev = len(devices) if isinstance(devices, list) else (devices if isinstance(devices, int) else 1)
    strategy = "ddp" if n_dev * args.num_nodes > 1 else "auto"
    return pl.Trainer(
        max_epochs=args.max_epochs,
        accelerator=_resolve_accelerator(args),
        devices=devices,
        num_nodes=args.num_nodes,
        strategy=strategy,
        use_distributed_sampler=not getattr(args, "online", False),  # the online stream shards itself by rank
        precision=args.precision,
        sync_batchnorm=args.sync_batchnorm,
        logger=build_loggers(plan.run_dir, plan.args, plan.cfg, task, plan.step_offset(task)),
        callbacks=[
            EpochSeeds(args.seed, task),
            FiniteLoss(task, args.lr, _resolve_accelerator(args) == "cpu"),  # before the checkpoint: NaN never saved
            _EpochCheckpoint(plan.run_dir / "resume" / f"task{task}-last.ckpt", args.checkpoint_frequency),
            LearningRateMonitor(logging_interval="step"),
            *([EpochLine(task)] if args.no_progress_bar else []),
        ],
        plugins=[AtomicCheckpointIO()],
        enable_checkpointing=False,
        enable_progress_bar=not args.no_progress_bar,
        enable_model_summary=task == plan.start_task,
        check_val_every_n_epoch=args.check_val_every_n_epoch,
        log_every_n_steps=args.log_every_n_steps,
        num_sanity_val_steps=0,
        default_root_dir=str(plan.run_dir),
    )


def _eval_device(args: argparse.Namespace) -> torch.device:
    return torch.device("cuda") if _resolve_accelerator(args) == "gpu" else torch.device("cpu")


def _probe(plan: RunPlan, backbone: torch.nn.Module) -> dict | None:
    from cassle.eval.protocol import evaluate_after_task

    if not plan.args.probes or plan.args.no_labels:
        return None
    device = _eval_device(plan.args)
    prev = next(backbone.parameters()).device
    backbone.to(device)
    try:
        return evaluate_after_task(
            backbone,
            plan.datamodule,
            plan.args.probes,
            device,
            knn_k=plan.args.knn_k,
            knn_temperature=plan.args.knn_temperature,
        )
    except FloatingPointError as e:
        raise RunError(str(e)) from None
    finally:
        backbone.to(prev)


def _is_global_zero() -> bool:
    return (
        int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) or 0) == 0
        and int(os.environ.get("LOCAL_RANK", "0") or 0) == 0
    )


def _save_state(plan: RunPlan) -> None:
    state = {
        "completed_tasks": sorted(plan.completed),
        "task_steps": {str(t): n for t, n in sorted(plan.task_steps.items())},
        "report": plan.report.to_dict(),
    }
    if plan.diverged:
        state["diverged"] = plan.diverged
    atomic_write_json(plan.run_dir / "run_state.json", state)
    plan.report.write(plan.run_dir / "results")


def run(args: argparse.Namespace) -> Any:
    """Train every task of the run in ``args``; returns the final report."""
    from cassle.eval.report import format_table

    quiet_framework_noise()
    plan = prepare_run(args)
    run_dir, cfg = plan.run_dir, plan.cfg
    if plan.start_task >= args.num_tasks and plan.report.is_written(run_dir / "results"):
        print(f"Run in {run_dir} already finished all {args.num_tasks} tasks; its results:")
        print(format_table(plan.report))
        return plan.report

    main = _is_global_zero()
    pl.seed_everything(args.seed, workers=True, verbose=False)
    model = plan.model_cls(**cfg)  # built before anything is written: a model that cannot be built leaves no trace
    if not main:
        return _train(plan, model, args, main)
    with run_lock(run_dir):  # one process per run directory
        plan = prepare_run(args)  # re-read under the lock: another process may have moved the run on
        for stale in clean_temp_files(run_dir):  # left by a process killed during an atomic write
            log.warning("removed %s, left by an interrupted write", stale)
        if (run_dir / "run_state.json").exists() and not plan.report.is_written(run_dir / "results"):
            print(f"rebuilding {run_dir}/results/ from run_state.json (missing or out of date)")
            plan.report.write(run_dir / "results")
        if plan.start_task >= args.num_tasks:
            print(f"Run in {run_dir} already finished all {args.num_tasks} tasks; its results:")
            print(format_table(plan.report))
            return plan.report
        if plan.changed:  # after a divergence: the new optimisation settings become the run's
            shown = ", ".join(f"--{k} {a!r} -> {b!r}" for k, (a, b) in plan.changed.items())
            print(f"the last attempt diverged in task {plan.diverged['task']}; continuing with {shown}")
        if not (run_dir / "args.json").exists() or plan.changed:
            atomic_write_json(run_dir / "args.json", json.loads(json.dumps(cfg, default=str)))
        return _train(plan, model, args, main)


def _train(plan: RunPlan, model: Any, args: argparse.Namespace, main: bool) -> Any:
    """The task loop of :func:`run` (under the run lock on the main process)."""
    from cassle.eval.report import format_table

    run_dir, cfg = plan.run_dir, plan.cfg
    dm = plan.datamodule

    if main and not args.no_baseline and not all(plan.report.has_baseline(p) for p in args.probes):
        base = _probe(plan, model.backbone)
        if base is not None:
            plan.report.set_baseline(base)
            _save_state(plan)
    if plan.pretrained is not None:
        load_weights(model, plan.pretrained)

    for task in range(plan.start_task, args.num_tasks):
        pl.seed_everything(args.seed + task, workers=True, verbose=False)
        dm.set_task(task)
        model.on_task_start(task)
        if hasattr(model, "use_stream_augmentation"):
            model.use_stream_augmentation(dm)  # replay augments its samples as the stream (handed over, not fetched)
        resume = run_dir / "resume" / f"task{task}-last.ckpt"
        ckpt_path = str(resume) if resume.exists() else None
        dm.resume_at(resume_epoch(resume) if ckpt_path else 0)
        if ckpt_path:
            log.warning("resuming task %d from %s", task, ckpt_path)
        print(
            f"=== task {task}/{args.num_tasks - 1}: classes {dm.task_classes[task][:10]}{'...' if len(dm.task_classes[task]) > 10 else ''}"
            f" ({len(dm.split.train_indices[task])} training images)"
        )
        trainer = _make_trainer(plan, task)
        try:
            trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
        except DivergedError:
            if trainer.is_global_zero:  # keep nothing of the task; the rerun trains it again from the last task
                resume.unlink(missing_ok=True)
                plan.diverged = {"task": task}
                _save_state(plan)
            raise
        if trainer.interrupted:
            raise KeyboardInterrupt
        if not trainer.is_global_zero:
            continue
        from cassle.checkpoint import atomic_torch_save

        atomic_torch_save(task_checkpoint(model, task, cfg), run_dir / f"task{task}.ckpt")
        atomic_write_text(run_dir / "last_checkpoint.txt", str((run_dir / f"task{task}.ckpt").resolve()) + "\n")
        result = _probe(plan, model.backbone)
        if result is not None:
            plan.report.update(task, result)
            log_results(trainer.loggers, plan.report, result, task, trainer.global_step)
        plan.task_steps[task] = int(trainer.global_step)
        plan.completed.append(task)
        plan.diverged = None
        _save_state(plan)
        if resume.exists():
            resume.unlink()
        if result is not None:
            print(format_table(plan.report))
    if args.wandb:
        import wandb

        wandb.finish()
    if main:
        shutil.rmtree(run_dir / "resume", ignore_errors=True)
        print(f"\nDone. Checkpoints and results in {run_dir}/ (results/accuracy_matrix.csv, results/metrics.json)")
    return plan.report
