"""``main_continual.py --accelerator cpu --devices 2``: two gloo ranks run a whole continual run.

The command is started as users start it (Lightning's DDP launcher re-runs the script for rank 1),
through a small wrapper script that records, on each rank, what it trained on, its weights when a
task ends and every file it wrote; the test then reads those records and the run directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
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

    def note(kind, path):
        with open(os.path.join(OUT, "writes_rank" + os.environ.get("LOCAL_RANK", "0") + ".jsonl"), "a") as f:
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


@pytest.mark.slow
def test_two_cpu_ranks_run_to_the_end_and_agree(tmp_path):
    rec = tmp_path / "records"
    rec.mkdir()
    script = tmp_path / "run_ddp.py"
    script.write_text(WRAPPER.format(repo=str(REPO), out=str(rec)))
    run = tmp_path / "run"
    argv = TINY + ["--strategy", "cassle", "--num_tasks", "2", "--max_epochs", "1", "--accelerator", "cpu"]
    argv += ["--devices", "2", "--checkpoint_dir", str(run)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run(
        [sys.executable, str(script), *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "probe: knn" in out and "after task 1" in out and "Done." in out

    # rank 0 alone wrote the run: each task checkpoint once, state and results after each task
    assert not (rec / "writes_rank1.jsonl").exists(), (rec / "writes_rank1.jsonl").read_text()
    writes = [tuple(json.loads(line)) for line in (rec / "writes_rank0.jsonl").read_text().splitlines()]
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
