"""Values the argument modules share (no imports from the other ``cassle.args`` modules)."""

from __future__ import annotations

import argparse

from cassle.config import DEFAULT_MAX_EPOCHS  # noqa: F401  (its home is the typed config)

#: ``--precision`` spellings accepted, mapped to Lightning's names
PRECISIONS = {
    "32": "32-true",
    "32-true": "32-true",
    "16": "16-mixed",
    "16-mixed": "16-mixed",
    "bf16": "bf16-mixed",
    "bf16-mixed": "bf16-mixed",
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default once: not when it is ``None`` / ``False`` (nothing to show) or when the help
    text already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text.lower():
            return text
        return super()._get_help_string(action)
