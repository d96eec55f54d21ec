"""README.md: its Python example runs as written, its public names import, its dataset table covers the registry."""

from __future__ import annotations

import contextlib
import importlib
import io
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def _python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README, flags=re.S | re.M)


def test_notebook_example_trains_one_task_and_probes_it():
    (block,) = _python_blocks()  # the one Python example: "From Python (a notebook)"
    code = [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(code) <= 12, "the README promises a short example"
    ns: dict = {"__name__": "readme_example"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md (From Python)", "exec"), ns)
    model, dm = ns["model"], ns["dm"]
    assert model.trainer.global_step > 0 and model.current_task_idx == 0  # task 0 was fitted
    assert dm.num_tasks == 5 and len(dm.task_classes[0]) == 2
    # the printed result is the probes' output: per-task (task-aware) and joint (class-incremental) accuracies in %
    printed = out.getvalue().strip().splitlines()[-1]
    result = eval(printed, {})  # a dict of floats, as printed
    assert set(result) == {"per_task", "joint"}
    for probe in ("knn", "ridge"):
        accs = result["per_task"][probe]
        assert len(accs) == 5 and all(0.0 <= a <= 100.0 for a in accs)
        assert 20.0 < result["joint"][probe] <= 100.0  # 10 classes: far above chance on the digits


@pytest.mark.parametrize(
    "module, names",
    [
        ("cassle.data", ["ContinualDataModule", "load_dataset", "make_splits", "BatchedAugment", "DATASETS"]),
        ("cassle", ["ContinualDataModule", "build_model_class", "evaluate_after_task", "parse_args", "METHODS"]),
    ],
)
def test_public_names_import(module, names):
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name
    assert set(names) <= set(mod.__all__) and set(names) <= set(dir(mod))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mod.nope  # noqa: B018


def test_datasets_table_and_layout_docs_cover_every_registered_dataset():
    from cassle.data import DATASETS

    table = README.split("### Datasets", 1)[1].split("#### Putting the datasets in place", 1)
    assert len(table) == 2, "the README's dataset section lost its layout guide"
    rows = table[0]
    for name in DATASETS:
        assert f"`{name}`" in rows, f"README's dataset table lacks {name}"
    guide = table[1].split("\n### ", 1)[0]
    for title in ("CIFAR-10 / CIFAR-100", "STL-10", "ImageNet-100", "DomainNet"):
        assert f"**{title}**" in guide, title
    assert "scripts/make_imagenet100.py" in guide and (REPO / "scripts" / "make_imagenet100.py").is_file()


def test_readme_paths_and_statements_of_the_seed_workflow():
    for path in re.findall(r"bash_files/[\w./-]+\.sh", README):
        assert (REPO / path).is_file(), path
    assert "task-aware" in README and "class-incremental" in README
