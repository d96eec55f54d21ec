"""Command-line arguments, their defaults and their validation."""

from cassle.args.parser import build_parser, parse_args
from cassle.data.transforms import AUGMENTATION_DEFAULTS
from cassle.errors import ArgumentError

__all__ = ["AUGMENTATION_DEFAULTS", "ArgumentError", "build_parser", "parse_args"]
