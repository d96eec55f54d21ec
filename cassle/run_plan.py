"""What a run is before it trains: :func:`prepare_run` checks everything that can be wrong (run directory,
arguments against ``args.json``, data and split, the newest readable task checkpoint, a pretrained model) before
any file is written, and returns the :class:`RunPlan` the task loop (:mod:`cassle.continual`) carries out."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cassle.callbacks import EpochCheckpoint as _EpochCheckpoint  # noqa: F401  (tests patch it here)
from cassle.checkpoint import (
    CheckpointError,
    check_backbone_state,
    load_task_checkpoint,
    safe_torch_load,
)
from cassle.config import AugmentationConfig, DataConfig, ReplayConfig, RunConfig, upgrade_flat
from cassle.devices import is_global_zero_process, resolve_accelerator
from cassle.errors import DivergedError, RunError  # noqa: F401  (RunError re-exported)
from cassle.fileio import read_json_object
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
    #: arguments changed since the args.json of an attempt that left nothing to keep (no finished task, no resume
    #: checkpoint): the run starts afresh with the new ones
    restarted: dict[str, Any] | None = None
    #: the start task's mid-task checkpoint when it cannot be read: the task starts again from its first epoch
    bad_resume: Path | None = None

    def resume_checkpoint(self, task: int) -> Path | None:
        """``resume/task<task>-last.ckpt`` when the task continues from it (it exists and is not unreadable)."""
        path = self.run_dir / "resume" / f"task{task}-last.ckpt"
        return path if path.exists() and path != self.bad_resume else None

    @property
    def config(self) -> RunConfig:
        """The run's typed configuration (:class:`cassle.config.RunConfig`) of :attr:`cfg`, with the model
        class's declared method and strategy arguments: what the model and the data module receive."""
        return run_config(self.model_cls, self.cfg)

    def step_offset(self, task: int) -> int:
        """The run's step at which ``task`` starts (the steps of the finished tasks before it)."""
        return sum(n for t, n in self.task_steps.items() if t < task and t in self.completed)


def run_config(model_cls: type, cfg: dict[str, Any]) -> RunConfig:
    """The typed configuration of the flat run arguments ``cfg`` (``args.json``'s content), with ``model_cls``'s
    declared method and strategy arguments."""
    return RunConfig.from_flat(
        cfg,
        model_cls.all_method_args() if hasattr(model_cls, "all_method_args") else None,
        model_cls.all_strategy_args() if hasattr(model_cls, "all_strategy_args") else None,
    )


def untrained_model(model_cls: type, cfg: dict[str, Any]) -> Any:
    """The run's model before its first step: seeded with the run's ``seed`` just before it is built, so the same
    arguments always give the same weights (what ``main_continual.py`` trains and probes as its random-init
    baseline, and what ``bench/quality.py`` rebuilds for the random-init linear baseline)."""
    import lightning.pytorch as pl

    pl.seed_everything(int(cfg["seed"]), workers=True, verbose=False)
    return model_cls.from_config(run_config(model_cls, cfg))


def args_to_cfg(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items()}


def _holds_progress(run_dir: Path, state: dict[str, Any]) -> bool:
    """Whether ``run_dir`` holds anything of a run worth keeping: a finished task, a task checkpoint or a
    mid-task resume checkpoint. A directory with only ``args.json`` and the logs of a failed start holds none."""
    if state.get("completed_tasks"):
        return True
    if any(run_dir.glob("task*.ckpt")):
        return True
    return any((run_dir / "resume").glob("*.ckpt"))


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
    restart: dict[str, Any] = {}
    if (run_dir / "args.json").exists():
        try:
            saved = read_json_object(run_dir / "args.json")
        except ValueError as e:
            raise RunError(f"{e}; pass another --checkpoint_dir or --name") from None
        if state_file.exists():
            try:
                state = read_json_object(state_file)
            except ValueError as e:
                raise RunError(f"{e}; delete the run directory to restart") from None
        # args.json also stores values derived at start-up (num_classes, num_views): compare the CLI's own
        diff = changed_arguments(saved, args_to_cfg(args), build_model_class(args.method, args.strategy))
        fixes = {k: v for k, v in diff.items() if k in DIVERGENCE_FIXES} if state.get("diverged") else {}
        diff = {k: v for k, v in diff.items() if k not in fixes}
        if diff and not _holds_progress(run_dir, state):
            # an attempt that failed before it finished a task or saved a resume point (a crash in its first
            # steps, a bad value only the model found): nothing to keep, so the corrected command starts afresh
            restart = diff
            diff = {}
        if diff:
            shown = ", ".join(f"--{k} {a!r} -> {b!r}" for k, (a, b) in list(diff.items())[:5])
            raise RunError(
                f"{run_dir} already holds a run with other arguments ({shown}). "
                "Rerun with the same arguments to resume it, or pass a new --name / --checkpoint_dir; "
                "nothing was overwritten."
            )
    elif (
        is_global_zero_process()  # the other nodes of a launch by hand start while rank 0 fills the directory
        and run_dir.exists()
        and any(not is_launcher_file(p.name) for p in run_dir.iterdir())
    ):
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
    cfg["num_views"] = (
        views_for(model_cls.method_hparams(cfg)) if views_for is not None else getattr(model_cls, "num_views", 2)
    )
    cfg["return_raw"] = bool(getattr(model_cls, "needs_raw_images", False))  # replay: batches carry raw uint8 images
    flat = upgrade_flat(cfg)
    dm = ContinualDataModule(
        DataConfig.from_flat(flat), AugmentationConfig.from_flat(flat), ReplayConfig.from_flat(flat)
    )
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
            why = e.reason or f"is unreadable ({str(e).splitlines()[0]})"
            print(f"{path} {why}: task {t} will be trained again" + (f" from task{t - 1}.ckpt" if t else ""))
            completed.pop()
    start = max([args.task_idx] + [t + 1 for t in completed])
    if pretrained is None and args.pretrained_model is not None:
        try:
            pretrained = load_task_checkpoint(args.pretrained_model, args.method, args.encoder, allow_foreign=True)
            if pretrained.get("foreign"):  # its backbone must fit --encoder exactly (own checkpoints: load_weights)
                state = {k[len("backbone.") :]: v for k, v in pretrained["state_dict"].items()}
                check_backbone_state(
                    args.encoder, args.crop_size, args.base_width, state, args.pretrained_model, foreign=True
                )
        except CheckpointError as e:
            raise RunError(str(e)) from None
    resume_ckpt = run_dir / "resume" / f"task{start}-last.ckpt"
    bad_resume = None
    if start < args.num_tasks and resume_ckpt.exists():
        try:
            safe_torch_load(resume_ckpt, "resume checkpoint")
        except CheckpointError as e:  # like a bad task checkpoint: the task trains again (its first save replaces it)
            bad_resume = resume_ckpt
            print(f"{resume_ckpt} {e.reason or 'is unreadable'}: task {start} starts again from its first epoch")

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
        restart or None,
        bad_resume,
    )
