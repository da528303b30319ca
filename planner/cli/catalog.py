"""`planner catalog gpus|models` and `planner schema`: what planner knows, and the scenario (or portfolio) format."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from planner.cli.common import output_file, run
from planner.report import Format

catalog_app = typer.Typer(help="List the GPUs and models planner knows.", no_args_is_help=True)


@catalog_app.command("gpus")
def catalog_gpus(format: Annotated[Format, typer.Option("--format", "-f")] = Format.table) -> None:
    """GPUs with dense peaks, memory, interconnect, power and default price."""

    def body() -> None:
        from planner import load_gpus
        from planner.report import gpu_rows, render_rows

        render_rows(gpu_rows(load_gpus().values()), format.value,
                    "GPUs (dense peaks, no sparsity; memory in GiB = 2^30 B)")

    run(body)


@catalog_app.command("models")
def catalog_models(format: Annotated[Format, typer.Option("--format", "-f")] = Format.table) -> None:
    """Models with their exact parameter counts."""

    def body() -> None:
        from planner import load_models
        from planner.report import model_rows, render_rows

        render_rows(model_rows(load_models().values()), format.value, "Models (parameters counted exactly)")

    run(body)


class SchemaFormat(StrEnum):
    json = "json"
    yaml = "yaml"


def schema_command(out: Annotated[Path | None, typer.Option(help="write to this file instead of stdout")] = None,
                   format: Annotated[SchemaFormat, typer.Option("--format", "-f", help="output format")]
                   = SchemaFormat.json,
                   portfolio: Annotated[bool, typer.Option("--portfolio", help="the portfolio format "
                                                           "(planner schedule) instead")] = False,
                   serving: Annotated[bool, typer.Option("--serving", help="the serving scenario format "
                                                         "(planner serve) instead")] = False,
                   ) -> None:
    """JSON Schema of the scenario format (--portfolio: the portfolio format, --serving: the serving scenario
    format), for editors (as JSON, or the same document in YAML)."""

    def body() -> None:
        import json

        from planner import InputError, portfolio_json_schema, scenario_json_schema, serving_json_schema

        output_file(out, "--out")
        if portfolio and serving:
            raise InputError("--portfolio, --serving: each names another format; give one")
        schema = (portfolio_json_schema() if portfolio else serving_json_schema() if serving
                  else scenario_json_schema())
        if format == SchemaFormat.yaml:
            import yaml

            text = yaml.safe_dump(schema, sort_keys=False, allow_unicode=True).rstrip("\n")
        else:
            text = json.dumps(schema, indent=2)
        if out:
            out.write_text(text + "\n")
        else:
            typer.echo(text)

    run(body)
