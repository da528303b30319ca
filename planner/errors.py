"""The two ways planner refuses: the input is wrong, or the input is right and nothing fits.

The CLI maps them to exit codes (InputError → 2, InfeasibleError → 1) so scripts can tell a typo in a
scenario from a job that genuinely needs more GPUs.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

# The pydantic error type of a YAML boolean given for an integer (planner.schema.Strict); its field in the context.
BOOLEAN_COUNT = "boolean_count"


class InputError(Exception):
    """Bad user input: a scenario, catalog entry or argument planner cannot use. CLI exit status 2."""

    exit_code = 2


class InfeasibleError(Exception):
    """Valid input, but no plan satisfies the constraints (memory, GPU count, budget). CLI exit status 1."""

    exit_code = 1


def _clean_loc(loc: tuple[Any, ...]) -> tuple[str, ...]:
    """Drop pydantic's union-branch tags ('str', 'function-after[...]', 'list[...]') from a key path."""
    return tuple(
        str(part) for part in loc
        if not (isinstance(part, str) and ("[" in part or part in _TYPE_TAGS))
    )


# A user fixes the first few errors and reruns; thousands of lines help nobody.
MAX_ERROR_LINES = 10


def _printable(text: str) -> str:
    """`text` on one line: control characters (a key named "\n" in a YAML file) written as escapes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _key_part(part: str) -> str:
    """One key of a path as a user can find it: an empty key quoted, control characters escaped."""
    return '""' if part == "" else _printable(part)

_TYPE_TAGS = {"str", "int", "float", "bool", "dict", "list", "literal", "none", "is-instance"}


def _message(e: Any) -> str:
    """The error's message; a validator's own sentence without pydantic's "Value error, " in front of it."""
    msg = str(e["msg"])
    return msg.removeprefix(VALUE_ERROR) if e["type"] == "value_error" else msg


VALUE_ERROR = "Value error, "


def format_validation_error(err: ValidationError, where: str) -> str:
    """One line per pydantic error, "where: key.path: message", so a user can find the offending key.

    `where` names the file and entry (e.g. "catalogs/gpus.yaml: gpus[3] (h100-sxm)"). Errors raised by a
    model-level validator have no key path and print as "where: message". For a union field (a catalog
    name or an inline spec), the branch that does not match the input's shape is left out.
    """
    errors = [(_clean_loc(e["loc"]) + ((str(e["ctx"]["field"]),) if e["type"] == BOOLEAN_COUNT else ()), _message(e))
              for e in err.errors(include_url=False)]
    # a union branch's type mismatch is noise where another branch explains the real problem, further down or
    # at the same key (an inline spec's own validator: `model: heads (4) must be a multiple of kv_heads (3)`)
    explained = {path[:i] for path, _ in errors for i in range(len(path))}
    explained |= {path for path, msg in errors if not msg.startswith("Input should be a valid")}
    lines: dict[str, None] = {}  # ordered and de-duplicated in linear time
    for path, msg in errors:
        if path in explained and msg.startswith("Input should be a valid"):
            continue
        key = ".".join(_key_part(part) for part in path)
        lines[_printable(f"{where}: {key}: {msg}" if key else f"{where}: {msg}")] = None
    shown = list(lines)[:MAX_ERROR_LINES]
    if len(lines) > MAX_ERROR_LINES:
        shown.append(f"{where}: … and {len(lines) - MAX_ERROR_LINES} more errors")
    return "\n".join(shown)
