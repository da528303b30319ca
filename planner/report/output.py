"""`render(result, fmt)`: any result of the public API in any format, written where it belongs.

`table` prints rich tables on the one console (planner.report.terminal); `json`, `csv` and `markdown`
write text. Each workflow's result type has one entry here, so the CLI never chooses a renderer.
"""

from __future__ import annotations

import sys
from functools import singledispatch
from pathlib import Path
from typing import IO, Any

from planner.report import compare as compare_view
from planner.report import dicts, tables
from planner.report import schedule as schedule_view
from planner.report import serving as serving_view
from planner.report import serving_compare as serving_compare_view
from planner.report.formats import FORMATS, machine, to_csv, to_json, to_markdown
from planner.report.terminal import console
from planner.report.text import md_literal
from planner.workflows.compare import CompareResult
from planner.workflows.compare_serving import ServingCompareResult
from planner.workflows.inference import InferenceEstimate
from planner.workflows.review import Review
from planner.workflows.schedule import ScheduleResult
from planner.workflows.serve import DeploymentResult, DisaggregatedResult, ServingSolution
from planner.workflows.solve import SolveResult
from planner.workloads.training.evaluation import Evaluation

__all__ = ["figures", "html_page", "render", "render_rows", "text", "to_dict", "write_plots"]


def render(result: Any, fmt: str = "table", file: IO[str] | None = None) -> None:
    """Write `result` (an Evaluation, InferenceEstimate, SolveResult, Review, CompareResult or ScheduleResult) in `fmt`
    (table, json, csv or markdown) to `file` (default stdout)."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "table":
        _table(result, file)
    else:
        out = file if file is not None else sys.stdout
        out.write(text(result, fmt))


def render_rows(rows: list[dict[str, Any]], fmt: str, title: str, file: IO[str] | None = None) -> None:
    """Rows of one shape (the catalogs) as a titled table, JSON, CSV or Markdown."""
    if fmt == "table":
        tables.print_rows(console(file), rows, title)
        return
    out = file if file is not None else sys.stdout
    out.write({"json": lambda: to_json(rows) + "\n", "csv": lambda: to_csv(rows),
               "markdown": lambda: to_markdown(rows)}[fmt]())


def to_dict(result: Any) -> Any:
    """The JSON object (or rows) of a result, as `--format json` prints it."""
    return _dict(result)


# --------------------------------------------------------------------------------------------
# per result type
# --------------------------------------------------------------------------------------------


@singledispatch
def _dict(result: Any) -> Any:
    raise TypeError(f"no JSON form for {type(result).__name__}")


@_dict.register
def _(result: Evaluation) -> Any:
    return dicts.estimate_dict(result)


@_dict.register
def _(result: InferenceEstimate) -> Any:
    return dicts.inference_dict(result)


@_dict.register
def _(result: SolveResult) -> Any:
    return dicts.solve_dict(result)


@_dict.register
def _(result: Review) -> Any:
    return dicts.review_dict(result)


@_dict.register
def _(result: CompareResult) -> Any:
    return dicts.records(result.frame)


@_dict.register
def _(result: ServingCompareResult) -> Any:
    return dicts.records(result.frame)


@_dict.register
def _(result: ServingSolution) -> Any:
    return serving_view.serving_dict(result)


@_dict.register
def _(result: DeploymentResult) -> Any:
    return serving_view.deployment_dict(result)


@_dict.register
def _(result: DisaggregatedResult) -> Any:
    return serving_view.disaggregated_dict(result)


@singledispatch
def text(result: Any, fmt: str) -> str:
    """JSON, CSV or Markdown of a result: one object as key/value rows unless its type says otherwise."""
    return machine(_dict(result), fmt) + ("\n" if fmt == "json" else "")


@text.register
def _(result: SolveResult, fmt: str) -> str:
    if fmt == "csv":
        return to_csv(solve_rows(result))
    if fmt == "markdown":
        return solve_markdown(result)
    return to_json(dicts.solve_dict(result)) + "\n"


@text.register
def _(result: Review, fmt: str) -> str:
    if fmt == "csv":
        return machine(review_flat(result), "csv")
    if fmt == "markdown":
        return review_markdown(result)
    return to_json(dicts.review_dict(result)) + "\n"


@text.register
def _(result: CompareResult, fmt: str) -> str:
    return compare_view.text(result, fmt)


@text.register
def _(result: ServingCompareResult, fmt: str) -> str:
    return serving_compare_view.text(result, fmt)


@text.register
def _(result: ServingSolution, fmt: str) -> str:
    return serving_view.serving_text(result, fmt)


@singledispatch
def _table(result: Any, file: IO[str] | None) -> None:
    raise TypeError(f"no table for {type(result).__name__}")


@_table.register
def _(result: Evaluation, file: IO[str] | None) -> None:
    tables.print_estimate(console(file), result)


@_table.register
def _(result: InferenceEstimate, file: IO[str] | None) -> None:
    tables.print_inference(console(file), result)


@_table.register
def _(result: SolveResult, file: IO[str] | None) -> None:
    tables.print_solve(console(file), result)


@_table.register
def _(result: Review, file: IO[str] | None) -> None:
    tables.print_review(console(file), result)


@_table.register
def _(result: CompareResult, file: IO[str] | None) -> None:
    compare_view.print_table(result, file)


@_table.register
def _(result: ServingCompareResult, file: IO[str] | None) -> None:
    serving_compare_view.print_table(result, file)


@_table.register
def _(result: ServingSolution, file: IO[str] | None) -> None:
    serving_view.print_serving(console(file), result)


@_table.register
def _(result: DeploymentResult, file: IO[str] | None) -> None:
    serving_view.print_deployment(console(file), result)


@_table.register
def _(result: DisaggregatedResult, file: IO[str] | None) -> None:
    serving_view.print_disaggregated(console(file), result)


# --------------------------------------------------------------------------------------------
# solve and review in rows
# --------------------------------------------------------------------------------------------


def solve_rows(result: SolveResult) -> list[dict[str, Any]]:
    """One flat row per plan (dotted keys), every row with the same columns."""
    from planner.report.text import flatten

    rows = [dict(flatten(p)) for p in dicts.solve_dict(result)["plans"]]
    if not rows:
        return [{"status": result.status, "reasons": "; ".join(result.reasons)}]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    return [{"status": result.status} | {c: r.get(c, "") for c in cols} for r in rows]


def solve_markdown(result: SolveResult) -> str:
    head = (f"**{result.status}** ({result.objective}), {result.seconds:.2f} s, "
            f"{result.search_space_size:,} layouts searched, {result.layouts_evaluated:,} evaluated\n\n")
    if not result.plans:
        return head + "".join(f"- {md_literal(r)}\n" for r in result.reasons)
    one_job = len(result.jobs) <= 1
    body = to_markdown(tables.ranked_rows(result, job=True) if one_job else
                       [{"rank": i + 1} | tables.short_row(p) for i, p in enumerate(result.plans)])
    body += f"\n{md_literal(tables.near_optimal_line(result))}\n"
    if result.pareto:
        body += f"\n**{tables.PARETO_TITLE}**\n\n" + to_markdown(tables.pareto_rows(result))
    if result.binding:
        body += "\n" + "".join(f"- {md_literal(b)}\n" for b in result.binding)
    if result.skipped:
        body += "\n" + md_literal("skipped SKUs: " + "; ".join(result.skipped)) + "\n"
    return head + body


def review_flat(rev: Review) -> dict[str, Any]:
    """The JSON with findings and changes as one line each, for key/value CSV."""
    d = dicts.review_dict(rev)
    d["findings"] = {str(i + 1): f"{f['severity']} {f['code']}: {f['message']}" for i, f in enumerate(d["findings"])}
    if d["better"]:
        d["better"]["changes"] = {str(ch["key"]): f"{ch['from']} → {ch['to']}" for ch in d["better"]["changes"]}
    return d


def review_markdown(rev: Review) -> str:
    text_ = to_markdown(tables.summary_rows(rev))
    if rev.findings:
        text_ += "\n" + to_markdown([dicts.finding_dict(f) for f in rev.findings])
    if rev.better is not None and rev.better.changes:
        text_ += f"\nChanges ({rev.better.format}):\n\n" + to_markdown(rev.better.changes)
    return text_


# --------------------------------------------------------------------------------------------
# a comparison's plots and page
# --------------------------------------------------------------------------------------------


def figures(result: CompareResult | ServingCompareResult) -> dict[str, Any]:
    """The comparison's matplotlib figures by name: pareto, cost_vs_deadline or days_vs_budget (with a
    sweep), memory, step_time, goodput; of a serving comparison throughput_latency and cost_vs_qps."""
    from planner.report import plots

    if isinstance(result, ServingCompareResult):
        return serving_compare_view.figures(result)
    cmp = result.comparison
    return plots.figures(result.base, cmp.pareto(), result.sweep, result.swept, cmp.scenario.constraints.deadline_days,
                         cmp.goodput(result.base))


def write_plots(result: CompareResult | ServingCompareResult | ServingSolution, out_dir: Path,
                figs: dict[str, Any] | None = None) -> list[Path]:
    """The comparison's (or a serving plan's) plots (`figs`, default `figures(result)`) as PNG and SVG in
    `out_dir` (created); the paths written."""
    from planner.report import plots

    if figs is None:
        figs = serving_view.figures(result) if isinstance(result, ServingSolution) else figures(result)
    return plots.save(figs, out_dir)


def html_page(result: CompareResult | ServingCompareResult, scenario_yaml: str, figs: dict[str, Any] | None = None
              ) -> str:
    """One self-contained HTML page of the comparison: tables, plots (`figs`, default `figures(result)`),
    price sources, the scenario."""
    from planner.report.html import render as page

    if isinstance(result, ServingCompareResult):
        return serving_compare_view.html_page(result, scenario_yaml, figs)
    cmp = result.comparison
    title, sweep_title = compare_view.titles(cmp, result.swept)
    sweep = (compare_view.sweep_rows(result.sweep, result.swept, cmp.skus)
             if result.sweep is not None and result.swept else ())
    figs = figures(result) if figs is None else figs
    return page(title=title, notes=compare_view.notes(cmp), table=compare_view.display_rows(result.base),
                figures=figs, scenario_yaml=scenario_yaml, sources=compare_view.source_rows(result.base),
                sweep=sweep, sweep_title=sweep_title)


# --------------------------------------------------------------------------------------------
# a schedule (planner.report.schedule)
# --------------------------------------------------------------------------------------------


@_dict.register
def _(result: ScheduleResult) -> Any:
    return schedule_view.schedule_dict(result)


@text.register
def _(result: ScheduleResult, fmt: str) -> str:
    return schedule_view.text(result, fmt)


@_table.register
def _(result: ScheduleResult, file: IO[str] | None) -> None:
    schedule_view.print_table(result, file)
