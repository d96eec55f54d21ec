"""``main_continual.py --accelerator cpu --devices 2``: two gloo ranks run a whole continual run.

The command is started as users start it (Lightning's DDP launcher re-runs the script for rank 1),
through a small wrapper script that records, on each rank, what it trained on, its weights when a
task ends, every file it wrote and whether it took the run lock; the test then reads those records and
the run directory.

The same run as two "nodes" on this machine (``--num_nodes 2 --devices 1``, one command per node with
``NODE_RANK`` 0 / 1 and ``MASTER_ADDR`` / ``MASTER_PORT``, the launch without SLURM or torchrun that
Lightning's default environment reads) writes the run once, from node 0, and gives the same accuracy
matrix and weights as ``--devices 2``: the global ranks, shards and seeds are the same. Before
``is_global_zero_process`` counted ``NODE_RANK``, node 1's first process (no ``LOCAL_RANK``) took itself
for rank 0: it was refused by the run lock node 0 held ("in use by pid ..."), and node 0 waited in the
rendezvous for it (killed after 400 s).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import TINY

REPO = Path(__file__).resolve().parents[2]

WRAPPER = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, {repo!r})
    import lightning.pytorch as pl
    import torch
    import cassle.checkpoint
    import cassle.eval.report
    from cassle import continual

    OUT = {out!r}

    # one file per process: node (NODE_RANK) and device on the node (LOCAL_RANK)
    WHO = os.environ.get("NODE_RANK", "0") + "_" + os.environ.get("LOCAL_RANK", "0")

    def note(kind, path):
        with open(os.path.join(OUT, "writes_" + WHO + ".jsonl"), "a") as f:
            f.write(json.dumps([kind, os.path.basename(str(path))]) + "\\n")

    def spy(module, name, kind, path_arg):
        original = getattr(module, name)
        def wrapped(*args, **kwargs):
            note(kind, args[path_arg])
            return original(*args, **kwargs)
        setattr(module, name, wrapped)

    spy(cassle.checkpoint, "atomic_torch_save", "torch_save", 1)
    spy(continual, "atomic_write_json", "json", 0)
    spy(continual, "atomic_write_text", "text", 0)
    spy(cassle.eval.report.ContinualReport, "write", "report", 1)
    spy(continual, "run_lock", "lock", 0)

    class Record(pl.Callback):
        def __init__(self, task):
            self.task, self.ids = task, []
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.ids.append(batch[0].tolist())
        def on_train_end(self, trainer, pl_module):
            params = {{k: v.detach().clone() for k, v in pl_module.named_parameters()}}
            torch.save({{"ids": self.ids, "params": params, "world_size": trainer.world_size}},
                       os.path.join(OUT, "rank%d_task%d.pt" % (trainer.global_rank, self.task)))

    make = continual._make_trainer
    def make_trainer(plan, task):
        trainer = make(plan, task)
        trainer.callbacks.append(Record(task))
        return trainer
    continual._make_trainer = make_trainer

    import main_continual
    sys.exit(main_continual.main(sys.argv[1:]))
    """
)


#: the run both launches make: CaSSLe, two tasks of one epoch
ARGV = TINY + ["--strategy", "cassle", "--num_tasks", "2", "--max_epochs", "1", "--accelerator", "cpu"]
#: a whole run may take this long on a loaded 2-core machine; a hung rendezvous fails the test after it
TIMEOUT_S = 900


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}
    for var in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "GROUP_RANK", *(() if "NODE_RANK" in extra else ("NODE_RANK",))):
        env.pop(var, None)
    return env


def _writes(rec: Path, who: str) -> list[tuple[str, str]]:
    return [tuple(json.loads(line)) for line in (rec / f"writes_{who}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory) -> dict:
    """The run with ``--devices 2`` (one command; Lightning starts rank 1): its records, run directory, output."""
    tmp = tmp_path_factory.mktemp("devices2")
    rec = tmp / "records"
    rec.mkdir()
    script = tmp / "run_ddp.py"
    script.write_text(WRAPPER.format(repo=str(REPO), out=str(rec)))
    run = tmp / "run"
    argv = ARGV + ["--devices", "2", "--checkpoint_dir", str(run)]
    proc = subprocess.run(
        [sys.executable, str(script), *argv], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S
    )
    return {"rec": rec, "run": run, "proc": proc}


@pytest.mark.slow
def test_two_cpu_ranks_run_to_the_end_and_agree(two_devices):
    rec, run, proc = two_devices["rec"], two_devices["run"], two_devices["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "probe: knn" in out and "after task 1" in out and "Done." in out

    # rank 0 alone wrote the run (and held its lock): each task checkpoint once, state and results after each task
    assert not (rec / "writes_0_1.jsonl").exists(), (rec / "writes_0_1.jsonl").read_text()
    writes = _writes(rec, "0_0")
    assert [name for kind, name in writes if kind == "lock"] == ["run"]
    saved = [name for kind, name in writes if kind == "torch_save"]
    assert saved == ["task0-last.ckpt", "task0.ckpt", "task1-last.ckpt", "task1.ckpt"]  # epoch + task checkpoints
    assert [name for kind, name in writes if kind == "json"].count("run_state.json") >= 2
    assert sum(kind == "report" for kind, _ in writes) >= 2
    state = json.loads((run / "run_state.json").read_text())
    assert state["completed_tasks"] == [0, 1]
    metrics = json.loads((run / "results" / "metrics.json").read_text())["probes"]
    assert set(metrics) == {"knn", "ridge"}
    for fig in ("accuracy_matrix_knn", "accuracy_curves", "forgetting"):
        assert (run / "results" / f"{fig}.png").stat().st_size > 0
    assert not (run / "resume").exists()

    task_ids = None
    for task in range(2):
        r0 = torch.load(rec / f"rank0_task{task}.pt", weights_only=True)
        r1 = torch.load(rec / f"rank1_task{task}.pt", weights_only=True)
        assert r0["world_size"] == r1["world_size"] == 2
        # both ranks end the task with the same weights, and rank 0's are the checkpoint's
        assert r0["params"].keys() == r1["params"].keys()
        for k, v in r0["params"].items():
            assert torch.equal(v, r1["params"][k]), f"task {task}: ranks disagree on {k}"
        ckpt = torch.load(run / f"task{task}.ckpt", weights_only=True)["state_dict"]
        assert all(torch.equal(v, ckpt[k]) for k, v in r0["params"].items())
        # they trained on disjoint shards of the task, step for step the same batch size
        assert [len(b) for b in r0["ids"]] == [len(b) for b in r1["ids"]] and r0["ids"]
        ids0 = {i for b in r0["ids"] for i in b}
        ids1 = {i for b in r1["ids"] for i in b}
        assert not ids0 & ids1
        assert ids0 | ids1 != task_ids  # the second task is other data
        task_ids = ids0 | ids1
    t0 = torch.load(rec / "rank0_task0.pt", weights_only=True)["params"]
    t1 = torch.load(rec / "rank0_task1.pt", weights_only=True)["params"]
    assert any(not torch.equal(t0[k], t1[k]) for k in t0 if k.startswith("backbone."))  # task 1 trained
    assert any(k.startswith("distill_predictor.") for k in t1)  # CaSSLe's predictor is in the DDP model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_nodes_started_by_hand_run_once_like_two_devices(two_devices, tmp_path):
    """``--num_nodes 2 --devices 1`` started once per node (``NODE_RANK`` 0 / 1, one shared checkpoint dir)."""
    rec = tmp_path / "records"
    rec.mkdir()
    script = tmp_path / "run_ddp.py"
    script.write_text(WRAPPER.format(repo=str(REPO), out=str(rec)))
    run = tmp_path / "run"
    argv = ARGV + ["--num_nodes", "2", "--devices", "1", "--checkpoint_dir", str(run)]
    port = str(_free_port())
    logs = [tmp_path / f"node{node}.log" for node in (0, 1)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), *argv],
            cwd=REPO,
            env=_env(NODE_RANK=str(node), MASTER_ADDR="127.0.0.1", MASTER_PORT=port),
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        for node, log in zip((0, 1), logs)
    ]
    deadline = time.monotonic() + TIMEOUT_S
    try:  # a node that fails leaves the other waiting in the rendezvous: stop at the first failure
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.5)
    finally:
        for p in procs:  # nothing outlives the test
            if p.poll() is None:
                p.kill()
                p.wait()
    outs = [log.read_text() for log in logs]
    assert [p.returncode for p in procs] == [0, 0], "\n=====\n".join(o[-3000:] for o in outs)
    assert "Done." in outs[0] and "after task 1" in outs[0]
    assert "in use by" not in outs[1] and "Done." not in outs[1]  # node 1 neither took the lock nor reported

    # node 0 alone took the lock and wrote the run, the same files as rank 0 of --devices 2
    assert not (rec / "writes_1_0.jsonl").exists(), (rec / "writes_1_0.jsonl").read_text()
    writes = _writes(rec, "0_0")
    assert [name for kind, name in writes if kind == "lock"] == ["run"]
    assert [n for k, n in writes if k == "torch_save"] == [
        "task0-last.ckpt",
        "task0.ckpt",
        "task1-last.ckpt",
        "task1.ckpt",
    ]
    assert [n for k, n in writes if k != "lock"] == [n for k, n in _writes(two_devices["rec"], "0_0") if k != "lock"]
    assert json.loads((run / "run_state.json").read_text())["completed_tasks"] == [0, 1]

    # the same global ranks, shards and seeds as --devices 2: the same batches, weights and accuracy matrix
    ref = two_devices["run"]
    for task in range(2):
        for rank in range(2):
            mine = torch.load(rec / f"rank{rank}_task{task}.pt", weights_only=True)
            theirs = torch.load(two_devices["rec"] / f"rank{rank}_task{task}.pt", weights_only=True)
            assert mine["world_size"] == 2 and mine["ids"] == theirs["ids"], (task, rank)
        ckpt = torch.load(run / f"task{task}.ckpt", weights_only=True)["state_dict"]
        ref_ckpt = torch.load(ref / f"task{task}.ckpt", weights_only=True)["state_dict"]
        assert ckpt.keys() == ref_ckpt.keys() and all(torch.equal(v, ref_ckpt[k]) for k, v in ckpt.items()), task
    assert (run / "results" / "accuracy_matrix.csv").read_text() == (
        ref / "results" / "accuracy_matrix.csv"
    ).read_text()
    assert json.loads((run / "results" / "metrics.json").read_text()) == json.loads(
        (ref / "results" / "metrics.json").read_text()
    )


def test_num_nodes_without_node_rank_stops_before_anything_is_written(tmp_path, monkeypatch, capsys):
    """Without SLURM, torchrun or ``NODE_RANK``, Lightning would take the lone process for node 0 and wait for the
    second node until the process group's timeout (measured before the check: still waiting when killed after
    150 s, with args.json, run_state.json and the baseline results written and the run lock held)."""
    import main_continual

    for var in ("NODE_RANK", "GROUP_RANK", "LOCAL_RANK", "RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    for var in ("SLURM_NTASKS", "SLURM_JOB_NAME", "SLURM_PROCID", "LSB_JOBID", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    run = tmp_path / "run"
    argv = ARGV + ["--num_nodes", "2", "--devices", "1", "--checkpoint_dir", str(run)]
    assert main_continual.main(argv) == 2
    err = capsys.readouterr()
    message = (err.out + err.err).strip().splitlines()
    assert len(message) == 1 and "NODE_RANK, MASTER_ADDR, MASTER_PORT" in message[0], message
    assert not run.exists()
