"""Command-line arguments, their defaults and their validation."""

from cassle.args.parser import AUGMENTATION_DEFAULTS, ArgumentError, build_parser, parse_args

__all__ = ["AUGMENTATION_DEFAULTS", "ArgumentError", "build_parser", "parse_args"]
