"""The one console every table is printed on.

Its width does not depend on whether stdout is a terminal: tables take their natural width (cells of
prose wrap within planner.report.tables.PROSE_WIDTH) and nothing is cut by planner (a terminal narrower
than a table folds it; a pipe or a file gets every column). Colours follow the terminal, as rich decides.
User text goes through `safe` before it meets rich markup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

from rich.console import Console
from rich.markup import escape

from planner.report.text import literal

# Wider than any table planner prints (the comparison's is about 230 characters): rich lays tables out at
# their natural width within it and never truncates a cell.
WIDTH = 1_000


class _Console(Console):
    """rich's console, but a reader that went away (`planner ... | head`) is a BrokenPipeError for the command's
    guard (planner.cli.common.outcome: exit 0), not rich's own SystemExit(1), which reads as "no plan"."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def console(file: IO[str] | None = None, *, stderr: bool = False) -> Console:
    """A console on `file` (default stdout, or stderr), WIDTH wide whatever it writes to."""
    return _Console(file=file, stderr=stderr, width=WIDTH, soft_wrap=True)


def safe(value: object) -> str:
    """User text (a name, a message holding a flag) for a string rich reads as markup: printed literally."""
    return escape(literal(value))


@contextmanager
def spinner(label: str) -> Iterator[Callable[[str], None]]:
    """A status line on stderr while work runs; yields `say(what)` to update it."""
    err = Console(stderr=True)  # a live line: the terminal's own width, so it redraws in place
    with err.status(safe(label), spinner="dots") as status:
        yield lambda what: status.update(f"{safe(label)}: {safe(what)}")


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int, str], None]]:
    """A transient progress bar on stderr (a terminal only); yields `say(done, total, what)`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    err = Console(stderr=True)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task(f"{safe(label)}: resolving", total=None)

        def say(done: int, total: int, what: str) -> None:
            bar.update(task, description=f"{safe(label)}: {safe(what)}", completed=done, total=total or None)

        yield say
