#!/usr/bin/env python3
"""Build the ImageNet-100 folder ``--dataset imagenet100`` reads, from a copy of ImageNet, with symlinks.

    python scripts/make_imagenet100.py --imagenet /datasets/imagenet --out $DATA_DIR/imagenet-100

``--imagenet`` must hold ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (the official validation images
sorted into class folders, as torchvision's and most copies have them). ``--out`` gets
``train/<wnid>`` and ``val/<wnid>`` for the 100 classes of ``scripts/imagenet100_classes.txt`` (the
standard ImageNet-100 of Tian et al.'s CMC, used by solo-learn and the CaSSLe paper), each a symlink
to the ImageNet class folder: no image is copied. Everything is checked before anything is written, the
folder is built under a temporary name and renamed into place at the end (an interrupted run leaves no
half-built ``--out``), and a rerun on a finished folder changes nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

CLASSES_FILE = Path(__file__).resolve().parent / "imagenet100_classes.txt"
SPLITS = ("train", "val")


class BuildError(Exception):
    """A problem with the input, stated in one line with its fix."""


def read_classes(path: Path) -> list[str]:
    """The class folder names listed in ``path``, one per line (``#`` comments and blank lines skipped)."""
    if not path.is_file():
        raise BuildError(f"class list {path} does not exist; pass --classes FILE with one ImageNet wnid per line")
    names = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
    names = [n for n in names if n]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if not names or dupes:
        why = "is empty" if not names else f"lists {', '.join(dupes)} twice"
        raise BuildError(f"class list {path} {why}; it needs one distinct wnid per line")
    return names


def _has_files(folder: Path) -> bool:
    return any(e.is_file() for e in os.scandir(folder))


def plan(imagenet: Path, classes: list[str]) -> dict[str, Path]:
    """``{"train/<wnid>": source folder, ...}``, after checking that every class folder is there."""
    imagenet = imagenet.resolve()
    for split in SPLITS:
        if not (imagenet / split).is_dir():
            raise BuildError(
                f"{imagenet} has no {split}/ folder; pass --imagenet pointing to the ImageNet root that holds "
                "train/<wnid>/ and val/<wnid>/"
            )
    if _has_files(imagenet / "val") and not any((imagenet / "val" / c).is_dir() for c in classes):
        raise BuildError(
            f"{imagenet / 'val'} holds the validation images flat; sort them into val/<wnid>/ folders first "
            "(e.g. with the ImageNet devkit's labels or the widely used valprep.sh), then rerun"
        )
    links: dict[str, Path] = {}
    for split in SPLITS:
        missing = [c for c in classes if not (imagenet / split / c).is_dir()]
        if missing:
            raise BuildError(
                f"{imagenet / split} lacks {len(missing)} of the {len(classes)} class folders "
                f"(e.g. {', '.join(missing[:3])}); pass the full ImageNet copy, or --classes with the ones it has"
            )
        for c in classes:
            links[f"{split}/{c}"] = imagenet / split / c
    return links


def _matches(out: Path, links: dict[str, Path]) -> bool:
    """``out`` is exactly the folder these links make (a finished earlier build)."""
    for split in SPLITS:
        if not (out / split).is_dir() or (out / split).is_symlink():
            return False
        wanted = {rel.split("/", 1)[1] for rel in links if rel.startswith(split + "/")}
        if {e.name for e in os.scandir(out / split)} != wanted:
            return False
    return all((out / rel).is_symlink() and Path(os.readlink(out / rel)) == src for rel, src in links.items())


def build(imagenet: Path, out: Path, classes: list[str]) -> str:
    """Make ``out``; returns the line that reports what was done. Raises :class:`BuildError` before any write."""
    links = plan(imagenet, classes)
    out = out.absolute()
    if out.exists() or out.is_symlink():
        if _matches(out, links):
            return f"{out} is already the ImageNet-100 folder of {imagenet.resolve()}: nothing to do"
        raise BuildError(
            f"{out} already exists and is not this ImageNet-100 folder; pass another --out or remove it yourself"
        )
    if not out.parent.is_dir():
        raise BuildError(f"{out.parent} does not exist; create it or pass another --out")
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        for split in SPLITS:
            (staging / split).mkdir(parents=True)
        for rel, src in links.items():
            os.symlink(src, staging / rel, target_is_directory=True)
        os.rename(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    counts = {s: sum(len(os.listdir(src)) for rel, src in links.items() if rel.startswith(s + "/")) for s in SPLITS}
    return (
        f"{out}: {len(classes)} classes, {counts['train']} train and {counts['val']} val images, "
        f"as symlinks to the class folders of {imagenet.resolve()} (nothing copied); "
        f"train with --dataset imagenet100 --data_dir {out}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--imagenet", type=Path, required=True, help="ImageNet root holding train/<wnid>/ and val/<wnid>/")
    p.add_argument(
        "--out", type=Path, required=True, help="the ImageNet-100 folder to create (e.g. $DATA_DIR/imagenet-100)"
    )
    p.add_argument(
        "--classes", type=Path, default=CLASSES_FILE, help=f"one wnid per line (default: {CLASSES_FILE.name})"
    )
    args = p.parse_args(argv)
    try:
        print(build(args.imagenet, args.out, read_classes(args.classes)))
    except BuildError as e:
        print(f"make_imagenet100.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
