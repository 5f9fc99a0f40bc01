"""Result rows as Markdown tables — the one writer for the study, sweep, zoo and benchmark
summaries (floats to 4 significant digits unless a column formats its own cells)."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from typing import Any


def markdown_text(text: Any) -> str:
    """Text as Markdown shows it, never as markup: HTML in a name or an option is escaped."""
    return html.escape(str(text), quote=False)


def markdown_row(cells: Iterable[Any]) -> str:
    """One table row: `| a | b |`."""
    return "| " + " | ".join(markdown_text(c) for c in cells) + " |"


def markdown_header(headings: Sequence[str], right: Sequence[bool] = ()) -> str:
    """The heading row and the separator; a column with `right` true is right-aligned."""
    aligns = ["---:" if i < len(right) and right[i] else "---" for i in range(len(headings))]
    return markdown_row(headings) + "\n|" + "|".join(aligns) + "|"


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key, "")
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    *,
    headings: Sequence[str] | None = None,
    right: Sequence[bool] = (),
    cell: Callable[[dict[str, Any], str], str] = _cell,
) -> str:
    """A Markdown table of `columns` (missing or None cells empty), headed by `headings`
    (default: the column keys); `cell(row, key)` formats a cell."""
    lines = [markdown_header(list(headings or columns), right)]
    lines += [markdown_row(cell(row, c) for c in columns) for row in rows]
    return "\n".join(lines) + "\n"
