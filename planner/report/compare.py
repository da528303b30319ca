"""A comparison for people: its display rows (rounded), the sweep pivot, titles and notes, and the table,
Markdown, CSV and JSON forms of a `CompareResult`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

import pandas as pd

from planner.report.dicts import records
from planner.report.formats import to_json
from planner.report.tables import print_titled, titled_markdown
from planner.report.terminal import console
from planner.report.text import literal, rounded

if TYPE_CHECKING:
    from planner.workflows.compare import CompareResult, Comparison


# A row's warning codes and the frame column that holds each one's text (a string when it applies).
WARNING_COLUMNS = (("extrapolated", "warnings"), ("memory_margin", "memory_margin"))


def _num(v: Any, digits: int) -> Any:
    return None if v is None or pd.isna(v) else rounded(v, digits)


def display_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The columns people read, rounded (the frame keeps full precision). Planned at a confidence, the rows are
    ranked by what deadline and budget were held to: the planned days and cost are shown beside the expected ones."""
    planned = "cost_planned_usd" in df and bool(
        ((df["cost_planned_usd"] - df["cost_usd"]).abs() > 0.5).fillna(False).any())
    rows = []
    for r in df.to_dict(orient="records"):
        gap = r.get("gap")
        at_quantile = {"days_planned": _num(r["days_planned"], 2),
                       "cost_planned_usd": _num(r["cost_planned_usd"], 0)} if planned else {}
        rows.append({
            "sku": r["sku"], "pricing": r["pricing"] if isinstance(r["pricing"], str) else None,
            "usd_per_gpu_hour": _num(r["usd_per_gpu_hour"], 2),
            "gpus": None if pd.isna(r["gpus"]) else int(r["gpus"]),
            "nodes": None if pd.isna(r["nodes"]) else int(r["nodes"]),
            "layout": r["layout"] if isinstance(r["layout"], str) else None,
            "days_ideal": _num(r["days_ideal"], 2), "days": _num(r["days"], 2),
            "days_range": None if pd.isna(r["days_low"]) else f"{r['days_low']:,.1f}–{r['days_high']:,.1f}",
            "goodput": _num(r["goodput"], 3),
            "gpu_hours": _num(r["gpu_hours"], 0), "energy_mwh": _num(r["energy_mwh"], 1),
            "cost_usd": _num(r["cost_usd"], 0), **at_quantile, "upfront_usd": _num(r["upfront_usd"], 0),
            "usd_per_m_tokens": _num(r["usd_per_million_tokens"], 3),
            "vs_best": None if gap is None or pd.isna(gap) else ("best" if gap == 0 else f"{gap:+.1%}"),
            "warnings": ", ".join(code for code, col in WARNING_COLUMNS if isinstance(r.get(col), str)),
            "reason": r["reason"] if isinstance(r["reason"], str) else "",
        })
    return rows


def source_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Where each price comes from, once per option."""
    cols = ["sku", "pricing", "usd_per_gpu_hour", "price_date", "price_source"]
    priced = df[df["pricing"].notna()].drop_duplicates(["sku", "pricing"])[cols]
    return [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in priced.to_dict(orient="records")]


def _point(v: float) -> Any:
    """A sweep point as shown: an int when whole, else at the decimals it was written with."""
    if float(v).is_integer():
        return int(v)
    return rounded(v, min(6, len(repr(float(v)).partition(".")[2])))


def sweep_rows(df: pd.DataFrame, by: str, skus: Sequence[str] = ()) -> list[dict[str, Any]]:
    """A sweep over `by` (deadline_days or budget_usd) as one row per point and one column per SKU (in
    `skus` order, default as met): the SKU's best option's cost (deadline sweep) or days (budget sweep);
    None where the SKU has no plan."""
    value = "cost_usd" if by == "deadline_days" else "days"
    ok = df[df["feasible"]]
    table = ok.groupby([by, "sku"], sort=False)[value].min().unstack("sku")
    skus = list(skus) or list(dict.fromkeys(df["sku"]))
    out = []
    for point in dict.fromkeys(df[by]):
        row: dict[str, Any] = {by: _point(point)}
        for s in skus:
            v = table.at[point, s] if point in table.index and s in table.columns else None
            row[s] = _num(v, 0 if value == "cost_usd" else 2)
        out.append(row)
    return out


def titles(cmp: Comparison, swept: str | None) -> tuple[str, str]:
    """(the options table's title, the sweep's)."""
    name = cmp.scenario.name
    sweep = ("cost of the cheapest plan per GPU (its best price option) by deadline, days" if swept == "deadline_days"
             else "days of the fastest plan per GPU (its best price option) by budget, USD")
    return f"{name}: every GPU × price option, best first", f"{name}: {sweep}"


def notes(cmp: Comparison, swept: str | None = None) -> list[str]:
    """What every row assumes, for the footnotes of tables and reports (`swept`: the swept column)."""
    c, p = cmp.scenario.constraints, cmp.scenario.pricing
    deadline = f"deadline {c.deadline_days:g} days" if c.deadline_days else "no deadline"
    budget = f"budget ${c.budget_usd:,.0f}" if c.budget_usd else "no budget"
    if swept == "deadline_days":
        deadline = "deadline swept"
    limits = [deadline, budget, f"objective {cmp.scenario.objective}"]
    if swept == "budget_usd":
        limits[1:] = ["budget swept, objective time (the fastest plan within each budget)"]
    if c.confidence is not None:
        limits.append(f"held at the {c.confidence:.0%} quantile of the model's error (days_planned, "
                      "cost_planned_usd; vs_best compares those)")
    out = ["limits: " + ", ".join(limits)]
    if "purchase" in cmp.kinds:
        kwh = f"{p.usd_per_kwh:.2f}" if round(p.usd_per_kwh, 2) == p.usd_per_kwh else f"{p.usd_per_kwh:g}"
        out.append(f"purchase: capex amortised over {p.amortisation_years:g} years of full use, plus GPU TDP × "
                   f"PUE {p.pue:g} × ${kwh}/kWh")
    missing = cmp.missing_kinds()
    if missing:
        out.append(f"no {', '.join(missing)} price in the catalog for these GPUs")
    out.append("energy: the GPUs at TDP over the expected GPU-hours (an upper bound, before PUE)")
    return out


def unplanned_notes(result: CompareResult) -> list[str]:
    """For each sweep point where no GPU has a plan, what rules each one out (its first option's reason): a table of
    dashes says why."""
    if result.sweep is None or result.swept is None:
        return []
    df, by = result.sweep, result.swept
    out = []
    for point in dict.fromkeys(df[by]):
        rows = df[df[by] == point]
        if rows["feasible"].any():
            continue
        why = {r["sku"]: r["reason"] for r in rows.to_dict(orient="records") if isinstance(r["reason"], str)}
        out.append(f"{by} {_point(point):,}: no plan — " + "; ".join(f"{s}: {w}" for s, w in why.items()))
    return out


def shown_rows(result: CompareResult) -> tuple[str, list[dict[str, Any]]]:
    """(title, display rows): the sweep pivot when there is a sweep, else every option."""
    title, sweep_title = titles(result.comparison, result.swept)
    if result.sweep is not None and result.swept is not None:
        return sweep_title, sweep_rows(result.sweep, result.swept, result.comparison.skus)
    return title, display_rows(result.base)


def text(result: CompareResult, fmt: str) -> str:
    """The JSON, CSV or Markdown of a comparison: every row and column (JSON, CSV), or what the table shows."""
    frame = result.frame
    if fmt == "json":
        return to_json(records(frame)) + "\n"
    if fmt == "csv":
        return frame.map(lambda v: literal(v) if isinstance(v, str) else v).to_csv(index=False, lineterminator="\n")
    return titled_markdown(*shown_rows(result), shown_notes(result))


def print_table(result: CompareResult, file: IO[str] | None = None) -> None:
    print_titled(console(file), *shown_rows(result), shown_notes(result))


def shown_notes(result: CompareResult) -> list[str]:
    """The footnotes under the table or Markdown: what every row assumes, and why a sweep point has no plan."""
    return notes(result.comparison, result.swept) + unplanned_notes(result)
