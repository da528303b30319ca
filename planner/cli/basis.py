"""The flags that say what a plan is held to: `--reliability none` (the ideal time, no failures) and
`--confidence Q` (deadline and budget hold at that quantile of the time model's step-time error)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

import typer


class ReliabilityOpt(StrEnum):
    none = "none"  # the ideal time: no failures, checkpoints or restarts
    scenario = "scenario"  # the scenario's `reliability:` block, else the defaults (docs/goodput.md)


ReliabilityFlag = Annotated[ReliabilityOpt, typer.Option(
    "--reliability", help="none: the ideal time without failures; scenario: its reliability block or the "
    "defaults (docs/goodput.md)")]
ConfidenceFlag = Annotated[float | None, typer.Option(
    "--confidence", min=0.5, max=0.99, help="deadline and budget hold at this quantile of the model's step-time "
    "error (default: the scenario's constraints.confidence, else the point estimate)")]


def reliability_value(opt: ReliabilityOpt) -> Literal["none"] | None:
    """'none' where the flag asks for the ideal time; None leaves the scenario's choice."""
    return "none" if opt is ReliabilityOpt.none else None
