"""The method catalogue, generated from the registry: ``main_continual.py --list_methods``.

Each method declares its own CaSSLe distillation ``family`` (and its published head sizes) on its class, so this
table is the only list of methods and families: adding a method adds its row, and nothing here is edited by hand.
"""

from __future__ import annotations

from cassle.losses.distill import DISTILL_LOSSES
from cassle.methods.base import METHODS


def _summary(cls: type) -> str:
    doc = (cls.__doc__ or "").strip().splitlines()
    return doc[0].rstrip(".") if doc else ""


def method_rows() -> list[dict[str, str]]:
    """One row per registered method: name, class, CaSSLe family, views, head sizes and the docstring's summary."""
    rows = []
    for name in sorted(METHODS):
        cls = METHODS[name]
        head = f"{cls.default_proj_hidden_dim} -> {cls.default_output_dim}" if cls.has_projector else "none"
        rows.append(
            {
                "method": name,
                "class": cls.__name__,
                "family": cls.family,
                "views": str(cls.num_views),
                "projector": head,
                "summary": _summary(cls),
            }
        )
    return rows


def families() -> dict[str, list[str]]:
    """``family -> [method names]``, as the methods declare them."""
    out: dict[str, list[str]] = {}
    for row in method_rows():
        out.setdefault(row["family"], []).append(row["method"])
    return dict(sorted(out.items()))


def format_catalog() -> str:
    """The catalogue as an aligned text table, then the methods per distillation family."""
    rows = method_rows()
    cols = ["method", "family", "views", "projector", "summary"]
    width = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols[:-1]}
    lines = ["  ".join(c.ljust(width.get(c, 0)) for c in cols).rstrip()]
    lines += ["  ".join(r[c].ljust(width.get(c, 0)) for c in cols).rstrip() for r in rows]
    lines.append("")
    lines.append("--strategy cassle distils with the method's family (override: --distiller NAME):")
    for fam, names in families().items():
        note = "" if fam in DISTILL_LOSSES else "  (no distiller: --strategy cassle refuses these)"
        lines.append(f"  {fam}: {', '.join(names)}{note}")
    return "\n".join(lines)
