"""Result rows as Markdown tables, for the study, sweep and benchmark summaries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table of `columns` (floats to 4 significant digits; missing or None cells
    empty)."""

    def cell(value: Any) -> str:
        if value is None:
            return ""
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"
