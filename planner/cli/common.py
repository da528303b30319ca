"""What every command shares: the output format, the framework choice, and the one guard that turns every
outcome into an exit status.

Exit status: 0 done; 1 no feasible plan (with the numbers that rule it out); 2 bad input (one line naming
the file and key or the flag); 3 an internal error (one line; `planner --debug ...` shows the traceback).
A closed pipe (`planner ... | head`) ends the command quietly with 0.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException


class State:
    """Global options, set by the root callback before any command runs."""

    debug = False


def run(body: Callable[[], int | None], scenario: Path | None = None) -> None:
    """Run a command body; its return value (or None for 0) is the exit status, every exception maps to one.
    `scenario`: the file the command read, named in errors about its keys found after reading it."""
    code = outcome(body, scenario)
    if code:
        raise typer.Exit(code)


def outcome(body: Callable[[], int | None], scenario: Path | None = None) -> int:
    from planner import InfeasibleError, InputError

    try:
        code = body() or 0
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except InputError as e:
        say(f"error: {in_file(str(e), scenario)}")
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


def in_file(message: str, scenario: Path | None) -> str:
    """An error about a scenario key (`job.seq_len: ...`, `jobs.b.layout.tp: ...`) found after the file was read,
    prefixed with the file; messages that already name it, or a flag, stay as they are."""
    if scenario is None or message.startswith(str(scenario)):
        return message
    from planner import Portfolio, Scenario, ServingScenario

    key = re.match(r"([a-z_]+)(?:[.\[:])", message)
    keys = Scenario.model_fields.keys() | ServingScenario.model_fields.keys() | Portfolio.model_fields.keys()
    return f"{scenario}: {message}" if key and key.group(1) in keys else message


def output_file(path: Path | None, flag: str) -> None:
    """Refuse, before any work, a file the command could not write: its folder missing, a folder in its
    place, no permission. Probes by opening it for appending (what the OS says, whoever runs planner)."""
    from planner import InputError

    if path is None:
        return
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a directory; give a file name")
    if not path.parent.is_dir():
        what = "is not a directory" if path.parent.exists() else "does not exist"
        raise InputError(f"{flag} {path}: the folder {path.parent} {what}")
    existed = path.exists()
    try:
        with path.open("a"):
            pass
    except OSError as e:
        raise InputError(f"{flag} {path}: cannot write ({e.strerror})") from None
    if not existed:
        path.unlink(missing_ok=True)


def output_dir(path: Path | None, flag: str) -> None:
    """Create the folder a command writes into (as it would anyway) and prove it writable, before any work."""
    from planner import InputError

    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} {path}: is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as e:
        raise InputError(f"{flag} {path}: cannot write there ({e.strerror})") from None


def write_report(result: Any, fmt: str, out: Path | None, plots: Path | None, html: Path | None, *,
                 figures: Callable[[Any], Any], write_plots: Callable[[Any, Path, Any], Sequence[Path]],
                 page: Callable[[Any, str, Any], str], source: Path) -> None:
    """A result in `fmt` on stdout or in `out`, its plots in `plots` and its HTML page (with the input file's
    text) in `html`: the outputs `compare` and `schedule` share. Figures are drawn once for both."""
    from planner.report import render

    if out is None:
        render(result, fmt)
    else:
        with out.open("w") as fh:
            render(result, fmt, fh)
        typer.echo(f"wrote {out}", err=True)
    figs = figures(result) if plots or html else None
    if plots:
        for p in write_plots(result, plots, figs):
            typer.echo(f"wrote {p}", err=True)
    if html:
        html.write_text(page(result, source.read_text(), figs))
        typer.echo(f"wrote {html}", err=True)


def model_config(path: Path | None, name: str | None) -> Any:
    """--model-config FILE (a Hugging Face config.json, or the folder holding one) as a ModelSpec, else the
    --model name; both given is an error."""
    from planner import InputError, model_from_hf_config

    if path is None:
        return name
    if name:
        raise InputError("--model and --model-config: give one, not both")
    if path.is_dir() and not (path / "config.json").is_file():
        raise InputError(f"--model-config {path}: a folder without a config.json")
    return model_from_hf_config(path)


# The `implementation.framework` each --emit format is written for.
EMIT_FRAMEWORK = {"megatron": "megatron-core", "deepspeed": "deepspeed", "torchtitan": "torchtitan",
                  "torchtitan-config": "torchtitan"}


def emit_text(make: Callable[[], str], framework: str, layout: Any, fmt: str, planned_for: str) -> None:
    """`--emit`: the framework's own input on stdout, nothing else (`make` writes it: what the framework cannot run
    is bad input for the flag); on stderr what a DeepSpeed config cannot hold (TP, PP, SP, set in the model code
    and launcher), and a plan searched and timed for another framework (`planned_for`), whose memory and time
    there are not these. `--format` other than the table is refused: the emitted text is the framework's format,
    not JSON, CSV or Markdown."""
    from planner import InputError, not_in_deepspeed_config

    if fmt != "table":
        raise InputError(f"--emit and --format {fmt}: --emit prints the framework's own input; give one of them")
    try:
        text = make()
    except InputError as e:
        raise InputError(f"--emit {framework}: {e}") from None
    typer.echo(text, nl=False)
    if framework == "deepspeed" and (missing := not_in_deepspeed_config(layout)):
        say(f"note: the DeepSpeed config cannot hold {', '.join(missing)}: set them in the model code and launcher")
    if planned_for != EMIT_FRAMEWORK.get(framework, planned_for):
        say(f"note: this plan was searched and timed under implementation.framework {planned_for}; under "
            f"{EMIT_FRAMEWORK[framework]} its memory and step time differ (and it may not fit): plan with "
            f"framework {EMIT_FRAMEWORK[framework]} to emit one it runs")


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


# Help shows a short word for what an option takes; a flag shows nothing (typer would print "<bool>").
_METAVARS = {"int": "N", "float": "X", "Path": "PATH", "str": "TEXT"}


def plain_metavars(command: Any) -> None:
    """Give every option of `command` (and its subcommands) a plain metavar: N, X, PATH, TEXT, none for flags."""
    for sub in getattr(command, "commands", {}).values():
        plain_metavars(sub)
    if not hasattr(command, "_planner_help"):  # --help is made per call, outside `params`
        made = command.get_help_option

        def help_option(ctx: Any) -> Any:
            option = made(ctx)
            if option is not None and option.metavar is None:
                option.metavar = ""
            return option

        command.get_help_option = help_option
        command._planner_help = True
    for param in getattr(command, "params", []):
        if param.metavar is not None or param.param_type_name == "argument":
            continue
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif not param.type_descriptor.is_choice and (word := _METAVARS.get(param.bare_type())) is not None:
            param.metavar = word


# Columns of --help when piped: the longest option pair (--sequence-parallel/--no-sequence-parallel) whole.
PIPED_HELP_WIDTH = 120


class PlannerGroup(TyperGroup):
    """Usage errors (an unknown option, a value out of range, a bad choice) as one line, `error: ...`, exit 2."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        plain_metavars(self)
        if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
            from typer import rich_utils

            # piped help (a file, a pager, grep) is as wide as the tables: option names whole, not cut at 80
            rich_utils.MAX_WIDTH = rich_utils.MAX_WIDTH or PIPED_HELP_WIDTH
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except TyperException as e:  # typer's own click: BadParameter, NoSuchOption, MissingParameter, ...
            if type(e).__name__ == "NoArgsIsHelpError":  # `planner` alone: the help, as typer shows it
                from typer import rich_utils

                rich_utils.rich_format_error(e)  # type: ignore[arg-type]
            else:
                # typer words a refused Literal choice "Value error, ...": the sentence alone
                say("error: " + " ".join(e.format_message().replace("Value error, ", "").split()))
            sys.exit(e.exit_code)
        except typer.Abort:
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)
