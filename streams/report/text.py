"""Plain-text tables, as `codeclm report` and `codeclm bench` print them."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

_NUMBER = re.compile(r"^(?:[-+]?[\d,]*\.?\d+%?|-)$")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table; columns of numbers (None and NaN print as -, percentages as text
    such as 75.0%) right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = (
        [all(_is_number(row[i], cell[i]) for row, cell in zip(rows, cells, strict=True)) for i in range(len(headers))]
        if rows
        else []
    )
    lines = [
        "  ".join(
            h.rjust(w) if numeric and numeric[i] else h.ljust(w)
            for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
    ]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append(
            "  ".join(
                c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(line.rstrip() for line in lines)


def percent(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}%"


def _is_number(v: object, text: str) -> bool:
    if v is None:
        return True
    if isinstance(v, str):
        return bool(_NUMBER.match(text))
    return isinstance(v, int | float) and not isinstance(v, bool)


def _cell(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)
