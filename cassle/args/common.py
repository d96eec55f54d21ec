"""Values the argument modules share (no imports from the other ``cassle.args`` modules)."""

from __future__ import annotations

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
