"""What every command shares: the output format, the framework choice, and the one guard that turns every
outcome into an exit status.

Exit status: 0 done; 1 no feasible plan (with the numbers that rule it out); 2 bad input (one line naming
the file and key or the flag); 3 an internal error (one line; `planner --debug ...` shows the traceback).
A closed pipe (`planner ... | head`) ends the command quietly with 0.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException


class State:
    """Global options, set by the root callback before any command runs."""

    debug = False


def run(body: Callable[[], int | None]) -> None:
    """Run a command body; its return value (or None for 0) is the exit status, every exception maps to one."""
    code = outcome(body)
    if code:
        raise typer.Exit(code)


def outcome(body: Callable[[], int | None]) -> int:
    from planner import InfeasibleError, InputError

    try:
        code = body() or 0
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except InputError as e:
        say(f"error: {e}")
        return 2
    except InfeasibleError as e:
        say(str(e))
        return 1
    except BrokenPipeError:
        quiet_stdout()
        return 0
    except (typer.Exit, typer.Abort, TyperException, KeyboardInterrupt):
        raise
    except Exception as e:
        if State.debug:
            traceback.print_exc()
        else:
            what = " ".join(str(e).split()) or "(no message)"
            say(f"internal error: {type(e).__name__}: {what} — a bug in planner; rerun with --debug for the traceback")
        return 3


def say(message: str) -> None:
    """A message on stderr, user text in it shown literally."""
    from planner.report import literal

    typer.echo(literal(message), err=True)


def quiet_stdout() -> None:
    """The reader went away: send what is still buffered to /dev/null so that exiting does not fail."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test runner's buffer): nothing will fail at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


class PlannerGroup(TyperGroup):
    """Usage errors (an unknown option, a value out of range, a bad choice) as one line, `error: ...`, exit 2."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except TyperException as e:  # typer's own click: BadParameter, NoSuchOption, MissingParameter, ...
            if type(e).__name__ == "NoArgsIsHelpError":  # `planner` alone: the help, as typer shows it
                from typer import rich_utils

                rich_utils.rich_format_error(e)  # type: ignore[arg-type]
            else:
                say("error: " + " ".join(e.format_message().split()))
            sys.exit(e.exit_code)
        except typer.Abort:
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)
