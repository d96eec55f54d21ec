"""bench/paper_table.py: the paper's CIFAR-100 table from the published scripts, at a tiny budget on generated files.

Runs all six methods x {finetune, cassle} through main_continual.py and main_linear.py (in this process,
so the test stays fast) on CIFAR-100-format files, collects the linear top-1 and prints it next to the paper's.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("paper_table", ROOT / "bench" / "paper_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


paper_table = _load()

TINY = [
    "--continual_args",
    "--encoder",
    "resnet9",
    "--base_width",
    "4",
    "--crop_size",
    "8",
    "--max_epochs",
    "1",
    "--num_tasks",
    "2",
    "--batch_size",
    "16",
    "--proj_hidden_dim",
    "16",
    "--output_dim",
    "16",
    "--accelerator",
    "cpu",
    "--devices",
    "1",
    "--precision",
    "32",
    "--num_workers",
    "0",
    "--no_progress_bar",
    "--probes",
    "knn",
    "--no_baseline",
    "--linear_args",
    "--encoder",
    "resnet9",
    "--crop_size",
    "8",
    "--max_epochs",
    "1",
    "--batch_size",
    "32",
    "--accelerator",
    "cpu",
    "--num_workers",
    "0",
    "--no_progress_bar",
]
SETS = [
    "--set",
    "pred_hidden_dim=16",
    "--set",
    "distill_proj_hidden_dim=16",
    "--set",
    "num_prototypes=10",
    "--set",
    "queue_size=32",
    "--set",
    "epoch_queue_starts=0",
]


def make_cifar100(root: Path, per_class: int = 2) -> None:
    """CIFAR-100 python-version files: ``per_class`` train and 1 test image per class, class-coloured noise."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def images(labels):
        base = (np.asarray(labels)[:, None] * 2).astype(np.int64)
        return np.clip(base + rng.integers(0, 60, size=(len(labels), 3072)), 0, 255).astype(np.uint8)

    train = [c for c in range(100) for _ in range(per_class)]
    test = list(range(100))
    for name, labels in (("train", train), ("test", test)):
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": images(labels), b"fine_labels": labels, b"coarse_labels": [0] * len(labels)}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"c{k}".encode() for k in range(100)], b"coarse_label_names": []}, f)


def in_process(cmd: list[str], log: Path) -> int:
    """Run main_continual.py / main_linear.py in this process (the default runner starts a subprocess)."""
    import main_continual
    import main_linear

    entry = {"main_continual.py": main_continual.main, "main_linear.py": main_linear.main}[Path(cmd[1]).name]
    return int(entry(cmd[2:]) or 0)


@pytest.mark.slow
def test_runs_collects_and_prints_next_to_the_paper(tmp_path, capsys):
    make_cifar100(tmp_path / "data")
    out = tmp_path / "table"
    argv = ["--data_dir", str(tmp_path / "data"), "--out", str(out), *SETS, *TINY]
    assert paper_table.main(argv, runner=in_process) == 0
    printed = capsys.readouterr().out
    for method, (ft, cs) in paper_table.PAPER.items():
        row = next(line for line in printed.splitlines() if line.startswith(f"| {method} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == f"{ft:.1f}" and cells[4] == f"{cs:.1f}" and cells[6] == f"{cs - ft:+.1f}"
        for strategy, col in (("finetune", 1), ("cassle", 3)):
            res = json.loads(
                (out / f"{method}-{strategy}" / "linear" / "paper_table" / "linear_results.json").read_text()
            )
            assert cells[col] == f"{res['metrics']['val_acc1']:.1f}"  # our number is the linear evaluation's top-1
            run_args = json.loads((out / f"{method}-{strategy}" / "args.json").read_text())
            assert run_args["strategy"] == strategy and run_args["method"] == method
            assert run_args["num_tasks"] == 2 and run_args["encoder"] == "resnet9"
    assert (out / "paper_table.md").read_text().startswith("CIFAR-100")
    # the published settings reach the runs: the scripts' own values where nothing overrides them
    assert json.loads((out / "byol-cassle" / "args.json").read_text())["distill_lamb"] == 1.0
    assert json.loads((out / "swav-cassle" / "args.json").read_text())["num_prototypes"] == 10

    # rerun: everything finished is kept, nothing runs again
    calls = []
    assert paper_table.main(argv, runner=lambda cmd, log: calls.append(cmd) or 0) == 0
    assert calls == []


def test_dry_run_applies_overrides_and_sets(tmp_path, capsys):
    argv = [
        "--data_dir",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
        "--methods",
        "byol",
        "swav",
        "--dry_run",
        "--set",
        "pred_hidden_dim=64",
        "--linear_args",
        "--max_epochs",
        "3",
        "--continual_args",
        "--max_epochs",
        "2",
    ]
    assert paper_table.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8  # 2 methods x 2 strategies x (pretraining, linear)
    byol = lines[0].split()
    assert byol[byol.index("--max_epochs") + 1] == "2" and byol[byol.index("--pred_hidden_dim") + 1] == "64"
    assert byol[byol.index("--checkpoint_dir") + 1] == str(tmp_path / "o" / "byol-finetune")
    assert "--pred_hidden_dim" not in lines[4].split()  # swav's script has no such flag: --set leaves it alone
    lin = lines[1].split()
    assert lin[1].endswith("main_linear.py") and lin[lin.index("--max_epochs") + 1] == "3"
    assert lin[lin.index("--name") + 1] == "paper_table"


def test_missing_data_dir_is_one_clear_error(monkeypatch, capsys):
    monkeypatch.delenv("DATA_DIR", raising=False)
    with pytest.raises(SystemExit):
        paper_table.main(["--methods", "byol"])
    assert "DATA_DIR" in capsys.readouterr().err


def test_table_marks_missing_runs(tmp_path, capsys):
    assert paper_table.main(["--table_only", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "| byol | – | 52.7 | – | 62.2 | – | +9.5 |" in text
