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
import shutil
import signal
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.utilities.exceptions import SIGTERMException

from cassle import preempt
from cassle.callbacks import ChannelsLast, EpochLine, EpochSeeds, FiniteLoss, LossProgressBar, resume_epoch
from cassle.callbacks import EpochCheckpoint as _EpochCheckpoint  # noqa: F401  (tests patch it here)
from cassle.checkpoint import (
    AtomicCheckpointIO,
    atomic_write_json,
    atomic_write_text,
    load_weights,
    task_checkpoint,
)
from cassle.devices import align_rank_zero_only, check_node_launch, is_global_zero_process
from cassle.errors import DivergedError, RunError  # noqa: F401  (RunError re-exported)
from cassle.logs import build_loggers, log_results, quiet_framework_noise
from cassle.run_plan import (  # noqa: F401  (re-exported)
    RunPlan,
    _resolve_accelerator,
    args_to_cfg,
    prepare_run,
    untrained_model,
)
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


def _world_size(args: argparse.Namespace) -> int:
    devices = args.devices
    n_dev = len(devices) if isinstance(devices, list) else (devices if isinstance(devices, int) else 1)
    return n_dev * args.num_nodes


def _make_trainer(plan: RunPlan, task: int) -> pl.Trainer:
    from lightning.fabric.plugins.environments import SLURMEnvironment

    args = plan.args
    devices = args.devices
    strategy = "ddp" if _world_size(args) > 1 else "auto"
    resume = plan.run_dir / "resume" / f"task{task}-last.ckpt"
    # under SLURM our own handlers stop and requeue (cassle/preempt.py): Lightning's auto-requeue would write
    # hpc_ckpt_N.ckpt mid-step into the run directory and load it into whichever task starts next
    cluster = [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []
    return pl.Trainer(
        max_epochs=args.max_epochs,
        accelerator=_resolve_accelerator(args),
        devices=devices,
        num_nodes=args.num_nodes,
        strategy=strategy,
        use_distributed_sampler=not getattr(args, "online", False),  # the online stream shards itself by rank
        precision=args.precision,
        sync_batchnorm=args.sync_batchnorm,
        logger=build_loggers(
            plan.run_dir,
            plan.args,
            plan.cfg,
            task,
            plan.step_offset(task),
            resume_epoch(resume) if plan.resume_checkpoint(task) else 0,
        ),
        callbacks=[
            EpochSeeds(args.seed, task),
            FiniteLoss(task, args.lr, _resolve_accelerator(args) == "cpu"),  # before the checkpoint: NaN never saved
            _EpochCheckpoint(resume, args.checkpoint_frequency),
            preempt.STOP.for_task(resume, args.checkpoint_frequency),  # after it: SIGUSR1 saves at the epoch's end
            LearningRateMonitor(logging_interval="step"),
            *([EpochLine(task)] if args.no_progress_bar else [LossProgressBar()]),
            *([ChannelsLast()] if getattr(args, "channels_last", False) else []),
        ],
        plugins=[AtomicCheckpointIO(), *cluster],
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


def _trial_forward(plan: RunPlan, model: torch.nn.Module) -> None:
    """One forward pass of the built model on two of the data's training images (eval transform, eval mode, no
    gradient, every random state kept), before anything is written: a model that cannot take this dataset's
    images stops the start here, with nothing left behind that would tie the directory to the bad arguments."""
    args = plan.args
    x = plan.datamodule.trial_batch(min(plan.start_task, args.num_tasks - 1))
    was_training = model.training
    model.eval()  # BatchNorm keeps its running statistics: the run's numbers do not depend on the trial
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            model(x)
    except Exception as e:  # noqa: BLE001  (whatever the model raises on the data is the arguments' problem)
        raise RunError(
            f"--method {args.method} with --encoder {args.encoder} fails on {args.dataset}'s images (a batch of "
            f"shape {tuple(x.shape)}): {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}; "
            "fix the arguments and rerun: nothing was written"
        ) from None
    finally:
        model.train(was_training)


def _is_global_zero() -> bool:
    return is_global_zero_process()


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
    """Train every task of the run in ``args``; returns the final report.

    A stop on a signal (SIGUSR1, SIGTERM, Ctrl-C: :mod:`cassle.preempt`) prints what is saved and that the same
    command resumes it, requeues the job under SLURM, and exits with status ``128 + signal``."""
    stopper = preempt.STOP.install()
    try:
        return _run(args)
    except (preempt.Stopped, KeyboardInterrupt) as e:
        signum = e.signum if isinstance(e, preempt.Stopped) else signal.SIGINT
        main = _is_global_zero()
        if main and stopper.run_dir is not None:
            print("\n" + preempt.stop_message(stopper.run_dir, stopper.task, args.num_tasks, signum), flush=True)
        elif main:
            print(f"\nstopped by signal {signum} before training started; the same command starts it", flush=True)
        if main and signum != signal.SIGINT:  # last: a running job that is requeued is stopped by SLURM
            note = preempt.requeue_slurm_job(signum).strip()
            if note:
                print(note, flush=True)
        raise SystemExit(128 + signum) from None
    finally:
        stopper.restore()


def _run(args: argparse.Namespace) -> Any:
    from cassle.eval.report import format_table

    quiet_framework_noise()
    check_node_launch(args.num_nodes)  # a multi-node start that would wait forever for its other nodes: one error
    align_rank_zero_only()  # a node started by hand is not Lightning's rank 0 before its process group exists
    plan = prepare_run(args)
    run_dir, cfg = plan.run_dir, plan.cfg
    if plan.start_task >= args.num_tasks and plan.report.is_written(run_dir / "results"):
        print(f"Run in {run_dir} already finished all {args.num_tasks} tasks; its results:")
        print(format_table(plan.report))
        return plan.report

    main = _is_global_zero()
    # built (seeded) before anything is written (a model that cannot be built leaves no trace), from the typed config
    model = untrained_model(plan.model_cls, plan.cfg)
    _trial_forward(plan, model)
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
        if plan.restarted:  # the last attempt left nothing to keep: the corrected arguments start it afresh
            shown = ", ".join(f"--{k} {a!r} -> {b!r}" for k, (a, b) in list(plan.restarted.items())[:5])
            print(
                f"{run_dir}: the last attempt stopped before it finished a task or saved a checkpoint; starting it "
                f"afresh with {shown}"
            )
        if not (run_dir / "args.json").exists() or plan.changed or plan.restarted:
            atomic_write_json(run_dir / "args.json", json.loads(json.dumps(cfg, default=str)))
        return _train(plan, model, args, main)


def _train(plan: RunPlan, model: Any, args: argparse.Namespace, main: bool) -> Any:
    """The task loop of :func:`run` (under the run lock on the main process)."""
    from cassle.eval.report import format_table

    run_dir, cfg = plan.run_dir, plan.cfg
    dm = plan.datamodule
    preempt.STOP.run_dir, preempt.STOP.task = run_dir, plan.start_task  # what a stop on a signal reports

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
        ckpt_path = str(resume) if plan.resume_checkpoint(task) else None
        dm.resume_at(resume_epoch(resume) if ckpt_path else 0)
        if ckpt_path:
            log.warning("resuming task %d from %s", task, ckpt_path)
        print(
            f"=== task {task}/{args.num_tasks - 1}: classes {dm.task_classes[task][:10]}{'...' if len(dm.task_classes[task]) > 10 else ''}"
            f" ({len(dm.split.train_indices[task])} training images)"
        )
        stop = preempt.STOP
        stop.run_dir, stop.task = run_dir, task
        if stop.requested and _world_size(args) == 1:  # a SIGUSR1 between tasks (several ranks: at an epoch's end)
            raise preempt.Stopped(preempt.EPOCH_END_SIGNAL)
        trainer = _make_trainer(plan, task)
        try:
            stop.in_fit = True
            trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
        except DivergedError:
            if trainer.is_global_zero:  # keep nothing of the task; the rerun trains it again from the last task
                resume.unlink(missing_ok=True)
                plan.diverged = {"task": task}
                _save_state(plan)
            raise
        except SystemExit as e:  # Lightning ends a fit with SIGTERMException on SIGTERM, sys.exit(1) after Ctrl-C
            if not trainer.interrupted:
                raise
            raise preempt.Stopped(signal.SIGTERM if isinstance(e, SIGTERMException) else signal.SIGINT) from None
        finally:
            stop.in_fit = False
        if trainer.interrupted:  # Lightning before 2.5 returned from fit after Ctrl-C
            raise preempt.Stopped(signal.SIGINT)
        if stop.stopped and trainer.current_epoch < trainer.max_epochs:  # SIGUSR1: saved at this epoch's end
            raise preempt.Stopped(preempt.EPOCH_END_SIGNAL)
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
        preempt.STOP.task = task + 1
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
