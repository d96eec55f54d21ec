"""Tests of main_linear.py / cassle.eval.linear: linear evaluation of a task checkpoint.

A real task checkpoint is built by hand (a resnet9 of width 4 at crop 8, in the
format of ``cassle.checkpoint.task_checkpoint``) so no pretraining is needed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import main_linear
from cassle.args.linear import parse_linear_args
from cassle.backbones import build_backbone
from cassle.checkpoint import FORMAT, VERSION, CheckpointError
from cassle.data.datasets import load_dataset
from cassle.data.splits import make_splits
from cassle.errors import ArgumentError
from cassle.eval.linear import (
    EvalLayout as Layout,
)
from cassle.eval.linear import (
    LinearEvalError,
    LinearModel,
    aggregate_metrics,
    prepare_linear,
    run_linear,
    sample_outcomes,
    stratified_fraction,
)
from tests.helpers import perturbed_backbone_state

RUN_ARGS = {
    "dataset": "digits",
    "data_dir": None,
    "crop_size": 8,
    "base_width": 4,
    "num_tasks": 5,
    "split_strategy": "class",
    "seed": 3,
    "encoder": "resnet9",
    "method": "barlow_twins",
    "strategy": "finetune",
}
FAST = ["--max_epochs", "2", "--batch_size", "64", "--num_workers", "0", "--no_progress_bar", "--accelerator", "cpu"]


def make_checkpoint(path: Path, drop: str | None = None, **arg_overrides) -> dict[str, torch.Tensor]:
    """Write a task checkpoint with a randomly initialised (but BN-stat-perturbed) backbone; return its backbone state."""
    state = perturbed_backbone_state("resnet9", 8, 4, seed=1)
    sd = {f"backbone.{k}": v for k, v in state.items()}
    sd["projector.0.weight"] = torch.randn(4, 4)
    sd["momentum_backbone.conv1.weight"] = torch.randn(2)  # must be ignored
    if drop is not None:
        del sd[drop]
    torch.save(
        {
            "format": FORMAT,
            "version": VERSION,
            "method": "barlow_twins",
            "strategy": "finetune",
            "encoder": "resnet9",
            "task_idx": 4,
            "args": {**RUN_ARGS, **arg_overrides},
            "state_dict": sd,
            "strategy_state": {},
        },
        path,
    )
    return state


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 2-epoch linear evaluation shared by the end-to-end tests."""
    root = tmp_path_factory.mktemp("linear")
    ckpt = root / "run" / "task4.ckpt"
    ckpt.parent.mkdir()
    state = make_checkpoint(ckpt)
    args = parse_linear_args(
        ["--pretrained_model", str(ckpt), "--lr", "0.5", "--seed", "7", *FAST, "--batch_size", "128", "--augment"]
    )
    result = run_linear(args)
    return ckpt, state, result


# --------------------------------------------------------------------------- end to end


def test_results_files_and_per_task_metrics(trained):
    ckpt, _, result = trained
    out = ckpt.parent / "linear" / "task4"  # the default output folder
    assert result.out_dir == out
    data = json.loads((out / "linear_results.json").read_text())
    assert data["pretrained_model"] == str(ckpt.resolve())
    assert data["epochs_trained"] == 2
    metrics = data["metrics"]
    # the split is the pretraining one: seed 3, 5 tasks, class strategy
    train, test = load_dataset("digits", None, True), load_dataset("digits", None, False)
    split = make_splits(train.targets, test.targets, 5, "class", seed=3)
    assert data["task_classes"] == split.task_classes
    assert data["num_train_samples"] == len(train) and data["num_test_samples"] == len(test)
    for key in ("val_acc1", "val_acc5", "val_task_aware_acc1"):
        assert 0.0 <= metrics[key] <= 100.0
    for t in range(5):
        assert f"val_acc1_task{t}" in metrics and f"val_task_aware_acc1_task{t}" in metrics
        # restricting the argmax to the task's classes can only help
        assert metrics[f"val_task_aware_acc1_task{t}"] >= metrics[f"val_acc1_task{t}"]
    assert "val_acc1_task5" not in metrics
    # val_acc1 is the sample-weighted mean of the per-task accuracies (tasks partition the test set)
    sizes = [len(i) for i in split.test_indices]
    pooled = sum(metrics[f"val_acc1_task{t}"] * n for t, n in enumerate(sizes)) / sum(sizes)
    assert pooled == pytest.approx(metrics["val_acc1"], abs=1e-3)
    assert metrics["val_acc1"] > 10.0  # 10 classes: the classifier learned something
    # the CSV holds the same numbers
    rows = (out / "linear_results.csv").read_text().splitlines()
    assert rows[0] == "metric,value"
    assert {r.split(",")[0]: float(r.split(",")[1]) for r in rows[1:]} == pytest.approx(metrics)
    # Lightning's CSV log has one validation row per epoch
    logged = (out / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    header = logged[0].split(",")
    assert "val_acc1_task4" in header and "val_task_aware_acc1" in header
    col = header.index("val_acc1")
    assert sum(1 for r in logged[1:] if r.split(",")[col] != "") == 2


def test_backbone_frozen_and_classifier_trained(trained):
    _, state, result = trained
    model = result.model
    after = model.backbone.state_dict()
    for k, v in state.items():  # weights and BN running statistics (and num_batches_tracked) unchanged
        assert torch.equal(after[k], v), k
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert not model.backbone.training
    # the classifier moved away from its initialisation (same seed -> same init)
    torch.manual_seed(7)
    init = nn.Linear(model.classifier.in_features, 10)
    assert not torch.allclose(init.weight, model.classifier.weight.detach())


def test_classifier_init_is_reproduced_by_seed():
    """Guards the 'classifier moved' check: LinearModel's classifier is the first RNG draw after seeding."""
    backbone = build_backbone("resnet9", 8, 4)
    layout = Layout(4, [torch.arange(4)], [list(range(10))], 10)
    torch.manual_seed(7)
    model = LinearModel(backbone, layout)
    torch.manual_seed(7)
    assert torch.equal(nn.Linear(backbone.num_features, 10).weight, model.classifier.weight)


def test_train_mode_keeps_backbone_in_eval():
    backbone = build_backbone("resnet9", 8, 4)
    model = LinearModel(backbone, Layout(4, [torch.arange(4)], [[0, 1]], 2))
    model.train()
    assert model.classifier.training and not model.backbone.training
    assert not any(m.training for m in model.backbone.modules())
    x = torch.randn(3, 3, 8, 8)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    logits = model(x)
    assert logits.shape == (3, 2)
    logits.sum().backward()
    assert all(p.grad is None for p in backbone.parameters())
    assert model.classifier.weight.grad is not None
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())


def test_feature_norm_standardises_features_before_the_classifier():
    """--feature_norm bn (default): the classifier sees (f − batch mean) / batch std while training and the
    running statistics when evaluating; --feature_norm none feeds the raw features (CaSSLe's protocol)."""
    torch.manual_seed(0)
    backbone = build_backbone("resnet9", 8, 4)
    layout = Layout(4, [torch.arange(4)], [[0, 1]], 2)
    model = LinearModel(backbone, layout)
    assert isinstance(model.feature_norm, nn.BatchNorm1d) and not model.feature_norm.affine
    x = torch.randn(16, 3, 8, 8) * 5 + 3
    with torch.no_grad():
        f = backbone(x)
    model.train()
    logits = model(x)
    standardised = (f - f.mean(0)) / torch.sqrt(f.var(0, unbiased=False) + model.feature_norm.eps)
    assert torch.allclose(logits, model.classifier(standardised), atol=1e-4)
    model.eval()
    run_mean, run_var = model.feature_norm.running_mean, model.feature_norm.running_var
    assert torch.allclose(run_mean, 0.1 * f.mean(0), atol=1e-5)  # one update with momentum 0.1
    expected = model.classifier((f - run_mean) / torch.sqrt(run_var + model.feature_norm.eps))
    assert torch.allclose(model(x), expected, atol=1e-4)
    raw = LinearModel(backbone, layout, feature_norm="none")
    assert torch.allclose(raw(x), raw.classifier(f), atol=1e-5)
    with pytest.raises(ValueError, match="feature_norm"):
        LinearModel(backbone, layout, feature_norm="ln")


def test_precompute_features_runs_the_backbone_once_per_image(tmp_path, monkeypatch):
    """--precompute_features: the frozen backbone sees every training and test image exactly once (no
    augmentation), however many epochs the classifier trains; the classifier still learns."""
    from cassle.eval import linear_plan

    ckpt = tmp_path / "run" / "task4.ckpt"
    ckpt.parent.mkdir()
    make_checkpoint(ckpt)
    seen = []
    real = linear_plan.load_frozen_backbone

    def counting(*a, **k):
        backbone = real(*a, **k)
        backbone.register_forward_hook(lambda m, inp, out: seen.append(len(inp[0])))
        return backbone

    monkeypatch.setattr(linear_plan, "load_frozen_backbone", counting)
    argv = ["--pretrained_model", str(ckpt), "--lr", "0.5", "--seed", "7", *FAST, "--batch_size", "128"]
    argv[argv.index("--max_epochs") + 1] = "3"
    result = run_linear(parse_linear_args([*argv, "--precompute_features"]))
    n_train, n_test = len(load_dataset("digits", None, train=True)), len(load_dataset("digits", None, train=False))
    assert sum(seen) == n_train + n_test
    assert result.info["epochs_trained"] == 3
    assert result.metrics["val_acc1"] > 30.0  # 10 classes: well above chance


def test_default_is_stored_features_augment_is_the_paper_protocol():
    base = ["--pretrained_model", "x.ckpt"]
    assert parse_linear_args(base).precompute_features
    assert not parse_linear_args([*base, "--augment"]).precompute_features
    with pytest.raises(ArgumentError, match="exclude each other"):
        parse_linear_args([*base, "--augment", "--precompute_features"])


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--momentum", "-5"], "--momentum"),
        (["--lr", "nan"], "--lr"),
        (["--max_epoch", "3"], "max_epoch"),
        (["--accelerator", "tpu"], "unknown --accelerator 'tpu'"),
        (["--devices", "0"], "--devices must name at least one device"),
        *([] if torch.cuda.is_available() else [(["--accelerator", "gpu"], "no usable GPU.*--accelerator cpu")]),
    ],
)
def test_bad_linear_values_refused(extra, needle):
    with pytest.raises(ArgumentError, match=needle):
        parse_linear_args(["--pretrained_model", "x.ckpt", *extra])


def test_rerun_same_checkpoint_allowed_other_checkpoint_refused(trained, tmp_path, capsys):
    ckpt, _, result = trained
    other = tmp_path / "task1.ckpt"
    make_checkpoint(other)
    code = main_linear.main(["--pretrained_model", str(other), "--checkpoint_dir", str(result.out_dir), *FAST])
    err = capsys.readouterr().err
    assert code == 2
    assert "another checkpoint" in err and "--name" in err and "--checkpoint_dir" in err
    # the same checkpoint with the same settings may be re-evaluated into its folder (prepare only: no training)
    same = ["--pretrained_model", str(ckpt), "--lr", "0.5", "--seed", "7", *FAST, "--batch_size", "128", "--augment"]
    plan = prepare_linear(parse_linear_args([*same[:-1], "--augment", "--num_workers", "0"]))
    assert plan.out_dir == result.out_dir
    # other settings never overwrite the first evaluation: refused, naming what changed and the fix
    with pytest.raises(LinearEvalError, match=r"other settings \(--lr\).*--name"):
        prepare_linear(parse_linear_args([*same, "--lr", "0.01"]))


# --------------------------------------------------------------------------- split, fraction, args.json


def test_split_reproduced_from_checkpoint_and_cli_seed_does_not_change_it(tmp_path):
    ckpt = tmp_path / "task2.ckpt"
    make_checkpoint(ckpt)
    plan = prepare_linear(parse_linear_args(["--pretrained_model", str(ckpt), "--seed", "11", *FAST]))
    train, test = load_dataset("digits", None, True), load_dataset("digits", None, False)
    split = make_splits(train.targets, test.targets, 5, "class", seed=3)
    assert plan.layout.task_classes == split.task_classes
    for a, b in zip(plan.layout.task_test_indices, split.test_indices):
        assert torch.equal(a, b)
    assert plan.out_dir == tmp_path / "linear" / "task2"
    assert plan.crop_size == 8 and plan.info["base_width"] == 4 and plan.info["split_seed"] == 3
    # a CLI --num_tasks overrides the checkpoint's
    plan2 = prepare_linear(parse_linear_args(["--pretrained_model", str(ckpt), "--num_tasks", "2", *FAST]))
    assert plan2.layout.task_classes == make_splits(train.targets, test.targets, 2, "class", seed=3).task_classes


def test_args_json_completes_the_checkpoint_args(tmp_path):
    ckpt = tmp_path / "task0.ckpt"
    make_checkpoint(ckpt)
    raw = torch.load(ckpt, weights_only=True)
    del raw["args"]["num_tasks"], raw["args"]["seed"]
    torch.save(raw, ckpt)
    (tmp_path / "args.json").write_text(json.dumps({**RUN_ARGS, "num_tasks": 2, "seed": 9}))
    plan = prepare_linear(parse_linear_args(["--pretrained_model", str(ckpt), *FAST]))
    train = load_dataset("digits", None, True)
    assert plan.layout.task_classes == make_splits(train.targets, None, 2, "class", seed=9).task_classes


def test_stratified_fraction_counts_and_seed():
    targets = torch.tensor([0] * 10 + [1] * 7 + [2] * 1 + [3] * 25)
    idx = torch.arange(len(targets))
    kept = stratified_fraction(targets, idx, 0.2, seed=0)
    counts = torch.bincount(targets[kept], minlength=4).tolist()
    assert counts == [2, 1, 1, 5]  # floor(0.2 n + 0.5), at least 1
    assert torch.equal(kept, torch.sort(kept).values) and len(torch.unique(kept)) == len(kept)
    assert torch.equal(kept, stratified_fraction(targets, idx, 0.2, seed=0))
    assert not torch.equal(kept, stratified_fraction(targets, idx, 0.2, seed=1))
    assert torch.equal(stratified_fraction(targets, idx.flip(0), 1.0, seed=0), idx)
    # a subset of indices (e.g. one domain) stays inside the subset
    sub = torch.arange(10, 43)
    assert set(stratified_fraction(targets, sub, 0.5, seed=0).tolist()) <= set(sub.tolist())


def test_data_fraction_plan_keeps_right_count_per_class(tmp_path):
    ckpt = tmp_path / "task4.ckpt"
    make_checkpoint(ckpt)
    plan = prepare_linear(parse_linear_args(["--pretrained_model", str(ckpt), "--data_fraction", "0.1", *FAST]))
    train = load_dataset("digits", None, True)
    full = torch.bincount(train.targets, minlength=10)
    kept = torch.bincount(train.targets[plan.train_indices], minlength=10)
    expected = torch.floor(0.1 * full.double() + 0.5).long().clamp_min(1)
    assert torch.equal(kept, expected)
    assert plan.out_dir.name == "task4-frac0.1"  # never mixed with the full-data results


# --------------------------------------------------------------------------- metrics


def test_sample_outcomes_and_aggregate_metrics_by_hand():
    # 4 classes, tasks {0,1} and {2,3}; 5 test samples
    logits = torch.tensor(
        [
            [5.0, 1.0, 0.0, 0.0],  # y=0: correct
            [0.0, 1.0, 5.0, 0.0],  # y=1: wrong overall (2), task-aware correct (1 > 0)
            [0.0, 0.0, 1.0, 2.0],  # y=2: wrong overall (3), task-aware wrong (3)
            [9.0, 0.0, 1.0, 2.0],  # y=3: wrong overall (0), task-aware correct (3)
            [0.0, 0.0, 3.0, 1.0],  # y=2: correct
        ]
    )
    targets = torch.tensor([0, 1, 2, 3, 2])
    layout = Layout(5, [torch.tensor([0, 1]), torch.tensor([2, 3, 4])], [[0, 1], [2, 3]], 4)
    top1, top5, aware = sample_outcomes(logits, targets, layout.task_masks())
    assert top1.tolist() == [True, False, False, False, True]
    assert top5.all()  # top-min(5, C) covers every class
    assert aware[:, 0].tolist()[:2] == [True, True] and aware[2:, 1].tolist() == [False, True, True]
    seen = torch.ones(5, dtype=torch.bool)
    m = aggregate_metrics(top1, top5, aware, seen, layout.task_test_indices, 4)
    assert "val_acc5" not in m  # fewer than 5 classes
    assert m["val_acc1"] == pytest.approx(40.0)
    assert m["val_acc1_task0"] == pytest.approx(50.0) and m["val_acc1_task1"] == pytest.approx(100 / 3)
    assert m["val_task_aware_acc1_task0"] == pytest.approx(100.0)
    assert m["val_task_aware_acc1_task1"] == pytest.approx(200 / 3)
    assert m["val_task_aware_acc1"] == pytest.approx(80.0)
    # unseen samples are ignored
    seen[4] = False
    m = aggregate_metrics(top1, top5, aware, seen, layout.task_test_indices, 4)
    assert m["val_acc1"] == pytest.approx(25.0) and m["val_acc1_task1"] == pytest.approx(0.0)


def test_domain_metrics():
    top1 = torch.tensor([True, False, True, True])
    aware = top1[:, None].clone()
    domains = torch.tensor([0, 0, 1, 1])
    m = aggregate_metrics(
        top1,
        top1,
        aware,
        torch.ones(4, dtype=torch.bool),
        [torch.arange(4)],
        5,
        domains=domains,
        domain_names=["real", "sketch", "clipart"],
    )
    assert m["val_acc1_real"] == pytest.approx(50.0) and m["val_acc1_sketch"] == pytest.approx(100.0)
    assert "val_acc1_clipart" not in m  # no test sample of that domain
    assert m["val_acc1_domain_agnostic"] == m["val_acc1"] == pytest.approx(75.0)
    assert "val_acc5" in m


# --------------------------------------------------------------------------- errors (exit code 2, before any work)


@pytest.fixture
def ckpt_path(tmp_path) -> Path:
    path = tmp_path / "run" / "task4.ckpt"
    path.parent.mkdir()
    make_checkpoint(path)
    return path


def _fails(capsys, argv: list[str], *fragments: str) -> str:
    code = main_linear.main([*argv, *FAST])
    err = capsys.readouterr().err
    assert code == 2, err
    for f in fragments:
        assert f in err, err
    return err


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--dataset", "nope"], ["unknown --dataset 'nope'", "cifar10"]),
        (["--dataset", "cifar10", "--data_dir", "/nonexistent/cifar"], ["/nonexistent/cifar", "not found"]),
        (["--domain", "real"], ["--domain needs a dataset with domains", "digits"]),
        (
            ["--dataset", "domainnet", "--data_dir", "/nonexistent", "--domain", "moon"],
            ["unknown --domain 'moon'", "quickdraw"],
        ),
        (["--data_fraction", "0"], ["--data_fraction must be in (0, 1]"]),
        (["--data_fraction", "1.5"], ["--data_fraction must be in (0, 1]"]),
        (["--encoder", "resnet18"], ["resnet9 encoder, not resnet18", "--encoder resnet9"]),
        (["--encoder", "alexnet"], ["unknown --encoder 'alexnet'"]),
        (["--crop_size", "96"], ["backbone.", "shape", "--crop_size"]),
        (["--optimizer", "lars"], ["invalid choice", "main_linear.py --help"]),
    ],
)
def test_bad_inputs_exit_2_before_work(ckpt_path, capsys, extra, fragments):
    _fails(capsys, ["--pretrained_model", str(ckpt_path), *extra], *fragments)
    assert not (ckpt_path.parent / "linear").exists()  # nothing written


def test_missing_corrupt_and_foreign_checkpoints(tmp_path, capsys):
    _fails(capsys, ["--pretrained_model", str(tmp_path / "none.ckpt")], "does not exist")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a torch file at all")
    _fails(capsys, ["--pretrained_model", str(bad)], "cannot be read", "corrupt")
    foreign = tmp_path / "foreign.ckpt"  # foreign checkpoints are read (tests/eval/test_linear_plan.py), not empty ones
    for sd in ({}, {"projector.0.weight": torch.ones(2)}):
        torch.save({"state_dict": sd}, foreign)
        _fails(capsys, ["--pretrained_model", str(foreign), "--encoder", "resnet18"], "holds no backbone tensors")
    _fails(capsys, [], "--pretrained_model")  # required


def test_checkpoint_missing_backbone_tensor(tmp_path, capsys):
    path = tmp_path / "task0.ckpt"
    make_checkpoint(path, drop="backbone.conv1.weight")
    _fails(capsys, ["--pretrained_model", str(path)], "lacks 1 backbone tensors", "backbone.conv1.weight")
    with pytest.raises(CheckpointError):
        prepare_linear(parse_linear_args(["--pretrained_model", str(path)]))


def test_unreadable_results_file_refused(ckpt_path, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "linear_results.json").write_text("{ broken")
    _fails(
        capsys, ["--pretrained_model", str(ckpt_path), "--checkpoint_dir", str(out)], "unreadable", "--checkpoint_dir"
    )


# --------------------------------------------------------------------------- with a real pretraining run


@pytest.mark.slow
def test_real_checkpoint_from_main_continual(tmp_path, capsys):
    import main_continual

    run_dir = tmp_path / "run"
    code = main_continual.main(
        [
            "--dataset",
            "digits",
            "--encoder",
            "resnet9",
            "--base_width",
            "4",
            "--crop_size",
            "8",
            "--num_tasks",
            "2",
            "--max_epochs",
            "1",
            "--batch_size",
            "64",
            "--num_workers",
            "0",
            "--no_progress_bar",
            "--probes",
            "none",
            "--no_baseline",
            "--accelerator",
            "cpu",
            "--checkpoint_dir",
            str(run_dir),
        ]
    )
    assert code == 0 and (run_dir / "task1.ckpt").exists(), capsys.readouterr().err[-300:]
    result = run_linear(
        parse_linear_args(["--pretrained_model", str(run_dir / "task1.ckpt"), *FAST[:1], "1", *FAST[2:]])
    )
    data = json.loads((run_dir / "linear" / "task1" / "linear_results.json").read_text())
    train = load_dataset("digits", None, True)
    assert data["task_classes"] == make_splits(train.targets, None, 2, "class", seed=5).task_classes
    assert set(result.metrics) >= {"val_acc1", "val_acc1_task0", "val_acc1_task1", "val_task_aware_acc1_task1"}
    assert all(math.isfinite(v) for v in result.metrics.values())


def test_second_evaluation_of_one_output_folder_is_refused_while_the_first_runs(ckpt_path, tmp_path, capsys):
    """Two main_linear.py on one output folder (issue 10): the second stops at once naming the holder, writes
    nothing, and the first's folder is untouched."""
    from cassle.rundir import LOCK_FILE, run_lock

    out = tmp_path / "linear_out"
    with run_lock(out):  # what the first evaluation holds while it trains
        err = _fails(capsys, ["--pretrained_model", str(ckpt_path), "--checkpoint_dir", str(out)], "is in use by pid")
        assert "one process per run directory" in err
    assert [p.name for p in out.iterdir()] == [LOCK_FILE]  # no results, no logs


def test_fit_warnings_name_a_rising_or_non_finite_loss_and_chance_accuracy():
    from cassle.eval.linear_metrics import fit_warnings

    assert fit_warnings([2.3, 1.1, 0.7], 88.0, 10, 0.1) == []
    rising = fit_warnings([6.9, 12.0, 30.0], 34.9, 10, 0.1)  # the diverging default
    assert len(rising) == 1 and "rose from 6.9 (epoch 0) to 30 (epoch 2)" in rising[0] and "--lr (now 0.1)" in rising[0]
    assert "non-finite" in fit_warnings([2.3, float("nan")], 50.0, 10, 1e3)[0]
    (chance,) = fit_warnings([2.30, 2.30], 10.1, 10, 0.1)  # flat loss, top-1 at 1/C: the tiny run's 10.1 %
    assert "at chance level (10.0 % for 10 classes)" in chance
    assert fit_warnings([2.3], 14.0, 10, 0.1) and not fit_warnings([2.3], 16.0, 10, 0.1)  # up to 1.5 x chance
    assert fit_warnings([1.0, 1.04], 90.0, 10, 0.1) == []  # within 5 %: noise, not divergence


def test_a_linear_evaluation_that_does_not_learn_says_so(ckpt_path, capsys):
    """On its raw features with a huge lr the classifier diverges: the run says so in one warning line per finding
    and keeps the warnings in linear_results.json (before, 10.1 % top-1 came with no word)."""
    argv = ["--pretrained_model", str(ckpt_path), "--feature_norm", "none", "--lr", "1e6", "--scheduler", "none"]
    assert main_linear.main([*argv, *FAST]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("warning: ")]
    assert lines and all("--lr" in ln for ln in lines), out
    saved = json.loads(next((ckpt_path.parent / "linear").rglob("linear_results.json")).read_text())
    assert saved["warnings"] == [ln.removeprefix("warning: ") for ln in lines]
