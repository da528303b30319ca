"""Reading other tools' configuration files: one place for the errors a user sees on a bad file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from planner.errors import InputError


def read_text(source: str | os.PathLike[str], what: str) -> tuple[str, str]:
    """The file's text and its name for messages; an unreadable file is an InputError naming it."""
    path = Path(source)
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"{path}: cannot read {what} ({reason})") from exc


def parse_json_object(text: str, where: str) -> dict[str, Any]:
    """A JSON object, or an InputError with the line and column of the first problem."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(data).__name__}")
    return data
