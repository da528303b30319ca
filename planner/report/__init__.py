"""Every rendering of a result: JSON dicts, rich tables, CSV and Markdown, plots, the HTML page.

The names below are the report layer's public API (the CLI uses nothing else of it); modules load on
first use, so importing this package costs nothing.
"""

from __future__ import annotations

from enum import StrEnum
from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "render": "planner.report.output",
    "render_rows": "planner.report.output",
    "to_dict": "planner.report.output",
    "write_plots": "planner.report.output",
    "html_page": "planner.report.output",
    "figures": "planner.report.output",
    "gpu_rows": "planner.report.tables",
    "model_rows": "planner.report.tables",
    "console": "planner.report.terminal",
    "spinner": "planner.report.terminal",
    "progress_bar": "planner.report.terminal",
    "literal": "planner.report.text",
}


class Format(StrEnum):
    """The output formats every command takes: rich tables for people, JSON, CSV or Markdown for machines."""

    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


FORMATS = tuple(f.value for f in Format)

__all__ = [
    "FORMATS",
    "Format",
    "console",
    "figures",
    "gpu_rows",
    "html_page",
    "literal",
    "model_rows",
    "progress_bar",
    "render",
    "render_rows",
    "spinner",
    "to_dict",
    "write_plots",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'planner.report' has no attribute {name!r}")


if TYPE_CHECKING:
    from planner.report.output import figures, html_page, render, render_rows, to_dict, write_plots
    from planner.report.tables import gpu_rows, model_rows
    from planner.report.terminal import console, progress_bar, spinner
    from planner.report.text import literal
