"""Reading other tools' configuration files: one place for the errors a user sees on a bad file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from planner.errors import InputError


def read_text(source: str | os.PathLike[str], what: str) -> tuple[str, str]:
    """The file's text and its name for messages; an unreadable, oversized (past limits.MAX_FILE_BYTES:
    /dev/zero, a dataset given by mistake) or non-UTF-8 file is an InputError naming it."""
    from planner.safe_yaml import MAX_BYTES, shown_path

    path = Path(source)
    try:
        if path.is_dir():
            raise InputError(f"{path}: cannot read {what} (is a directory)")
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise InputError(f"{path}: cannot read {what} (larger than {MAX_BYTES // 2**10:,} KiB)")
        return raw.decode("utf-8"), str(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"{shown_path(path)}: cannot read {what} ({reason})") from exc


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's members; a key given twice is an error, as planner's YAML and TOML readers make it (json.loads
    would keep the last silently, and DeepSpeed's own config loader refuses duplicates)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def parse_json_object(text: str, where: str) -> dict[str, Any]:
    """A JSON object, or an InputError with the line and column of the first problem."""
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise InputError(f"{where}: key {str(exc)!r} is given twice") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}") from exc
    except RecursionError:
        raise InputError(f"{where}: nested too deeply to be a configuration file") from None
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(data).__name__}")
    return data
