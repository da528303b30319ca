"""The `planner` command line: parse arguments, call the public API (`from planner import ...`), hand the
result to the report layer (`from planner.report import ...`). No logic of its own.

Heavy modules (pydantic models, numpy, pandas, ortools, matplotlib) load inside the commands, so
`planner --help` answers at once. Exit statuses: see planner/cli/common.py.
"""

from __future__ import annotations

from typing import Annotated

import typer

from planner.cli import catalog, compare, estimate, review, schedule, serve, solve
from planner.cli.common import PlannerGroup, State

app = typer.Typer(
    name="planner",
    cls=PlannerGroup,
    help="Capacity planner for large-model training: which GPU, how many, which layout, what cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", envvar="PLANNER_DEBUG",
                                        help="show the traceback of an internal error")] = False,
) -> None:
    State.debug = debug


app.command("solve")(solve.solve_command)
app.command("estimate")(estimate.estimate_command)
app.command("review")(review.review_command)
app.command("compare")(compare.compare_command)
app.command("schedule")(schedule.schedule_command)
app.command("serve")(serve.serve_command)
app.add_typer(catalog.catalog_app, name="catalog")
app.command("schema")(catalog.schema_command)


def main() -> None:
    """The `planner` console script: exits with the command's status (see planner/cli/common.py)."""
    app()


if __name__ == "__main__":
    main()
