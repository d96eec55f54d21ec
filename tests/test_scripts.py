"""cassle/scripts.py: the bash expansions a published script uses, checked against bash itself, and the
CaSSLe seed workflow (``PRETRAINED_PATH=.../task0.ckpt`` makes a ``_distill`` script start at task 1)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cassle import launcher
from cassle.scripts import LauncherError, _expand, parse_script
from tests.helpers import TINY

REPO = Path(__file__).resolve().parent.parent
DISTILL_SCRIPTS = sorted((REPO / "bash_files" / "continual").rglob("*_distill.sh"))

# lines as a script would write them, each with whether it has an unquoted $P (bash splits a value with a
# space there, the parser keeps it one word); each is expanded by our parser and by bash, and the words must agree
LINES = [
    ("--a ${P:+--pretrained_model $P --task_idx 1} --b", True),
    ('--a ${P:+--pretrained_model "$P" --task_idx 1}', False),
    ("--a ${P+--set $P}", True),
    ("--a ${P:-fallback} ${P-unset}", True),
    ('--a "${P:-fallback}" "${P-unset}"', False),
    ("--a ${P:+x ${Q:-q} y}", False),
    ('--a "${P:+$P/sub}" --b', False),
    ("--a ${P:+'$P' literal}", False),
    ("--a ${EMPTY:+never} ${EMPTY+set-but-empty} ${EMPTY:-empty-default}", False),
]
ENVS = [
    {"EMPTY": ""},
    {"EMPTY": "", "P": "/ckpt/task0.ckpt"},
    {"EMPTY": "", "P": "", "Q": "qq"},
    {"EMPTY": "", "P": "/dir with space/task0.ckpt", "Q": "qq"},
]


def _bash_words(line: str, env: dict) -> list[str]:
    out = subprocess.run(
        ["bash", "-c", f"printf '%s\\0' {line}"], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, check=True
    ).stdout.decode()
    return out.split("\0")[:-1]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("env", ENVS, ids=["unset", "set", "empty", "space"])
@pytest.mark.parametrize("line, unquoted", LINES)
def test_expansion_gives_the_words_bash_gives(line, unquoted, env):
    missing: list[str] = []
    ours = shlex.split(_expand(line, env, missing))
    if unquoted and " " in env.get("P", ""):  # bash would split the path; the parser keeps it whole
        assert env["P"] in ours and " ".join(ours) == " ".join(_bash_words(line, env)), line
    else:
        assert ours == _bash_words(line, env), line
    assert not missing  # every name here has a default or an alternative: none is required


def test_unquoted_value_with_space_stays_one_word():
    """Bash would split ``--pretrained_model $P`` at the space; the parser keeps the path whole."""
    env = {"P": "/dir with space/task0.ckpt"}
    assert shlex.split(_expand("${P:+--pretrained_model $P --task_idx 1}", env, [])) == [
        "--pretrained_model",
        "/dir with space/task0.ckpt",
        "--task_idx",
        "1",
    ]


def test_alternative_is_expanded_only_when_used():
    missing: list[str] = []
    assert _expand("${P:+--x $NOT_SET}", {}, missing).strip() == "" and not missing
    _expand("${P:+--x $NOT_SET}", {"P": "1"}, missing)
    assert missing == ["NOT_SET"]


@pytest.mark.parametrize("bad", ["${P:+--x", "${P:?oops}", "${#P}", "${P:+${Q}"])
def test_unsupported_or_unterminated_expansion_is_one_error(bad):
    with pytest.raises(LauncherError, match=r"\$\{"):
        _expand(bad, {"P": "1", "Q": "2"}, [])


def test_every_distill_script_starts_at_task_1_from_pretrained_path(monkeypatch):
    assert len(DISTILL_SCRIPTS) >= 40
    monkeypatch.setenv("DATA_DIR", "/data")
    for path in DISTILL_SCRIPTS:
        monkeypatch.delenv("PRETRAINED_PATH", raising=False)
        a = parse_script(path).args
        assert "pretrained_model" not in a and "task_idx" not in a, path  # no checkpoint: every task is trained
        monkeypatch.setenv("PRETRAINED_PATH", "/runs/seed/task0.ckpt")
        a = parse_script(path).args
        assert a["pretrained_model"] == ["/runs/seed/task0.ckpt"] and a["task_idx"] == ["1"], path
        assert a["strategy"] == ["cassle"], path
        monkeypatch.setenv("PRETRAINED_PATH", "")  # set but empty: as bash's :+, like unset
        assert "pretrained_model" not in parse_script(path).args, path


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_distill_script_under_bash_passes_the_same_arguments(tmp_path):
    """`bash script.sh` (not the launcher) gives main_continual.py the same arguments as the parser reads."""
    script = REPO / "bash_files" / "continual" / "cifar" / "barlow_distill.sh"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text('#!/bin/bash\nprintf "%s\\0" "$@" > "$ARGV_OUT"\n')
    (fake / "python3").chmod(0o755)
    for pretrained in ("", "/runs/a b/task0.ckpt"):
        env = {"PATH": f"{fake}:/usr/bin:/bin", "DATA_DIR": "/data", "ARGV_OUT": str(tmp_path / "argv")}
        if pretrained:
            env["PRETRAINED_PATH"] = pretrained
        subprocess.run(["bash", str(script)], env=env, check=True, cwd=tmp_path)
        words = (tmp_path / "argv").read_bytes().decode().split("\0")[:-1]
        cmd = parse_script(script, env=env)
        assert words == [cmd.entrypoint] + launcher.format_args(cmd.args)
        assert ("--task_idx" in words) == bool(pretrained)


@pytest.mark.slow
def test_launcher_with_pretrained_path_starts_at_task_1(tmp_path, monkeypatch):
    """The CaSSLe README's seed workflow, end to end: task 0 once, then the distill script from its checkpoint."""
    import main_continual

    seed_run = tmp_path / "seed"
    fast = ["--num_tasks", "2", "--max_epochs", "1", "--gpu_augment", "--probes", "knn"]  # batched augmentation
    assert main_continual.main(TINY + ["--checkpoint_dir", str(seed_run), *fast]) == 0
    task0 = torch.load(seed_run / "task0.ckpt", weights_only=True)
    monkeypatch.setenv("PRETRAINED_PATH", str(seed_run / "task0.ckpt"))
    base = tmp_path / "experiments"
    # the digits CaSSLe script, shrunk to TINY's model: only the overrides after -- differ from the published file
    shrink = [t for t in TINY if t not in ("--method", "barlow_twins")] + fast
    code = launcher.main(
        [
            "--script",
            str(REPO / "bash_files" / "continual" / "digits" / "barlow_distill.sh"),
            "--base_experiment_dir",
            str(base),
            "--",
            *shrink,
            "--distill_proj_hidden_dim",
            "32",
        ]
    )
    assert code == 0
    (run,) = base.iterdir()
    assert "--task_idx 1" in (run / "command.sh").read_text()
    assert (run / "task1.ckpt").exists() and not (run / "task0.ckpt").exists()  # task 0 was not retrained
    task1 = torch.load(run / "task1.ckpt", weights_only=True)
    assert task1["task_idx"] == 1 and task1["strategy"] == "cassle"
    # the frozen teacher of task 1 is task 0's network: it holds task0.ckpt's backbone exactly
    sd1, sd0 = task1["state_dict"], task0["state_dict"]
    teacher = {k[len("frozen_") :]: v for k, v in sd1.items() if k.startswith("frozen_backbone.")}
    assert teacher and teacher.keys() <= sd0.keys()
    assert all(torch.equal(v, sd0[k]) for k, v in teacher.items())


# --------------------------------------------------------------------------- the CaSSLe README's paths


@pytest.mark.parametrize("split", ["class", "data"])
def test_imagenet100_linear_scripts_at_the_cassle_readme_paths(split, monkeypatch):
    """`bash bash_files/linear/imagenet-100/class/vicreg_linear.sh` (the CaSSLe README's path) exists for every
    published method and evaluates with the split of the continual scripts in the same-named folder."""
    monkeypatch.setenv("DATA_DIR", "/data")
    monkeypatch.setenv("PRETRAINED_PATH", "/ckpt")
    continual = sorted((REPO / "bash_files" / "continual" / "imagenet-100" / split).glob("*.sh"))
    methods = {p.stem.replace("_distill", "") for p in continual}
    assert "vicreg" in methods
    for m in sorted(methods):
        lin = parse_script(REPO / "bash_files" / "linear" / "imagenet-100" / split / f"{m}_linear.sh")
        a = lin.args
        assert lin.entrypoint == "main_linear.py" and a["pretrained_model"] == ["/ckpt"], m
        run = parse_script(REPO / "bash_files" / "continual" / "imagenet-100" / split / f"{m}.sh").args
        assert a["split_strategy"] == run["split_strategy"] == [split] and a["num_tasks"] == run["num_tasks"], m
        assert a["dataset"] == run["dataset"] and a["data_dir"] == run["data_dir"] and a["encoder"] == run["encoder"]
        # the same protocol as the flat linear/imagenet-100/ script, only the split named
        flat = parse_script(REPO / "bash_files" / "linear" / "imagenet-100" / f"{m}_linear.sh").args
        same = {k: v for k, v in a.items() if k not in ("split_strategy", "num_tasks", "name")}
        assert same == {k: v for k, v in flat.items() if k != "name"}, m


@pytest.mark.parametrize("dataset", ["cifar", "imagenet-100", "domainnet"])
def test_the_papers_linear_scripts_use_the_papers_protocol(dataset, monkeypatch):
    """main_linear.py's defaults (stored, standardised features) are not the CaSSLe paper's protocol: every
    published linear script of the paper's datasets passes ``--augment --feature_norm none`` (random-resized crop
    and flip through the frozen backbone every epoch, raw features) and the encoder of its continual scripts."""
    monkeypatch.setenv("DATA_DIR", "/data")
    monkeypatch.setenv("PRETRAINED_PATH", "/ckpt")
    scripts = sorted((REPO / "bash_files" / "linear" / dataset).rglob("*_linear.sh"))
    assert len(scripts) >= 6
    for path in scripts:
        a = parse_script(path).args
        assert "augment" in a and a["feature_norm"] == ["none"], path.relative_to(REPO)
        assert a["encoder"] == ["resnet18"], path.relative_to(REPO)


# --------------------------------------------------------------------------- scripts/make_imagenet100.py

MAKE_I100 = REPO / "scripts" / "make_imagenet100.py"


def _jpeg(path: Path, value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value % 256, 40, 90)).save(path, "JPEG")


def _fake_imagenet(root: Path, classes: list[str], extra: int = 3) -> None:
    """ImageNet's layout at 8 px: train/<wnid>/ with two images, val/<wnid>/ with one, and some other classes."""
    for i, c in enumerate(classes + [f"n9999999{k}" for k in range(extra)]):
        for j in range(2):
            _jpeg(root / "train" / c / f"{c}_{j}.JPEG", i + j)
        _jpeg(root / "val" / c / f"ILSVRC2012_val_{i:08d}.JPEG", i)


def _make(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(MAKE_I100), *argv], capture_output=True, text=True)


def test_shipped_class_list_is_the_standard_imagenet100():
    names = (REPO / "scripts" / "imagenet100_classes.txt").read_text().split()
    assert len(names) == len(set(names)) == 100
    assert all(len(n) == 9 and n[0] == "n" and n[1:].isdigit() for n in names)
    assert names[:3] == ["n02869837", "n01749939", "n02488291"] and names[-1] == "n02090622"  # CMC's order


def test_make_imagenet100_links_the_100_classes(tmp_path):
    from cassle.data.datasets import load_dataset

    classes = (REPO / "scripts" / "imagenet100_classes.txt").read_text().split()
    _fake_imagenet(tmp_path / "imagenet", classes)
    out = tmp_path / "data" / "imagenet-100"
    out.parent.mkdir()
    r = _make("--imagenet", str(tmp_path / "imagenet"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "100 classes, 200 train and 100 val images" in r.stdout
    for split in ("train", "val"):
        entries = sorted(os.listdir(out / split))
        assert entries == sorted(classes)  # the other ImageNet classes are left out
        assert all((out / split / c).is_symlink() for c in entries)  # links, not copies
        assert (out / split / classes[0]).resolve() == (tmp_path / "imagenet" / split / classes[0]).resolve()
    assert not [
        p
        for p in out.rglob("*")
        if p.is_file() and not p.is_symlink() and not p.resolve().is_relative_to(tmp_path / "imagenet")
    ]
    # cassle reads it as --dataset imagenet100
    train, val = load_dataset("imagenet100", str(out), train=True), load_dataset("imagenet100", str(out), train=False)
    assert train.num_classes == 100 and len(train) == 200 and len(val) == 100
    assert train.get_image(0).shape[-2:] == (8, 8)
    # a rerun on the finished folder changes nothing
    before = {p: os.readlink(p) for p in (out / "train").iterdir()}
    r = _make("--imagenet", str(tmp_path / "imagenet"), "--out", str(out))
    assert r.returncode == 0 and "nothing to do" in r.stdout
    assert {p: os.readlink(p) for p in (out / "train").iterdir()} == before
    assert [p.name for p in out.parent.iterdir()] == ["imagenet-100"]  # no staging folder left behind


def test_make_imagenet100_bad_input_is_one_line_and_writes_nothing(tmp_path):
    classes = (REPO / "scripts" / "imagenet100_classes.txt").read_text().split()
    _fake_imagenet(tmp_path / "imagenet", classes[:98], extra=0)  # two classes lacking
    out = tmp_path / "imagenet-100"
    r = _make("--imagenet", str(tmp_path / "imagenet"), "--out", str(out))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "lacks 2 of the 100 class folders" in r.stderr and classes[98] in r.stderr and "--classes" in r.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["imagenet"]

    flat = tmp_path / "flat"  # the official validation images, not yet sorted into class folders
    _fake_imagenet(flat, classes, extra=0)
    shutil.rmtree(flat / "val")
    _jpeg(flat / "val" / "ILSVRC2012_val_00000001.JPEG", 1)
    r = _make("--imagenet", str(flat), "--out", str(out))
    assert r.returncode == 2 and "flat" in r.stderr and "val/<wnid>/" in r.stderr and not out.exists()

    # an existing, different --out is never overwritten
    out.mkdir()
    (out / "results.txt").write_text("earlier work")
    r = _make("--imagenet", str(tmp_path / "imagenet"), "--out", str(out), "--classes", str(tmp_path / "c.txt"))
    assert r.returncode == 2 and "c.txt does not exist" in r.stderr
    (tmp_path / "c.txt").write_text("\n".join(classes[:5]) + "\n")
    r = _make("--imagenet", str(tmp_path / "imagenet"), "--out", str(out), "--classes", str(tmp_path / "c.txt"))
    assert r.returncode == 2 and "already exists" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert [p.name for p in out.iterdir()] == ["results.txt"] and (out / "results.txt").read_text() == "earlier work"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
