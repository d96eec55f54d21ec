"""What the run's loggers get: the loggers of each task's fit, and the probes and continual metrics after it."""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any

from cassle.errors import RunError
from cassle.fileio import atomic_write_text

#: Lightning messages that say nothing about a cassle run (an advert, a SLURM hint our launcher makes moot, an
#: internal deprecation of Lightning's own code); every other message and warning is kept
FRAMEWORK_NOISE = (
    "Tip: For seamless cloud logging",
    "The `srun` command is available on your system but is not used",
    "isinstance(treespec, LeafSpec)",
    # a resumed task's CSV log: its earlier rows are written back (keep_earlier_rows), so the warning misleads
    "Previous log files in this directory will be deleted",
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(n in msg for n in FRAMEWORK_NOISE)


def quiet_framework_noise() -> None:
    """Drop :data:`FRAMEWORK_NOISE` from Lightning's log handlers and from the warnings (idempotent)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _DropNoise) for f in handler.filters):
                handler.addFilter(_DropNoise())
    for text in FRAMEWORK_NOISE[1:]:
        warnings.filterwarnings("ignore", message=".*" + re.escape(text))


def build_loggers(
    run_dir: Path, args: Any, cfg: dict[str, Any], task: int, step_offset: int = 0, resumed_at: int = 0
) -> list:
    """The loggers of one task's fit: CSV always (``logs/task<t>``), TensorBoard (one run, ``tensorboard/run``) and
    WandB (one run) when asked for.

    Every logger's step continues across tasks: task ``t``'s steps are logged from ``step_offset`` (the steps of
    the tasks before it) on, and each logged row carries ``task``, so loss curves and the continual metrics plot
    against the whole run. A task resumed at epoch ``resumed_at`` keeps the CSV rows of its epochs before that one
    (:func:`keep_earlier_rows`).
    """
    from lightning.pytorch.loggers import CSVLogger

    csv_logger = CSVLogger(save_dir=str(run_dir), name="logs", version=f"task{task}")
    keep_earlier_rows(csv_logger, resumed_at)
    loggers: list = [csv_logger]
    if args.tensorboard:
        from lightning.pytorch.loggers import TensorBoardLogger

        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise RunError(
                "--tensorboard needs the tensorboard package: pip install 'cassle[tensorboard]' (or drop --tensorboard)"
            ) from None
        loggers.append(
            TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="run", default_hp_metric=False)
        )
    if args.wandb:
        loggers.append(wandb_logger(run_dir, args, cfg))
    for lg in loggers:
        continue_steps(lg, task, step_offset)
    return loggers


def keep_earlier_rows(logger: Any, resumed_at: int) -> None:
    """Keep the rows of epochs ``< resumed_at`` in a resumed task's ``metrics.csv``.

    Lightning's CSV writer deletes an existing ``metrics.csv`` when it is created, so a task resumed mid-way
    lost the rows of the epochs trained before the stop (measured under SLURM: a run stopped after epoch 1 and
    resumed logged only epochs 1 and 2 of 0-2). Here the writer is created, the rows of the epochs the resume
    checkpoint holds are written back (rows of a partial epoch after it are dropped: the resumed fit trains
    that epoch again) and the writer appends after them under the same header. Only the process that logs
    (global rank 0) creates a writer here: a node started by hand builds its loggers before its process group
    exists, while Lightning still takes it for rank 0, and its writer would create ``logs/task<t>`` in the run
    directory rank 0 is filling and delete rank 0's ``metrics.csv``. For a task that starts afresh (``resumed_at``
    0) nothing is kept."""
    import csv
    import io

    from cassle.devices import is_global_zero_process

    if not is_global_zero_process():  # Lightning takes the other nodes for rank 0 until their process group exists
        return
    path = Path(logger.log_dir) / "metrics.csv"
    header: list[str] = []
    rows: list[dict[str, str]] = []
    if resumed_at > 0 and path.is_file():
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            rows = [r for r in reader if _row_epoch(r) < resumed_at]
    writer = logger.experiment  # its creation removes the old file
    if not rows or not hasattr(writer, "metrics_keys"):
        return
    text = io.StringIO()
    out = csv.DictWriter(text, fieldnames=header)
    out.writeheader()
    out.writerows(rows)
    atomic_write_text(path, text.getvalue())
    writer.metrics_keys = header  # appended rows share the header; a new key rewrites the file, old rows kept


def _row_epoch(row: dict[str, str]) -> float:
    try:
        return float(row.get("epoch") or "inf")
    except ValueError:
        return float("inf")


def continue_steps(logger: Any, task: int, step_offset: int) -> Any:
    """Make ``logger`` log at ``step + step_offset`` and add ``task`` to every row (in place; returns it)."""
    inner = logger.log_metrics

    def log_metrics(metrics: dict[str, Any], step: int | None = None) -> None:
        inner({**metrics, "task": float(task)}, None if step is None else int(step) + step_offset)

    logger.log_metrics = log_metrics
    return logger


def wandb_logger(run_dir: Path, args: Any, cfg: dict[str, Any]) -> Any:
    """One WandB run for the whole continual run: its id is kept in ``wandb_id.txt`` and resumed."""
    try:
        import wandb  # noqa: F401
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:
        raise RunError("--wandb needs the wandb package: pip install 'cassle[wandb]' (or drop --wandb)") from None
    run_id_file = run_dir / "wandb_id.txt"
    if run_id_file.exists():
        run_id = run_id_file.read_text().strip()
    else:
        import uuid

        from cassle.devices import is_global_zero_process

        run_id = uuid.uuid4().hex[:12]
        # rank 0 alone logs to WandB and keeps the id (the other nodes of a multi-node launch build their loggers at
        # the same time: a second writer would replace rank 0's id with one no run has)
        if is_global_zero_process():
            atomic_write_text(run_id_file, run_id)
    return WandbLogger(
        name=args.name,
        project=args.project,
        entity=args.entity,
        offline=args.offline,
        save_dir=str(run_dir),
        id=run_id,
        resume="allow",
        config=cfg,
    )


def flat_metrics(result: dict, task: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for probe, accs in result.get("per_task", {}).items():
        for i, a in enumerate(accs):
            out[f"{probe}_acc_after_task{task}_on_task{i}"] = float(a)
    for probe, a in result.get("joint", {}).items():
        out[f"{probe}_joint_acc"] = float(a)
    return out


def log_results(loggers: list, report: Any, result: dict, task: int, step: int) -> None:
    """Send the probes of ``task`` and the continual metrics so far to every logger; WandB also
    gets each probe's accuracy matrix (random-init row first) as a table."""
    flat = flat_metrics(result, task)
    for probe in report.probes:
        for k, v in report.metrics(probe).items():
            if k == "joint_accuracy":
                continue  # the same number as <probe>_joint_acc, logged once
            if isinstance(v, (int, float)) and v == v:  # skip NaN (not defined yet, e.g. forgetting after task 0)
                flat[f"{probe}_{k}"] = float(v)
    for lg in loggers:
        lg.log_metrics(flat, step=step)
        if hasattr(lg, "log_table"):  # WandbLogger
            for probe in report.probes:
                columns, rows = report.table_rows(probe)
                lg.log_table(key=f"accuracy_matrix_{probe}", columns=columns, data=rows)
