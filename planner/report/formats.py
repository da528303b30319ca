"""Turn results into what people and machines read: rich tables, JSON, CSV and Markdown.

Nothing here computes physics; it formats the objects the public API returns.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

GIB = 2**30
FORMATS = ("table", "json", "csv", "markdown")


def gib(n: float) -> str:
    return f"{n / GIB:,.2f}"


def flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts → dotted keys, for CSV and Markdown of a single result."""
    if isinstance(obj, dict):
        rows: list[tuple[str, Any]] = []
        for k, v in obj.items():
            rows += flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return rows
    if isinstance(obj, list):
        return [(prefix, "; ".join(str(x) for x in obj))]
    return [(prefix, obj)]


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False)


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def to_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def key_value_rows(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": v} for k, v in flatten(obj)]


def render(obj: dict[str, Any], fmt: str) -> str:
    """Machine formats of one result object (the table format is drawn by the caller)."""
    if fmt == "json":
        return to_json(obj)
    if fmt == "csv":
        return to_csv(key_value_rows(obj))
    if fmt == "markdown":
        return to_markdown(key_value_rows(obj))
    raise ValueError(fmt)
