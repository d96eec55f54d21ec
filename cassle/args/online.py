"""Arguments of replay buffers and online continual learning, and their validation.

``--online``: every task is a stream seen once (``--max_epochs 1``), each
minibatch trained ``--mb_passes`` times before the next arrives.
``--buffer_type`` / ``--mem_size`` / ``--replay_batch_size`` configure the
replay memory of the replay strategies (``er``, ``lump``, ``minred``, ``aep``,
``arp``, ``apre``, ``cassle_r``).
"""

from __future__ import annotations

import argparse
from typing import Any

from cassle.buffers import BUFFERS
from cassle.config import ReplayConfig
from cassle.errors import ArgumentError


def add_online_args(p: argparse.ArgumentParser) -> None:
    R = ReplayConfig
    g = p.add_argument_group(R.title)
    g.add_argument("--online", action="store_true", help="each task is a stream seen once (forces --max_epochs 1)")
    g.add_argument(
        "--mb_passes", type=int, default=R.mb_passes, help="online: training passes over each stream minibatch"
    )
    g.add_argument(
        "--buffer_type",
        choices=sorted(BUFFERS),
        default=R.buffer_type,
        help="replay memory (default: reservoir; minred for --strategy minred)",
    )
    g.add_argument("--mem_size", type=int, default=R.mem_size, help="replay memory size (samples, per device)")
    g.add_argument(
        "--replay_batch_size",
        type=int,
        default=R.replay_batch_size,
        help="replayed samples per step (default: --batch_size)",
    )


def validate_online_args(
    args: argparse.Namespace, method_cls: type, strategy_cls: type, max_epochs_default: int, run: Any
) -> None:
    """Raise ArgumentError on a bad combination; normalise ``args`` in place (``--online`` sets ``--max_epochs 1``).

    Also runs the strategy's ``check_config`` (its own arguments) and, for replay strategies, ``check_replay``
    (buffer size, buffer type) on the typed configuration ``run`` (:class:`cassle.config.RunConfig`, built
    once by ``cassle.args.validate.check_typed``), so that bad strategy settings fail before any file is written.
    """

    if args.mb_passes < 1:
        raise ArgumentError(f"--mb_passes must be at least 1, got {args.mb_passes}")
    if args.online:
        if args.max_epochs == max_epochs_default:
            args.max_epochs = 1
        elif args.max_epochs != 1:
            raise ArgumentError(
                f"--online sees each task's stream once: use --max_epochs 1 (got {args.max_epochs}), "
                "and --mb_passes for repeated passes over each minibatch"
            )
    elif args.mb_passes != 1:
        raise ArgumentError(
            f"--mb_passes {args.mb_passes} only applies to --online runs; add --online or drop --mb_passes"
        )
    try:
        if hasattr(strategy_cls, "check_config"):
            strategy_cls.check_config(method_cls, run.strategy)
        if hasattr(strategy_cls, "check_replay"):
            strategy_cls.check_replay(run.replay)
    except ValueError as e:
        raise ArgumentError(str(e)) from None
