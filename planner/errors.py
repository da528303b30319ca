"""The two ways planner refuses: the input is wrong, or the input is right and nothing fits.

The CLI maps them to exit codes (InputError → 2, InfeasibleError → 1) so scripts can tell a typo in a
scenario from a job that genuinely needs more GPUs.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

# The pydantic error type of a YAML boolean given for an integer (planner.schema.Strict); its field in the context.
BOOLEAN_COUNT = "boolean_count"
# Its error type for an unknown key close to a known one (planner.schema.Strict); the key in the context, or None
# when the line names several.
MISSPELT_KEY = "misspelt_key"


class InputError(Exception):
    """Bad user input: a scenario, catalog entry or argument planner cannot use. CLI exit status 2."""

    exit_code = 2


class InfeasibleError(Exception):
    """Valid input, but no plan satisfies the constraints (memory, GPU count, budget). CLI exit status 1."""

    exit_code = 1


def expect(value: Any, kinds: type | tuple[type, ...], what: str) -> None:
    """A Python API argument of a type planner can read, else InputError naming it (the CLI only passes these)."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise InputError(f"{what}: expected {names}, got {type(value).__name__}")


def _clean_loc(loc: tuple[Any, ...]) -> tuple[str, ...]:
    """Drop pydantic's union-branch tags ('str', 'function-after[...]', 'list[...]', 'constrained-int') from a
    key path."""
    return tuple(
        str(part) for part in loc
        if not (isinstance(part, str)
                and ("[" in part or part in _TYPE_TAGS or part.startswith(("constrained-", UNION_TAG_PREFIX))))
    )


# A user fixes the first few errors and reruns; thousands of lines help nobody.
MAX_ERROR_LINES = 10


def _printable(text: str) -> str:
    """`text` on one line: control characters (a key named "\n" in a YAML file) written as escapes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _key_part(part: str) -> str:
    """One key of a path as a user can find it: an empty key quoted, control characters escaped."""
    return '""' if part == "" else _printable(part)

# A union member's tag where the union picks by a key's value (planner.portfolio's pools: `kind=owned`), not a key
UNION_TAG_PREFIX = "kind="
_TYPE_TAGS = {"str", "int", "float", "bool", "dict", "list", "literal", "none", "is-instance"}


def _field(e: Any) -> tuple[str, ...]:
    """The key a model-level check names in its context (BOOLEAN_COUNT, MISSPELT_KEY): the error's last path part."""
    if e["type"] in (BOOLEAN_COUNT, MISSPELT_KEY) and e.get("ctx", {}).get("field") is not None:
        return (str(e["ctx"]["field"]),)
    return ()


def _message(e: Any) -> str:
    """The error's message; a validator's own sentence without pydantic's "Value error, " in front of it."""
    msg = str(e["msg"])
    if e["type"] == "extra_forbidden":
        return "unknown key"  # pydantic's "Extra inputs are not permitted", in a YAML user's words
    return msg.removeprefix(VALUE_ERROR) if e["type"] == "value_error" else msg


VALUE_ERROR = "Value error, "
SHAPE_PREFIX = "Input should be "


def _is_shape(e: Any) -> bool:
    """A mismatch of the input's type or literal value, as a union branch reports it (string_type, dict_type,
    model_type, literal_error, ...), not a constraint on a value of the right type."""
    kind = str(e["type"])
    return (kind.endswith("_type") or kind in ("literal_error", "is_instance_of", "model_attributes_type")) \
        and str(e["msg"]).startswith(SHAPE_PREFIX)


def format_validation_error(err: ValidationError, where: str) -> str:
    """One line per pydantic error, "where: key.path: message", so a user can find the offending key; the
    required keys missing from one mapping share a line.

    `where` names the file and entry (e.g. "catalogs/gpus.yaml: gpus[3] (h100-sxm)"). Errors raised by a
    model-level validator have no key path and print as "where: message". For a union field (a catalog
    name or an inline spec), the branch that does not match the input's shape is left out.
    """
    raw = err.errors(include_url=False)
    errors = [(_clean_loc(e["loc"]) + _field(e), _message(e), _is_shape(e)) for e in raw]
    # a union branch's shape mismatch (`Input should be a valid string`, `Input should be 'none'`) is noise where
    # another branch explains the real problem, further down or at the same key (an inline spec's own validator:
    # `model: heads (4) must be a multiple of kv_heads (3)`)
    explained = {path[:i] for path, _, _ in errors for i in range(len(path))}
    explained |= {path for path, _, shape in errors if not shape}
    # where every branch mismatches at one key, one line names what the key takes: "a valid string or a valid
    # dictionary" (`model: 5`)
    expected: dict[tuple[str, ...], list[str]] = {}
    for path, msg, shape in errors:
        if shape and path not in explained:
            expected.setdefault(path, []).append(msg.removeprefix(SHAPE_PREFIX))
    # several required keys missing from one mapping (an inline model spec) are one line: "model: missing
    # required keys hidden, heads, vocab"
    missing: dict[tuple[str, ...], list[str]] = {}
    for e, (path, _, _) in zip(raw, errors, strict=True):
        if e["type"] == "missing" and path:
            missing.setdefault(path[:-1], []).append(_key_part(path[-1]))
    lines: dict[str, None] = {}  # ordered and de-duplicated in linear time
    for e, (path, msg, shape) in zip(raw, errors, strict=True):
        if shape and path in explained:
            continue
        if shape:
            msg = SHAPE_PREFIX + " or ".join(dict.fromkeys(expected[path]))
        if e["type"] == "missing" and path and len(missing[path[:-1]]) > 1:
            path, msg = path[:-1], "missing required keys " + ", ".join(missing[path[:-1]])
        key = ".".join(_key_part(part) for part in path)
        lines[_printable(f"{where}: {key}: {msg}" if key else f"{where}: {msg}")] = None
    shown = list(lines)[:MAX_ERROR_LINES]
    if len(lines) > MAX_ERROR_LINES:
        shown.append(f"{where}: … and {len(lines) - MAX_ERROR_LINES} more errors")
    return "\n".join(shown)
