"""Values the argument modules share (no imports from the other ``cassle.args`` modules)."""

from __future__ import annotations

#: ``--precision`` spellings accepted, mapped to Lightning's names
PRECISIONS = {
    "32": "32-true",
    "32-true": "32-true",
    "16": "16-mixed",
    "16-mixed": "16-mixed",
    "bf16": "bf16-mixed",
    "bf16-mixed": "bf16-mixed",
}

#: ``--max_epochs`` of ``main_continual.py`` (CaSSLe's CIFAR-100 setting); ``--online`` runs use 1
DEFAULT_MAX_EPOCHS = 500
