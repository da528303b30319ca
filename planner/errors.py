"""The two ways planner refuses: the input is wrong, or the input is right and nothing fits.

The CLI maps them to exit codes (InputError → 2, InfeasibleError → 1) so scripts can tell a typo in a
scenario from a job that genuinely needs more GPUs.
"""

from __future__ import annotations

from pydantic import ValidationError


class InputError(Exception):
    """Bad user input: a scenario, catalog entry or argument planner cannot use. CLI exit status 2."""

    exit_code = 2


class InfeasibleError(Exception):
    """Valid input, but no plan satisfies the constraints (memory, GPU count, budget). CLI exit status 1."""

    exit_code = 1


def format_validation_error(err: ValidationError, where: str) -> str:
    """One line per pydantic error, "where: key.path: message", so a user can find the offending key.

    `where` names the file and entry (e.g. "catalogs/gpus.yaml: gpus[3] (h100-sxm)"). Errors raised by a
    model-level validator have no key path and print as "where: message".
    """
    lines = []
    for error in err.errors(include_url=False):
        path = ".".join(str(part) for part in error["loc"])
        lines.append(f"{where}: {path}: {error['msg']}" if path else f"{where}: {error['msg']}")
    return "\n".join(lines)
