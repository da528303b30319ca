"""Machine formats of results: JSON, CSV and Markdown, from dicts and rows.

User text in CSV and Markdown goes through `literal`, so a terminal shows control characters escaped (in
Markdown also line breaks and pipes, which would end a cell); JSON escapes them itself.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from planner.report import FORMATS
from planner.report.text import flatten, literal, md_cell

__all__ = ["FORMATS", "flatten", "key_value_rows", "machine", "to_csv", "to_json", "to_markdown"]


def _text(v: Any) -> Any:
    return literal(v) if isinstance(v, str) else v


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False)


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _text(v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def to_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    lines = ["| " + " | ".join(md_cell(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(md_cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def key_value_rows(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": v} for k, v in flatten(obj)]


def machine(obj: dict[str, Any], fmt: str) -> str:
    """JSON, or key/value CSV or Markdown, of one result object."""
    if fmt == "json":
        return to_json(obj)
    if fmt == "csv":
        return to_csv(key_value_rows(obj))
    if fmt == "markdown":
        return to_markdown(key_value_rows(obj))
    raise ValueError(f"not a machine format: {fmt!r}")
