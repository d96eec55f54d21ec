"""Arguments of replay buffers and online continual learning, and their validation.

``--online``: every task is a stream seen once (``--max_epochs 1``), each
minibatch trained ``--mb_passes`` times before the next arrives.
``--buffer_type`` / ``--mem_size`` / ``--replay_batch_size`` configure the
replay memory of the replay strategies (``er``, ``lump``, ``minred``, ``aep``,
``arp``, ``apre``, ``cassle_r``).
"""

from __future__ import annotations

import argparse

from cassle.buffers import BUFFERS


def add_online_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("replay and online learning")
    g.add_argument("--online", action="store_true", help="each task is a stream seen once (forces --max_epochs 1)")
    g.add_argument("--mb_passes", type=int, default=1, help="online: training passes over each stream minibatch")
    g.add_argument("--buffer_type", choices=sorted(BUFFERS), default=None,
                   help="replay memory (default: reservoir; minred for --strategy minred)")
    g.add_argument("--mem_size", type=int, default=2000, help="replay memory size (samples, per device)")
    g.add_argument("--replay_batch_size", type=int, default=None, help="replayed samples per step (default: --batch_size)")


def validate_online_args(args: argparse.Namespace, strategy_cls: type, max_epochs_default: int) -> None:
    """Raise ArgumentError on a bad combination; normalise ``args`` in place (``--online`` sets ``--max_epochs 1``)."""
    from cassle.args.parser import ArgumentError

    if args.mb_passes < 1:
        raise ArgumentError(f"--mb_passes must be at least 1, got {args.mb_passes}")
    if args.online:
        if args.max_epochs == max_epochs_default:
            args.max_epochs = 1
        elif args.max_epochs != 1:
            raise ArgumentError(f"--online sees each task's stream once: use --max_epochs 1 (got {args.max_epochs}), "
                                "and --mb_passes for repeated passes over each minibatch")
    elif args.mb_passes != 1:
        raise ArgumentError(f"--mb_passes {args.mb_passes} only applies to --online runs; add --online or drop --mb_passes")
    if getattr(strategy_cls, "uses_buffer", False):
        if args.mem_size < 1:
            raise ArgumentError(f"--strategy {args.strategy} replays from a buffer: --mem_size must be at least 1 "
                                f"(got {args.mem_size}; the default is 2000)")
        if args.replay_batch_size is not None and args.replay_batch_size < 1:
            raise ArgumentError(f"--replay_batch_size must be at least 1, got {args.replay_batch_size}")
        required = getattr(strategy_cls, "required_buffer_type", None)
        if required is not None and args.buffer_type not in (None, required):
            raise ArgumentError(f"--strategy {args.strategy} needs --buffer_type {required} (got {args.buffer_type}); "
                                f"drop --buffer_type or pass {required}")
