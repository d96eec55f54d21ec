#!/usr/bin/env python3
"""Paired differences between two sets of benchmark runs kept in ``bench/quality.py`` results CSVs.

``quality.py`` compares every strategy with the fine-tuning runs of its own table. A control that needs other
settings (another batch size, lr or epochs: e.g. fine-tuning given the compute ER spends, whose runs live in a
table of their own) is compared here: for each method, the runs of ``A`` and ``B`` with the same seed and the
same number of tasks are paired, and the mean ± sample std of the per-seed differences ``A − B`` is printed
for the measures of ``quality.py``'s tables, with whether the mean exceeds one standard deviation, and the
ratio of the runs' wall times (how much more compute ``A`` spent, when both ran under the same load).

    PYTHONPATH=$PWD python bench/paired.py bench/quality_spec_results.csv:er \\
        bench/quality_spec_matched_results.csv:finetune
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

# quality.py is loaded by its path (bench/ is no package), so that importing this file puts no bench/ module
# names on sys.path
_spec = importlib.util.spec_from_file_location("bench_quality", Path(__file__).resolve().with_name("quality.py"))
quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quality)
MEASURES, better_by_one_std, fmt_ms = quality.MEASURES, quality.better_by_one_std, quality.fmt_ms
mean_std, read_results = quality.mean_std, quality.read_results


def _side(text: str) -> tuple[Path, str]:
    path, sep, strategy = text.rpartition(":")
    if not sep or not path or not strategy:
        raise argparse.ArgumentTypeError(f"{text!r}: write RESULTS_CSV:STRATEGY, e.g. bench/x_results.csv:er")
    return Path(path), strategy


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("a", type=_side, help="RESULTS_CSV:STRATEGY of the runs whose advantage is measured")
    p.add_argument("b", type=_side, help="RESULTS_CSV:STRATEGY of the runs they are compared with")
    p.add_argument("--methods", nargs="+", default=None, help="methods to compare (default: all found in both)")
    a = p.parse_args(argv)
    for path, _ in (a.a, a.b):
        if not path.is_file():
            p.error(f"{path} does not exist: give a results CSV written by bench/quality.py")
    return a


def _runs(path: Path, strategy: str) -> dict[tuple[str, int, int], dict]:
    """``(method, seed, tasks)`` -> row, for the rows of ``strategy`` (``joint`` names the joint runs)."""
    return {(m, seed, t): r for (m, s, seed, t), r in read_results(path).items() if s == strategy}


def table(a_side: tuple[Path, str], b_side: tuple[Path, str], methods: list[str] | None = None) -> str:
    """Markdown: per method, mean ± std of the paired per-seed differences A − B, and the wall-time ratio."""
    (pa, sa), (pb, sb) = a_side, b_side
    ra, rb = _runs(pa, sa), _runs(pb, sb)
    pairs: dict[str, list[tuple[dict, dict]]] = {}
    for key in sorted(set(ra) & set(rb)):
        pairs.setdefault(key[0], []).append((ra[key], rb[key]))
    names = [m for m in (methods or sorted(pairs)) if m in pairs]
    lines = [
        "| method | seeds | "
        + " | ".join(f"Δ {h}" for _, h in MEASURES)
        + " | better by > 1 std (kNN / ridge / linear) | wall A / B |",
        "| --- | --- | " + " | ".join("---:" for _ in MEASURES) + " | --- | ---: |",
    ]
    for m in names:
        ps = pairs[m]
        stats = {col: mean_std([x[col] - y[col] for x, y in ps]) for col, _ in MEASURES}
        wall = mean_std([x["wall_s"] / y["wall_s"] for x, y in ps])
        seeds = ", ".join(str(x["seed"]) for x, _ in ps)
        lines.append(
            f"| {m} | {seeds} | "
            + " | ".join(fmt_ms(stats[c], stats[c][2], sign=True) for c, _ in MEASURES)
            + f" | {better_by_one_std(stats)} | {fmt_ms(wall, wall[2])} |"
        )
    if not names:
        return f"No runs of {sa} in {pa} share a method, seed and task count with the runs of {sb} in {pb}.\n"
    return (
        f"{sa} ({pa.name}) − {sb} ({pb.name}), mean ± std of the per-seed differences (positive accuracy and "
        f"negative forgetting favour {sa}):\n\n" + "\n".join(lines) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    print(table(a.a, a.b, a.methods))
    return 0


if __name__ == "__main__":
    sys.exit(main())
