"""How the command line prints: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from entitlements.serialization import converter

__all__ = ["emit", "table"]


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(_cell(v) for v in value) or "-"
    return str(value)


def emit(value: Any, human: str, *, as_json: bool, out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    if as_json:
        stream.write(
            json.dumps(converter.unstructure(value), indent=2, sort_keys=True, default=str) + "\n"
        )
    else:
        stream.write(human + "\n")
