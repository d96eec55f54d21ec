"""job_launcher.py / cassle.launcher: script parsing, overrides, experiment dirs, normal and SLURM modes.

The runs use a fake entry point (``--entrypoint fake_main.py``) that records its argv in
``--checkpoint_dir``, so nothing here depends on main_continual.py. The ``slurm`` test starts a
single-node SLURM on localhost (tests/slurm_cluster.py) and is skipped when SLURM is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cassle import launcher
from cassle.launcher import LauncherError, apply_overrides, parse_args_list, parse_script

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import slurm_cluster  # noqa: E402

SCRIPT = r"""#!/bin/bash
# CaSSLe-style script: comments, continuations, env vars
# a comment may mention $NOT_SET_ANYWHERE without harm
export RUN_TAG=t1
python3 main_continual.py \
    --dataset cifar100 \
    --data_dir $DATA_DIR/cifar \
    --max_epochs 500 \
    --lars \
    --solarization_prob 0.0 0.2 \
    --lr=0.3 \
    --name "barlow ${RUN_TAG}" \
    --pretrained_model ${PRETRAINED_PATH:-none} # end-of-line comment
"""

FAKE_MAIN = r"""
import json, os, sys
args = sys.argv[1:]
ckpt = args[args.index("--checkpoint_dir") + 1]
os.makedirs(ckpt, exist_ok=True)
with open(os.path.join(ckpt, "runs.jsonl"), "a") as f:
    f.write(json.dumps({"argv": args, "cwd": os.getcwd(),
                        "array_task": os.environ.get("SLURM_ARRAY_TASK_ID"),
                        "job": os.environ.get("SLURM_JOB_ID")}) + "\n")
print("fake main ran", flush=True)
sys.exit(int(os.environ.get("FAKE_MAIN_EXIT", "0")))
"""


@pytest.fixture
def script(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", "/data")
    monkeypatch.delenv("PRETRAINED_PATH", raising=False)
    p = tmp_path / "barlow.sh"
    p.write_text(SCRIPT)
    return p


@pytest.fixture
def fake_main(tmp_path):
    p = tmp_path / "fake_main.py"
    p.write_text(FAKE_MAIN)
    return p


def _runs(exp_dir: Path) -> list[dict]:
    f = exp_dir / "runs.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []


def _flag(argv: list[str], name: str) -> list[str]:
    return parse_args_list(argv)[name]


# --------------------------------------------------------------------------- parsing


def test_parse_script_continuations_comments_env(script):
    cmd = parse_script(script)
    assert cmd.entrypoint == "main_continual.py"
    assert list(cmd.args) == [
        "dataset",
        "data_dir",
        "max_epochs",
        "lars",
        "solarization_prob",
        "lr",
        "name",
        "pretrained_model",
    ]
    assert cmd.args["data_dir"] == ["/data/cifar"]
    assert cmd.args["lars"] == []
    assert cmd.args["solarization_prob"] == ["0.0", "0.2"]
    assert cmd.args["lr"] == ["0.3"]
    assert cmd.args["name"] == ["barlow t1"]  # quoted, with a variable set inside the script
    assert cmd.args["pretrained_model"] == ["none"]  # ${VAR:-default}


def test_missing_env_var_is_named(script, monkeypatch):
    monkeypatch.delenv("DATA_DIR")
    with pytest.raises(LauncherError, match=r"\$DATA_DIR.*not set"):
        parse_script(script)


def test_single_quotes_are_not_expanded(tmp_path, monkeypatch):
    monkeypatch.delenv("X", raising=False)
    p = tmp_path / "s.sh"
    p.write_text("python main_linear.py --name '$X # not a comment' --lr -0.5\n")
    cmd = parse_script(p)
    assert cmd.entrypoint == "main_linear.py"
    assert cmd.args == {"name": ["$X # not a comment"], "lr": ["-0.5"]}


def test_script_errors(tmp_path):
    with pytest.raises(LauncherError, match="does not exist"):
        parse_script(tmp_path / "nope.sh")
    p = tmp_path / "empty.sh"
    p.write_text("echo hello\n")
    with pytest.raises(LauncherError, match="no `python3"):
        parse_script(p)
    p.write_text("python3 main_continual.py --a 1\npython3 main_continual.py --a 2\n")
    with pytest.raises(LauncherError, match="2 python commands"):
        parse_script(p)


def test_overrides_replace_and_append(script):
    args = parse_script(script).args
    merged = apply_overrides(args, parse_args_list(["--max_epochs", "1", "--solarization_prob", "0.1", "--new_flag"]))
    assert merged["max_epochs"] == ["1"]
    assert merged["solarization_prob"] == ["0.1"]
    assert list(merged)[:3] == ["dataset", "data_dir", "max_epochs"]  # replaced in place
    assert list(merged)[-1] == "new_flag" and merged["new_flag"] == []
    assert args["max_epochs"] == ["500"]  # the input is not modified


#: the six methods of the CaSSLe paper have a script for every dataset (file stem: the CaSSLe repository's names)
PAPER_STEMS = {
    "barlow": "barlow_twins",
    "byol": "byol",
    "mocov2plus": "mocov2plus",
    "simclr": "simclr",
    "swav": "swav",
    "vicreg": "vicreg",
}
CONTINUAL_DIRS = ["cifar", "imagenet-100/class", "imagenet-100/data", "domainnet", "fashion-mnist"]
#: registered methods without a CIFAR script, and why
NO_CIFAR_SCRIPT = {
    "emp_ssl": "20 crops per image: its published setting is not a CaSSLe-style CIFAR run",
    "mae": "a ViT method with no distiller (family 'reconstructive')",
}


def test_bash_files_are_complete_and_parse(monkeypatch):
    from cassle.methods import METHODS

    monkeypatch.setenv("DATA_DIR", "/data")
    monkeypatch.setenv("PRETRAINED_PATH", "/ckpt")
    bash = REPO / "bash_files"
    expected = {f"continual/{d}/{m}{s}.sh" for d in CONTINUAL_DIRS for m in PAPER_STEMS for s in ("", "_distill")}
    expected |= {"continual/digits/barlow.sh", "continual/digits/barlow_distill.sh"}
    expected |= {
        f"linear/{d}/{m}_linear.sh"
        for d in ("cifar", "imagenet-100", "domainnet", "fashion-mnist")
        for m in PAPER_STEMS
    }
    # every registered method has a CIFAR-100 fine-tuning and CaSSLe script (the registry, not a hand list, says which)
    stem_of = {v: k for k, v in PAPER_STEMS.items()}
    for name in set(METHODS) - set(NO_CIFAR_SCRIPT):
        expected |= {f"continual/cifar/{stem_of.get(name, name)}{s}.sh" for s in ("", "_distill")}
    found = {str(p.relative_to(bash)) for p in bash.rglob("*.sh")}
    assert expected <= found, sorted(expected - found)
    for rel in sorted(found):
        cmd = parse_script(bash / rel)
        a = cmd.args
        if rel.startswith("linear/"):
            assert cmd.entrypoint == "main_linear.py" and a["pretrained_model"] == ["/ckpt"], rel
            continue
        assert cmd.entrypoint == "main_continual.py", rel
        stem = Path(rel).stem.replace("_distill", "")
        method = a["method"][0]
        assert method in METHODS and method == PAPER_STEMS.get(stem, stem), rel
        if rel.endswith("_distill.sh"):
            assert a["strategy"] == ["cassle"] and a["distiller"] == [METHODS[method].family], rel
            assert "distill_lamb" in a, rel
        elif "strategy" in a and a["strategy"] != ["finetune"]:
            continue  # a script of another strategy (replay baselines)
        else:
            assert a.get("strategy", ["finetune"]) == ["finetune"] and "distiller" not in a, rel
        assert "checkpoint_dir" not in a, rel  # the launcher sets it


def test_bash_files_name_only_options_the_command_line_has(monkeypatch):
    """Every flag of every continual script is an option of main_continual.py for that method and strategy."""
    from cassle.args.parser import build_parser
    from cassle.args.validate import resolve_method, resolve_strategy

    monkeypatch.setenv("DATA_DIR", "/data")
    monkeypatch.setenv("PRETRAINED_PATH", "/ckpt")
    for path in sorted((REPO / "bash_files" / "continual").rglob("*.sh")):
        a = parse_script(path).args
        method_cls = resolve_method(a["method"][0])
        strategy_cls = resolve_strategy(a.get("strategy", ["finetune"])[0])
        known = {o.lstrip("-") for act in build_parser(method_cls, strategy_cls)._actions for o in act.option_strings}
        unknown = sorted(set(a) - known)
        assert not unknown, f"{path.relative_to(REPO)}: {unknown}"


# --------------------------------------------------------------------------- experiment dirs, dry run, normal mode


def _launch(script, base, fake_main, *extra):
    return launcher.main(
        ["--script", str(script), "--base_experiment_dir", str(base), "--entrypoint", str(fake_main), *extra]
    )


def test_normal_mode_runs_with_overrides_and_new_dirs(script, fake_main, tmp_path, capfd):
    base = tmp_path / "experiments"
    assert _launch(script, base, fake_main, "--max_epochs", "1", "--", "--lr", "0.1", "--extra", "a", "b") == 0
    assert _launch(script, base, fake_main) == 0
    dirs = sorted(p for p in base.iterdir())
    assert len(dirs) == 2 and all(d.name.startswith("barlow-") for d in dirs)
    assert capfd.readouterr().out.count("fake main ran") == 2  # the child's output is streamed through

    runs = {d: _runs(d) for d in dirs}
    by_epochs = {_flag(r[0]["argv"], "max_epochs")[0]: (d, r[0]) for d, r in runs.items()}
    d1, run1 = by_epochs["1"]
    argv = run1["argv"]
    assert _flag(argv, "checkpoint_dir") == [str(d1)]
    assert _flag(argv, "lr") == ["0.1"] and _flag(argv, "extra") == ["a", "b"]
    assert _flag(argv, "solarization_prob") == ["0.0", "0.2"] and _flag(argv, "lars") == []
    assert Path(run1["cwd"]) == REPO  # runs from the repo root

    command = (d1 / "command.sh").read_text()
    assert "--max_epochs 1" in command and f"--checkpoint_dir {d1}" in command
    assert os.access(d1 / "command.sh", os.X_OK)
    assert not list(d1.glob(".command.sh.*"))  # no temp file left by the atomic write
    # command.sh reproduces the run on its own
    subprocess.run(["bash", str(d1 / "command.sh")], check=True, capture_output=True)
    assert len(_runs(d1)) == 2


def test_experiment_name_resumes_same_dir(script, fake_main, tmp_path, capsys):
    base = tmp_path / "exp"
    assert _launch(script, base, fake_main, "--experiment_name", "run1") == 0
    assert _launch(script, base, fake_main, "--experiment_name", "run1") == 0
    assert [p.name for p in base.iterdir()] == ["run1"]
    assert len(_runs(base / "run1")) == 2
    assert "resuming" in capsys.readouterr().out
    with pytest.raises(LauncherError, match="plain directory name"):
        launcher.make_experiment_dir(base, "../escape", "x.sh")


def test_exit_code_is_returned(script, fake_main, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MAIN_EXIT", "3")
    assert _launch(script, tmp_path / "e", fake_main) == 3


def test_launcher_files_are_recognised():
    for name in ("command.sh", "job.sbatch", "slurm_jobs.txt", "slurm-12_0.out", "slurm-7.err", ".command.sh.x1.tmp"):
        assert launcher.is_launcher_file(name), name
    for name in ("args.json", "task0.ckpt", "results", "slurm.conf"):
        assert not launcher.is_launcher_file(name), name


def test_dry_run_creates_nothing(script, fake_main, tmp_path, capsys):
    base = tmp_path / "exp"
    assert (
        _launch(script, base, fake_main, "--dry_run", "--mode", "slurm", "--requeue", "1", "--", "--max_epochs", "2")
        == 0
    )
    out = capsys.readouterr().out
    assert "--max_epochs 2" in out and "#SBATCH --array=0-1%1" in out
    assert not base.exists()


def test_cli_errors(script, fake_main, tmp_path, monkeypatch, capsys):
    assert _launch(script, tmp_path / "e", fake_main, "--checkpoint_dir", "x") == 2
    assert "set by the launcher" in capsys.readouterr().err
    monkeypatch.delenv("DATA_DIR")
    assert _launch(script, tmp_path / "e", fake_main) == 2
    assert "$DATA_DIR" in capsys.readouterr().err


def test_job_launcher_cli_subprocess(script, fake_main, tmp_path):
    base = tmp_path / "exp"
    res = subprocess.run(
        [
            sys.executable,
            str(REPO / "job_launcher.py"),
            "--script",
            str(script),
            "--base_experiment_dir",
            str(base),
            "--entrypoint",
            str(fake_main),
            "--experiment_name",
            "cli",
            "--",
            "--max_epochs",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, DATA_DIR="/x"),
    )
    assert res.returncode == 0, res.stderr
    (run,) = _runs(base / "cli")
    assert _flag(run["argv"], "data_dir") == ["/x/cifar"] and _flag(run["argv"], "max_epochs") == ["1"]


def test_sigterm_to_launcher_stops_the_run(script, tmp_path):
    sleeper = tmp_path / "sleepy_main.py"
    sleeper.write_text(
        "import os, sys, time\n"
        "d = sys.argv[sys.argv.index('--checkpoint_dir') + 1]\n"
        "open(os.path.join(d, 'pid'), 'w').write(str(os.getpid()))\n"
        "time.sleep(60)\n"
    )
    exp = tmp_path / "exp" / "sleepy"
    launcher_proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "job_launcher.py"),
            "--script",
            str(script),
            "--base_experiment_dir",
            str(tmp_path / "exp"),
            "--experiment_name",
            "sleepy",
            "--entrypoint",
            str(sleeper),
        ],
        env=dict(os.environ, DATA_DIR="/x"),
        stdout=subprocess.DEVNULL,
    )
    try:
        assert slurm_cluster.wait_for(lambda: (exp / "pid").exists() and (exp / "pid").read_text(), timeout=30)
        child = int((exp / "pid").read_text())
        launcher_proc.terminate()
        assert launcher_proc.wait(timeout=20) != 0
        assert slurm_cluster.wait_for(lambda: not _alive(child), timeout=10), "the run outlived the launcher"
    finally:
        if launcher_proc.poll() is None:
            launcher_proc.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


# --------------------------------------------------------------------------- SLURM job files


def test_sbatch_file_contents(tmp_path):
    opts = launcher.SlurmOptions(
        job_name="barlow cifar",
        num_gpus=2,
        cpus_per_task=6,
        hours=48,
        partition="gpu",
        account="acc",
        constraint="a100",
        mem="64G",
        requeue=3,
    )
    text = launcher.render_sbatch(opts, tmp_path, tmp_path / "command.sh")
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    for expected in (
        "#SBATCH --job-name=barlow_cifar",
        f"#SBATCH --output={tmp_path}/slurm-%A_%a.out",
        f"#SBATCH --error={tmp_path}/slurm-%A_%a.err",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=2",
        "#SBATCH --gres=gpu:2",
        "#SBATCH --cpus-per-task=6",
        "#SBATCH --time=48:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=acc",
        "#SBATCH --constraint=a100",
        "#SBATCH --mem=64G",
        "#SBATCH --array=0-3%1",
    ):
        assert expected in lines, expected
    assert any(line.startswith("srun ") and str(tmp_path / "command.sh") in line for line in lines)

    cpu = launcher.render_sbatch(
        launcher.SlurmOptions(job_name="x", num_gpus=0, cpus_per_task=2, hours=2), tmp_path, tmp_path / "command.sh"
    )
    assert "#SBATCH --time=02:00:00" in cpu and "#SBATCH --ntasks-per-node=1" in cpu
    for absent in ("--gres", "--array", "--partition", "--account", "--constraint", "--mem="):
        assert absent not in cpu
    with pytest.raises(LauncherError):
        launcher.render_sbatch(launcher.SlurmOptions(job_name="x", hours=0), tmp_path, tmp_path / "c.sh")


def test_slurm_mode_devices_and_missing_sbatch(script, fake_main, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no sbatch anywhere
    base = tmp_path / "exp"
    rc = _launch(
        script,
        base,
        fake_main,
        "--mode",
        "slurm",
        "--num_gpus",
        "2",
        "--experiment_name",
        "s",
        "--",
        "--num_workers",
        "3",
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "sbatch not found" in err and "--mode normal" in err and "slurm" in err
    command = (base / "s" / "command.sh").read_text()
    assert "--accelerator gpu" in command and "--devices 2" in command
    # dry run shows the job file: default cpus-per-task = num_workers + 1 per task
    assert (
        _launch(script, base, fake_main, "--mode", "slurm", "--num_gpus", "2", "--dry_run", "--", "--num_workers", "3")
        == 0
    )
    assert "#SBATCH --cpus-per-task=4" in capsys.readouterr().out


# --------------------------------------------------------------------------- real SLURM


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if os.environ.get("CASSLE_SLURM_EXTERNAL") == "1":
        yield dict(os.environ)
        return
    reason = slurm_cluster.missing_requirements()
    if reason:
        pytest.skip(reason)
    cluster = slurm_cluster.start_cluster(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster.env()
    finally:
        cluster.stop()


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(180)
def test_real_slurm_submission_with_requeue(script, fake_main, tmp_path, slurm, monkeypatch):
    for k, v in slurm.items():
        monkeypatch.setenv(k, v)
    base = tmp_path / "exp"
    rc = _launch(
        script,
        base,
        fake_main,
        "--mode",
        "slurm",
        "--num_gpus",
        "0",
        "--cpus_per_task",
        "1",
        "--hours",
        "1",
        "--requeue",
        "1",
        "--experiment_name",
        "job",
        "--",
        "--max_epochs",
        "1",
    )
    assert rc == 0
    exp = base / "job"
    job_id = (exp / "slurm_jobs.txt").read_text().split()[0]
    assert (exp / "job.sbatch").exists() and (exp / "command.sh").exists()

    # array 0-1%1: the first job and one continuation, one after the other, in the same dir
    done = slurm_cluster.wait_for(lambda: len(_runs(exp)) >= 2, timeout=60)
    logs = "\n".join(p.read_text() for p in sorted(exp.glob("slurm-*")))
    assert done, f"SLURM job {job_id} did not run twice within 60 s; logs:\n{logs}"
    runs = _runs(exp)
    assert [r["array_task"] for r in runs] == ["0", "1"]
    for r in runs:
        argv = r["argv"]
        assert _flag(argv, "checkpoint_dir") == [str(exp)]
        assert _flag(argv, "max_epochs") == ["1"]
        assert _flag(argv, "accelerator") == ["cpu"] and _flag(argv, "devices") == ["1"]
    # one log per array task, holding the run's output
    assert slurm_cluster.wait_for(lambda: len(list(exp.glob("slurm-*_1.out"))) == 1, timeout=10)
    # the log file appears before SLURM has flushed the job's output into it: wait for the text, not the file
    assert slurm_cluster.wait_for(
        lambda: all("fake main ran" in p.read_text() for p in exp.glob("slurm-*.out")), timeout=20
    ), {p.name: p.read_text()[-300:] for p in exp.glob("slurm-*.out")}


REAL_SCRIPT = r"""#!/bin/bash
python3 main_continual.py \
    --dataset digits --encoder resnet9 --base_width 4 --crop_size 8 \
    --method barlow_twins --proj_hidden_dim 32 --output_dim 32 \
    --batch_size 64 --lr 0.05 --warmup_epochs 0 --num_workers 0 \
    --num_tasks 2 --max_epochs 1 --probes knn --no_progress_bar --seed 3
"""


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(240)
def test_real_slurm_runs_main_continual_and_requeue_finds_it_done(tmp_path, slurm, monkeypatch):
    """The real entry point through the real SLURM: the job trains, writes its task checkpoints and
    results; the requeued continuation (array task 1) resumes in the same directory and trains nothing."""
    for k, v in slurm.items():
        monkeypatch.setenv(k, v)
    script = tmp_path / "tiny.sh"
    script.write_text(REAL_SCRIPT)
    base = tmp_path / "exp"
    rc = launcher.main(
        [
            "--script",
            str(script),
            "--base_experiment_dir",
            str(base),
            "--mode",
            "slurm",
            "--num_gpus",
            "0",
            "--cpus_per_task",
            "1",
            "--hours",
            "1",
            "--requeue",
            "1",
            "--experiment_name",
            "tiny",
        ]
    )
    assert rc == 0
    exp = base / "tiny"
    second_log = lambda: list(exp.glob("slurm-*_1.out"))  # noqa: E731
    done = slurm_cluster.wait_for(
        lambda: second_log() and "already finished" in second_log()[0].read_text(), timeout=200
    )
    logs = "\n".join(p.read_text() for p in sorted(exp.glob("slurm-*")))
    assert done, f"the SLURM array did not finish within 200 s; logs:\n{logs}"
    for t in range(2):
        ckpt = torch.load(exp / f"task{t}.ckpt", weights_only=True)
        assert ckpt["task_idx"] == t and ckpt["method"] == "barlow_twins"
    state = json.loads((exp / "run_state.json").read_text())
    assert state["completed_tasks"] == [0, 1]
    assert (exp / "results" / "accuracy_matrix.csv").exists()
    first = next(exp.glob("slurm-*_0.out")).read_text()
    assert "=== task 1/1" in first and "Done." in first
