"""Stopping a run on a signal so that the same command (or the requeued SLURM job) resumes it.

What each signal does during :func:`cassle.continual.run`:

* ``SIGUSR1`` — SLURM's pre-timeout warning (``#SBATCH --signal=USR1@300``, passed with ``job_launcher.py --sbatch
  signal=USR1@300``): the current epoch is finished, the resume checkpoint ``resume/task{t}-last.ckpt`` is written
  at its end (whatever ``--checkpoint_frequency`` says), the run stops and, under SLURM, the job is requeued
  (``scontrol requeue``): the requeued job resumes from that checkpoint. A resume checkpoint is only ever written
  at an epoch's end, so the resumed run gives the uninterrupted run's numbers. Every process of a multi-process
  run stops after the same epoch (the decision is reduced across ranks at the epoch's end). If the job is killed
  before the epoch ends, the last periodic checkpoint is the resume point, as after a ``kill -9``.
* ``SIGTERM`` — SLURM's time limit (without ``--signal``), a preemption, ``kill``: Lightning stops at the end of
  the current batch (its own SIGTERM handling, broadcast across ranks); the partial epoch is dropped, the resume
  point is the last saved epoch. Under SLURM the job is requeued unless ``scontrol show job`` says it was
  cancelled (``scancel`` means stop).
* ``SIGINT`` (Ctrl-C) — stops at once, as Lightning does, and says what is saved.

Each prints one line naming what is saved and that the same command resumes it, then exits with ``128 + signal``
(like a shell). :class:`StopOnSignal` is the callback and the handler; :func:`requeue_slurm_job` the requeue.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import lightning.pytorch as pl

from cassle.devices import is_global_zero_process

#: the signal that asks for a stop at the end of the epoch (SLURM's ``--signal=USR1@seconds``)
EPOCH_END_SIGNAL = signal.SIGUSR1


class Stopped(BaseException):
    """The run stops on signal ``signum`` (a ``BaseException``, like ``KeyboardInterrupt``: no ``except
    Exception`` swallows it); :func:`cassle.continual.run` turns it into the message and the exit status."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = int(signum)


def slurm_job_id() -> str | None:
    """The id ``scontrol requeue`` takes for this batch job (``<array job>_<task>`` in an array), or ``None`` outside
    a SLURM batch job (no ``SLURM_JOB_ID``, or an interactive ``srun`` / ``salloc`` shell)."""
    if "SLURM_JOB_ID" not in os.environ or os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}" if array else os.environ["SLURM_JOB_ID"]
    return job if re.fullmatch(r"[0-9]+(_[0-9]+)?", job) else None


def _scontrol(*args: str) -> subprocess.CompletedProcess | None:
    exe = shutil.which("scontrol")
    if exe is None:
        return None
    try:
        return subprocess.run([exe, *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None


def requeue_slurm_job(signum: int) -> str:
    """Requeue this SLURM job (call it last: a running job that is requeued is stopped by SLURM); returns the
    sentence for the stop message ("" outside SLURM). After a SIGTERM a job that ``scontrol`` reports as cancelled
    is left cancelled."""
    job = slurm_job_id()
    if job is None:
        return ""
    if signum == signal.SIGTERM:
        shown = _scontrol("show", "job", job)
        if shown is not None and re.search(r"JobState=CANCELLED", shown.stdout):
            return f" SLURM job {job} was cancelled: not requeued."
    res = _scontrol("requeue", job)
    if res is None:
        return f" Could not requeue SLURM job {job} (no scontrol on PATH): resubmit it to resume."
    if res.returncode != 0:
        why = (res.stderr or res.stdout).strip().splitlines()
        return f" Requeueing SLURM job {job} failed ({why[0] if why else res.returncode}): resubmit it to resume."
    return f" SLURM job {job} requeued: it resumes from there."


class StopOnSignal(pl.Callback):
    """``SIGUSR1``: finish the epoch, write the resume checkpoint, stop the fit (see the module docstring).

    Add it to the trainer's callbacks after the periodic checkpoint (``EpochCheckpoint``); :meth:`install` /
    :meth:`restore` put the handler in place around the task loop. :attr:`requested` is the local signal,
    :attr:`stopped` the decision every rank took at an epoch's end."""

    def __init__(self, resume_path: Path | None = None, every: int = 1) -> None:
        self.resume_path, self.every = resume_path, max(1, every)
        self.requested = False
        self.stopped = False
        #: inside ``trainer.fit`` Lightning handles SIGTERM (a stop at the end of the batch, on every rank)
        self.in_fit = False
        #: where the task loop is (set by :func:`cassle.continual._train`), for the stop message
        self.run_dir: Path | None = None
        self.task = 0
        self._previous: dict = {}

    # ----------------------------------------------------------------- the handlers
    def install(self) -> StopOnSignal:
        """Handle SIGUSR1 (stop at the epoch's end) and SIGTERM (outside a fit: stop now) until :meth:`restore`."""
        self.requested = self.stopped = self.in_fit = False
        self.run_dir, self.task = None, 0
        if threading.current_thread() is threading.main_thread():
            self._previous = {
                EPOCH_END_SIGNAL: signal.signal(EPOCH_END_SIGNAL, self._on_usr1),
                signal.SIGTERM: signal.signal(signal.SIGTERM, self._on_term),
            }
        return self

    def restore(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum, handler in self._previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _on_usr1(self, signum, frame) -> None:  # noqa: ANN001
        if not self.requested and _is_global_zero():
            print(f"received {signal.Signals(signum).name}: stopping at the end of this epoch", flush=True)
        self.requested = True

    def _on_term(self, signum, frame) -> None:  # noqa: ANN001
        if not self.in_fit:  # probing, loading, between tasks: nothing to finish
            raise Stopped(signum)

    def for_task(self, resume_path: Path, every: int) -> StopOnSignal:
        """The same request (a signal may arrive between tasks), pointed at this task's resume checkpoint."""
        self.resume_path, self.every, self.stopped = resume_path, max(1, every), False
        return self

    # ----------------------------------------------------------------- the callback
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stop = bool(trainer.strategy.reduce_boolean_decision(self.requested, all=False))  # any rank asked
        if not stop:
            return
        epoch = trainer.current_epoch
        saved = (epoch + 1) % self.every == 0 or epoch + 1 == trainer.max_epochs  # EpochCheckpoint wrote it
        if not saved and self.resume_path is not None:
            trainer.save_checkpoint(str(self.resume_path), weights_only=False)
        self.requested = self.stopped = True
        trainer.should_stop = True


def _is_global_zero() -> bool:
    return is_global_zero_process()  # (the node's rank counts too: a multi-node launch by hand)


#: the process's one instance (the handlers are process-wide); :func:`cassle.continual.run` installs it
STOP = StopOnSignal()


def stop_message(run_dir: Path, task: int, num_tasks: int, signum: int) -> str:
    """What a stopped run says: what is saved, and that the same command resumes it."""
    from cassle.callbacks import resume_epoch

    resume = Path(run_dir) / "resume" / f"task{task}-last.ckpt"
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    if task >= num_tasks:
        saved = f"all {num_tasks} tasks are saved"
    elif resume.exists():
        saved = f"the run is saved in {run_dir} (task {task} after epoch {resume_epoch(resume)}: {resume.name})"
    else:
        saved = f"the run is saved in {run_dir} up to " + (
            f"task{task - 1}.ckpt (task {task} starts again)" if task > 0 else "its start (task 0 starts again)"
        )
    return f"stopped by {name}: {saved}; run the same command to resume it."
