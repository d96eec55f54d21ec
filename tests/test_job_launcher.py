"""job_launcher.py / cassle.launcher: script parsing, overrides, experiment dirs, normal and SLURM modes.

The runs use a fake entry point (``--entrypoint fake_main.py``) that records its argv in
``--checkpoint_dir``, so nothing here depends on main_continual.py. The ``slurm`` test starts a
single-node SLURM on localhost (tests/slurm_cluster.py) and is skipped when SLURM is not installed.
"""

from __future__ import annotations

import json
import os
import re
import signal
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
    assert _launch(script, base, fake_main, "--", "--max_epochs", "1", "--lr", "0.1", "--extra", "a", "b") == 0
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
    assert _launch(script, tmp_path / "e", fake_main, "--", "--checkpoint_dir", "x") == 2
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
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --requeue",
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
    for absent in ("--gpus-per-node", "--gres", "--array", "--partition", "--account", "--constraint", "--mem="):
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
    assert not base.exists()  # refused before the experiment directory is made
    assert _launch(script, base, fake_main, "--mode", "slurm", "--num_gpus", "2", "--dry_run") == 0
    command = capsys.readouterr().out
    assert "--accelerator gpu" in command and "--devices 2" in command
    # dry run shows the job file: default cpus-per-task = num_workers + 1 per task
    assert (
        _launch(script, base, fake_main, "--mode", "slurm", "--num_gpus", "2", "--dry_run", "--", "--num_workers", "3")
        == 0
    )
    assert "#SBATCH --cpus-per-task=4" in capsys.readouterr().out


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch):
    """An ``sbatch`` on PATH that records its arguments (and prints a job id) instead of submitting."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    calls = tmp_path / "sbatch_calls.txt"
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho 4242\n')
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def _tiny_script(tmp_path: Path) -> Path:
    script = tmp_path / "tiny.sh"
    script.write_text(REAL_SCRIPT)
    return script


def test_slurm_mode_validates_the_command_before_sbatch_and_before_any_dir(tmp_path, fake_sbatch, capsys):
    """Issue 10: a command main_continual.py would refuse is refused by the launcher, before sbatch and before
    the experiment directory exists; a valid one (even --accelerator gpu on this GPU-less 'login node') is sent."""
    script, base = _tiny_script(tmp_path), tmp_path / "exp"
    common = ["--script", str(script), "--base_experiment_dir", str(base), "--mode", "slurm"]
    for bad, named in (("--base_width", "--base_width"), ("--max_epochs", "--max_epochs")):
        assert launcher.main([*common, "--num_gpus", "0", "--", bad, "0"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err  # one line
        assert "main_continual.py would refuse" in err and named in err and "nothing was created" in err, err
    assert launcher.main([*common, "--num_gpus", "0", "--", "--no_such_flag"]) == 2
    assert "--no_such_flag" in capsys.readouterr().err
    assert not base.exists() and not fake_sbatch.exists()

    assert launcher.main([*common, "--num_gpus", "1", "--experiment_name", "ok"]) == 0
    assert (base / "ok" / "job.sbatch").exists() and (base / "ok" / "slurm_jobs.txt").read_text() == "4242\n"
    assert fake_sbatch.read_text().split() == ["--parsable", str(base / "ok" / "job.sbatch")]
    assert "--accelerator gpu" in (base / "ok" / "command.sh").read_text()


def test_linear_command_is_validated_too(tmp_path, fake_sbatch, capsys):
    script = tmp_path / "lin.sh"
    script.write_text("python3 main_linear.py --pretrained_model /no/such/task4.ckpt --max_epochs 0\n")
    rc = launcher.main(["--script", str(script), "--base_experiment_dir", str(tmp_path / "e"), "--mode", "slurm"])
    assert rc == 2
    assert "main_linear.py would refuse" in capsys.readouterr().err
    assert not (tmp_path / "e").exists() and not fake_sbatch.exists()


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--hours", "0"], "--hours must be at least 1"),
        (["--requeue", "-1"], "--requeue must be at least 0"),
        (["--num_nodes", "0"], "--num_nodes must be at least 1"),
        (["--cpus_per_task", "0"], "--cpus_per_task must be at least 1"),
        (["--num_gpus", "-1"], "--num_gpus must be at least 0"),
        (["--hours", "two"], "--hours: invalid int value"),
    ],
)
def test_bad_launcher_values_are_refused_before_any_dir(script, fake_main, tmp_path, fake_sbatch, capsys, flags, named):
    base = tmp_path / "exp"
    assert _launch(script, base, fake_main, "--mode", "slurm", *flags) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and len(err.splitlines()) == 1, err
    assert not base.exists() and not fake_sbatch.exists()


def test_unknown_launcher_flags_are_an_error_and_overrides_go_after_dashes(script, fake_main, tmp_path, capsys):
    """Issue 12: a flag the launcher does not have is an error (it used to join the training command)."""
    base = tmp_path / "exp"
    for unknown in (["--max_epochs", "1"], ["--qos", "high"], ["--num_gpu", "1"]):
        assert _launch(script, base, fake_main, *unknown) == 2
        err = capsys.readouterr().err
        assert f"unknown job_launcher.py option '{unknown[0]}'" in err and f"`-- {' '.join(unknown)}`" in err, err
    assert not base.exists()
    assert _launch(script, base, fake_main, "--experiment_name", "r", "--", "--max_epochs", "1", "--qos", "x") == 0
    (run,) = _runs(base / "r")
    assert _flag(run["argv"], "max_epochs") == ["1"] and _flag(run["argv"], "qos") == ["x"]


def test_sbatch_options_and_setup_lines_reach_the_job_file(script, fake_main, tmp_path, capsys):
    rc = _launch(
        script, tmp_path / "exp", fake_main, "--mode", "slurm", "--num_gpus", "1", "--dry_run",
        "--sbatch", "qos=high", "--sbatch=--signal=USR1@300", "--sbatch", "exclusive", "--sbatch", "-q long",
        "--setup", "module load cuda/12.1", "--setup", "source ~/venv/bin/activate",
    )  # fmt: skip
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    for expected in ("#SBATCH --qos=high", "#SBATCH --signal=USR1@300", "#SBATCH --exclusive", "#SBATCH -q long"):
        assert expected in lines, expected
    srun = next(i for i, line in enumerate(lines) if line.startswith("srun "))
    setup = [lines.index("module load cuda/12.1"), lines.index("source ~/venv/bin/activate")]
    last_directive = max(i for i, line in enumerate(lines) if line.startswith("#SBATCH"))
    assert last_directive < setup[0] < setup[1] < srun  # directives first (sbatch stops reading at a command)


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--mode", "slurm", "--sbatch", "time=10"], "use --hours"),
        (["--mode", "slurm", "--sbatch", "-N 2"], "use --num_nodes"),
        (["--mode", "slurm", "--sbatch=--gres=gpu:2"], "use --num_gpus"),
        (["--mode", "slurm", "--sbatch", "qos=a\n#SBATCH --time=1"], "one option per --sbatch"),
        (["--mode", "slurm", "--setup", "a\nb"], "one line of shell"),
        (["--sbatch", "qos=high"], "--sbatch describe a SLURM job: add --mode slurm"),
        (["--setup", "module load x"], "--setup describe a SLURM job"),
        (["--num_nodes", "2"], "--num_nodes describe a SLURM job"),
    ],
)
def test_bad_sbatch_options_are_refused(script, fake_main, tmp_path, capsys, flags, named):
    assert _launch(script, tmp_path / "exp", fake_main, "--dry_run", *flags) == 2
    assert named in capsys.readouterr().err


def test_nodes_tasks_and_gpus_render_the_way_lightning_expects(script, fake_main, tmp_path, capsys):
    """Issue 11: N nodes x G GPUs = N x G tasks, one per GPU; the command's --devices / --num_nodes match the job
    (Lightning's SLURMEnvironment.validate_settings compares them with SLURM_NTASKS_PER_NODE / SLURM_NNODES)."""
    base = tmp_path / "exp"
    assert _launch(script, base, fake_main, "--mode", "slurm", "--num_nodes", "2", "--num_gpus", "4", "--dry_run") == 0
    out = capsys.readouterr().out
    for expected in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4"):
        assert expected in out.splitlines(), expected
    assert "--accelerator gpu" in out and "--devices 4" in out and "--num_nodes 2" in out
    assert "export SRUN_CPUS_PER_TASK=${SLURM_CPUS_PER_TASK}" in out
    # the CPU: the command's own --devices is the number of processes per node (gloo DDP)
    rc = _launch(script, base, fake_main, "--mode", "slurm", "--num_gpus", "0", "--dry_run", "--", "--accelerator",
                 "cpu", "--devices", "2")  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "#SBATCH --nodes=1" in out and "#SBATCH --ntasks-per-node=2" in out and "gpus-per-node" not in out
    assert "--accelerator cpu" in out and "--devices 2" in out
    # a GPU command sent to the CPU runs one process
    rc = _launch(script, base, fake_main, "--mode", "slurm", "--num_gpus", "0", "--dry_run", "--", "--accelerator",
                 "gpu", "--devices", "4")  # fmt: skip
    assert rc == 0 and "#SBATCH --ntasks-per-node=1" in capsys.readouterr().out


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


DDP_PROBE = r"""
import json, os, sys
import torch
import torch.distributed as dist
from lightning.fabric.plugins.environments import SLURMEnvironment

args = sys.argv[1:]
flag = lambda name: args[args.index(name) + 1]
env = SLURMEnvironment()
record = {"detected": SLURMEnvironment.detect(), "world": env.world_size(), "rank": env.global_rank(),
          "local": env.local_rank(), "node": env.node_rank()}
env.validate_settings(num_devices=int(flag("--devices")), num_nodes=int(flag("--num_nodes") if "--num_nodes" in args else 1))
dist.init_process_group("gloo", init_method=f"tcp://{env.main_address}:{env.main_port}",
                        rank=env.global_rank(), world_size=env.world_size())
t = torch.tensor([env.global_rank() + 1.0])
dist.all_reduce(t)
record["sum"] = float(t)
dist.destroy_process_group()
with open(os.path.join(flag("--checkpoint_dir"), "rank%d.json" % record["rank"]), "w") as f:
    json.dump(record, f)
print("rank", record["rank"], "of", record["world"], flush=True)
"""


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(180)
def test_real_slurm_two_tasks_form_lightnings_process_group(script, tmp_path, slurm, monkeypatch):
    """Issue 11: the job file's nodes / tasks / srun are what Lightning's SLURMEnvironment expects. A CPU job of
    two tasks on one node (``--num_gpus 0 -- --accelerator cpu --devices 2``): both tasks run, Lightning detects
    SLURM, its validate_settings accepts the command's --devices / --num_nodes, and the two ranks join one gloo
    process group at Lightning's main address and port (an all-reduce of rank + 1 gives 3 on both)."""
    for k, v in slurm.items():
        monkeypatch.setenv(k, v)
    probe = tmp_path / "ddp_probe.py"
    probe.write_text(DDP_PROBE)
    base = tmp_path / "exp"
    rc = _launch(
        script, base, probe, "--mode", "slurm", "--num_gpus", "0", "--num_nodes", "1", "--cpus_per_task", "1",
        "--hours", "1", "--experiment_name", "ddp", "--", "--accelerator", "cpu", "--devices", "2",
    )  # fmt: skip
    assert rc == 0
    exp = base / "ddp"
    assert "#SBATCH --ntasks-per-node=2" in (exp / "job.sbatch").read_text()
    done = slurm_cluster.wait_for(lambda: len(list(exp.glob("rank*.json"))) == 2, timeout=150)
    logs = "\n".join(p.read_text() for p in sorted(exp.glob("slurm-*")))
    assert done, f"the two tasks did not both finish; logs:\n{logs}"
    records = sorted((json.loads(p.read_text()) for p in exp.glob("rank*.json")), key=lambda r: r["rank"])
    assert [(r["rank"], r["local"], r["node"], r["world"]) for r in records] == [(0, 0, 0, 2), (1, 1, 0, 2)]
    assert all(r["detected"] and r["sum"] == 3.0 for r in records)


REAL_SCRIPT = r"""#!/bin/bash
python3 main_continual.py \
    --dataset digits --encoder resnet9 --base_width 4 --crop_size 8 \
    --method barlow_twins --proj_hidden_dim 32 --output_dim 32 \
    --batch_size 64 --lr 0.05 --warmup_epochs 0 --num_workers 0 \
    --num_tasks 2 --max_epochs 1 --probes knn --no_baseline --no_progress_bar --seed 3
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


def _scontrol_job(job_id: str, env: dict) -> dict[str, str]:
    """``scontrol show job`` as ``{key: value}`` (empty when scontrol fails)."""
    res = subprocess.run(["scontrol", "show", "job", job_id], env=env, capture_output=True, text=True, timeout=10)
    return dict(w.split("=", 1) for w in res.stdout.split() if "=" in w) if res.returncode == 0 else {}


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(240)
def test_real_slurm_usr1_saves_requeues_and_the_requeued_job_resumes(tmp_path, slurm, monkeypatch):
    """Issue 12 under the real SLURM: a job submitted with ``--sbatch signal=USR1@60`` gets SLURM's pre-timeout
    signal as it starts training task 0 of 2 (3 epochs each). ``scancel --signal=USR1 <job>`` delivers it as
    ``--signal=USR1@T`` does: to the job's steps (the srun'd python), not to the batch shell (that takes ``B:``).
    The run finishes the epoch, writes ``resume/task0-last.ckpt``, says so and requeues its own job; SLURM starts
    it again (Restarts=1), it resumes at the next epoch and ends with the uninterrupted run's accuracy matrix
    and final weights, bit for bit (the reference runs outside SLURM, at the same time)."""
    for k, v in slurm.items():
        monkeypatch.setenv(k, v)
    # one thread in the job (sbatch exports this environment) and in the reference: the numbers depend on the
    # thread count, and two threads on a loaded 2-core machine measured 3x slower (45 s instead of 16 s a run)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    argv = [*SIGNAL_RUN, "--max_epochs", "3"]  # 2 tasks, 3 epochs of 2 batches each
    script = tmp_path / "tiny.sh"
    script.write_text("#!/bin/bash\npython3 main_continual.py " + " ".join(argv) + "\n")
    base, job_id, ref = tmp_path / "exp", None, None
    try:
        rc = launcher.main(
            ["--script", str(script), "--base_experiment_dir", str(base), "--mode", "slurm", "--num_gpus", "0",
             "--cpus_per_task", "1", "--hours", "1", "--experiment_name", "usr1", "--sbatch", "signal=USR1@60"]
        )  # fmt: skip
        assert rc == 0
        exp = base / "usr1"
        job_id = (exp / "slurm_jobs.txt").read_text().split()[0]
        sbatch = (exp / "job.sbatch").read_text().splitlines()
        assert "#SBATCH --requeue" in sbatch and "#SBATCH --signal=USR1@60" in sbatch
        with open(tmp_path / "reference.txt", "w") as out:  # the uninterrupted run, outside SLURM, meanwhile
            env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
            ref = subprocess.Popen([sys.executable, str(REPO / "main_continual.py"), *argv, "--checkpoint_dir",
                                    str(tmp_path / "whole")], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        out_log, err_log = exp / f"slurm-{job_id}.out", exp / f"slurm-{job_id}.err"
        read = lambda p: p.read_text() if p.exists() else ""  # noqa: E731
        logs = lambda: f"{read(out_log)[-3000:]}\n--- stderr\n{read(err_log)[-3000:]}"  # noqa: E731

        # the task loop announces task 0 (its SIGUSR1 handler is in place): the signal comes during its first fit
        assert slurm_cluster.wait_for(lambda: "=== task 0/1" in read(out_log), timeout=90, interval=0.1), logs()
        sent = subprocess.run(["scancel", "--signal=USR1", job_id], capture_output=True, text=True, timeout=10)
        assert sent.returncode == 0, sent.stderr
        requeued = f"SLURM job {job_id} requeued: it resumes from there."
        settled = lambda: requeued in read(out_log) or "equeue SLURM job" in read(out_log)  # noqa: E731  (or failed)
        assert slurm_cluster.wait_for(settled, timeout=60, interval=0.1) and requeued in read(out_log), logs()
        first = read(out_log)
        assert "received SIGUSR1: stopping at the end of this epoch" in first
        m = re.search(rf"stopped by SIGUSR1: the run is saved in {re.escape(str(exp))} \(task 0 after epoch (\d)"
                      r": task0-last\.ckpt\); run the same command to resume it\.", first)  # fmt: skip
        assert m, logs()
        epochs = int(m.group(1))
        assert epochs in (1, 2), logs()  # stopped mid-task, at an epoch's end
        ckpt = torch.load(exp / "resume" / "task0-last.ckpt", weights_only=True)  # the requeued job is not started
        assert ckpt["epoch"] == epochs - 1
        assert not (exp / "task0.ckpt").exists()

        # SLURM starts the job again (after AuthInfo's cred_expire): it resumes and finishes
        restarted = f"job {job_id} (array task none, restart 1)"
        second = lambda: read(out_log).partition(restarted)[2]  # noqa: E731
        done = slurm_cluster.wait_for(
            lambda: "Done." in second() and _scontrol_job(job_id, slurm).get("JobState") == "COMPLETED", timeout=120
        )
        assert done, f"{_scontrol_job(job_id, slurm)}\n{logs()}"
        info = _scontrol_job(job_id, slurm)
        assert info["Restarts"] == "1" and info["ExitCode"] == "0:0", info
        assert f"resuming task 0 from {exp}/resume/task0-last.ckpt" in read(err_log)
        assert f"task 0 epoch {epochs + 1}/3" in second() and f"task 0 epoch {epochs}/3" not in second()
        assert "task 1 epoch 3/3" in second() and "stopped by" not in second()
        assert json.loads((exp / "run_state.json").read_text())["completed_tasks"] == [0, 1]
        assert not (exp / "resume").exists()

        assert ref.wait(timeout=120) == 0, (tmp_path / "reference.txt").read_text()[-3000:]
        matrix = lambda run: (run / "results" / "accuracy_matrix.csv").read_text()  # noqa: E731
        assert matrix(exp) == matrix(tmp_path / "whole")
        whole = torch.load(tmp_path / "whole" / "task1.ckpt", weights_only=True)["state_dict"]
        resumed = torch.load(exp / "task1.ckpt", weights_only=True)["state_dict"]
        assert whole.keys() == resumed.keys()
        for k in whole:
            assert torch.equal(whole[k], resumed[k]), k
    finally:
        if job_id is not None:
            subprocess.run(["scancel", job_id], capture_output=True, timeout=10)
        if ref is not None and ref.poll() is None:
            ref.kill()
            ref.wait()


# --------------------------------------------------------------------------- stopping on a signal (cassle/preempt.py)

#: a tiny two-task run whose epochs are a few batches (so a signal lands mid-run, and the rerun is short)
SIGNAL_RUN = [
    "--dataset", "digits", "--encoder", "resnet9", "--base_width", "4", "--crop_size", "8", "--method", "barlow_twins",
    "--proj_hidden_dim", "32", "--output_dim", "32", "--batch_size", "64", "--lr", "0.05", "--warmup_epochs", "0",
    "--num_workers", "0", "--no_progress_bar", "--probes", "knn", "--no_baseline", "--seed", "3", "--num_tasks", "2",
    "--max_epochs", "5", "--train_fraction", "0.25",
]  # fmt: skip


@pytest.fixture
def fake_scontrol(tmp_path):
    """An ``scontrol`` that records its arguments; ``show job`` reports the state in ``$FAKE_JOB_STATE``."""
    bin_dir = tmp_path / "scontrol-bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol_calls.txt"
    (bin_dir / "scontrol").write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\n'
        'if [ "$1" = show ]; then echo "JobId=$3 JobName=x"; echo "   JobState=${FAKE_JOB_STATE:-RUNNING} Reason=None"; fi\n'
    )
    (bin_dir / "scontrol").chmod(0o755)
    return bin_dir, calls


def _slurm_env(bin_dir: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", SLURM_JOB_ID="4242", SLURM_JOB_NAME="cassle")
    env.update(extra)
    return env


def _start_and_signal(argv: list[str], env: dict, log: Path, sig: int, after: str = "task 0 epoch 1/"):
    """Start main_continual.py, send ``sig`` once ``after`` is in its output; return (exit status, output)."""
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "main_continual.py"), *argv], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            assert slurm_cluster.wait_for(lambda: after in log.read_text() or proc.poll() is not None, 240, 0.1)
            assert proc.poll() is None, log.read_text()[-2000:]
            proc.send_signal(sig)
            rc = proc.wait(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
    return rc, log.read_text()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigusr1_finishes_the_epoch_saves_requeues_and_the_rerun_resumes(tmp_path, fake_scontrol):
    """Issue 12: SLURM's pre-timeout signal (--signal=USR1@T) lets the epoch finish, writes the resume checkpoint
    at its end even when --checkpoint_frequency would not, says so, requeues the job, and the same command
    resumes from that checkpoint and finishes."""
    bin_dir, calls = fake_scontrol
    run = tmp_path / "run"
    argv = [*SIGNAL_RUN, "--num_tasks", "1", "--train_fraction", "0.15", "--checkpoint_frequency", "100",
            "--checkpoint_dir", str(run)]  # fmt: skip
    rc, out = _start_and_signal(argv, _slurm_env(bin_dir), tmp_path / "out.txt", signal.SIGUSR1)
    assert rc == 128 + signal.SIGUSR1, out[-2000:]
    assert "received SIGUSR1: stopping at the end of this epoch" in out
    m = re.search(r"stopped by SIGUSR1: the run is saved in (\S+) \(task 0 after epoch (\d+): task0-last\.ckpt\); "
                  r"run the same command to resume it\.", out)  # fmt: skip
    assert m and m.group(1) == str(run), out[-2000:]
    epochs = int(m.group(2))
    assert 1 <= epochs < 5
    ckpt = torch.load(run / "resume" / "task0-last.ckpt", weights_only=True)
    assert ckpt["epoch"] == epochs - 1  # written at the end of the epoch the signal arrived in
    assert not (run / "task0.ckpt").exists()
    assert calls.read_text().split("\n")[0] == "requeue 4242" and "SLURM job 4242 requeued" in out
    assert not list(run.glob("hpc_ckpt*"))  # Lightning's own auto-requeue checkpoint is not written

    res = subprocess.run([sys.executable, str(REPO / "main_continual.py"), *argv], cwd=REPO, capture_output=True,
                         text=True, timeout=400)  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert f"resuming task 0 from {run}/resume/task0-last.ckpt" in res.stderr
    assert f"task 0 epoch {epochs + 1}/5" in res.stdout and "task 0 epoch 1/5" not in res.stdout
    assert json.loads((run / "run_state.json").read_text())["completed_tasks"] == [0]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_stop_with_the_last_epoch_saved(tmp_path, fake_scontrol, sig):
    """SIGTERM (SLURM's time limit, a preemption) stops at the end of the batch and requeues the job under SLURM;
    Ctrl-C stops and requeues nothing. Both keep the last epoch's resume checkpoint, say that the same command
    resumes the run, and exit with 128 + the signal (Ctrl-C used to print only Lightning's 'attempting graceful
    shutdown' and exit 1; SIGTERM exited 0, silently)."""
    bin_dir, calls = fake_scontrol
    run = tmp_path / "run"
    argv = [*SIGNAL_RUN, "--checkpoint_dir", str(run)]
    rc, out = _start_and_signal(argv, _slurm_env(bin_dir), tmp_path / "out.txt", sig, after="task 0 epoch 2/")
    assert rc == 128 + sig, out[-2000:]
    name = "Ctrl-C" if sig == signal.SIGINT else "SIGTERM"
    m = re.search(rf"stopped by {name}: the run is saved in \S+ \(task 0 after epoch (\d+): task0-last\.ckpt\); "
                  r"run the same command to resume it\.", out)  # fmt: skip
    assert m, out[-2000:]
    assert torch.load(run / "resume" / "task0-last.ckpt", weights_only=True)["epoch"] == int(m.group(1)) - 1
    assert not (run / "task0.ckpt").exists()
    if sig == signal.SIGTERM:
        assert calls.read_text().splitlines() == ["show job 4242", "requeue 4242"]
    else:
        assert not calls.exists()


def test_requeue_slurm_job_ids_and_refusals(tmp_path, fake_scontrol, monkeypatch):
    from cassle import preempt

    bin_dir, calls = fake_scontrol
    for k in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(k)
    assert preempt.requeue_slurm_job(signal.SIGUSR1) == "" and not calls.exists()  # not under SLURM
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "70")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert "SLURM job 70_3 requeued" in preempt.requeue_slurm_job(signal.SIGUSR1)
    assert calls.read_text().splitlines() == ["requeue 70_3"]  # the array task, not the job id
    monkeypatch.setenv("FAKE_JOB_STATE", "CANCELLED")
    assert "cancelled: not requeued" in preempt.requeue_slurm_job(signal.SIGTERM)
    assert calls.read_text().splitlines()[-1] == "show job 70_3"  # scancel means stop: no requeue
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")  # an salloc / srun --pty shell is not requeued
    assert preempt.requeue_slurm_job(signal.SIGUSR1) == ""
