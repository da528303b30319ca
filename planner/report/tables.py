"""Rich terminal tables for people: estimate, inference, solve, review and catalog rows.

Every dynamic value reaches rich as a Text cell or through `safe`, so user text (scenario and job names,
flags quoted in findings) prints literally: no markup interpretation, no control characters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from planner.report.dicts import estimate_dict, memory_dict, reliability_dict, time_dict, warnings_list
from planner.report.terminal import safe
from planner.report.text import cell, gib, layout_text, literal, md_literal, numeric, rounded, setting_text
from planner.schema import GIB

if TYPE_CHECKING:
    from planner.schema import GpuSku, ModelSpec
    from planner.search.plans import Plan
    from planner.workflows.inference import InferenceEstimate
    from planner.workflows.review import Review
    from planner.workflows.solve import SolveResult
    from planner.workloads.training.evaluation import Evaluation

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}
# Columns of sentences (a finding's message, why a row has no plan): their cells wrap at word boundaries within
# this many characters rather than stretching the table across a line per row; nothing is cut.
PROSE_COLUMNS = ("message", "reason")
PROSE_WIDTH = 100


def _table(title: str, *columns: str, right: tuple[str, ...] = ()) -> Table:
    t = Table(title=Text(literal(title)), title_justify="left")
    for c in columns:
        t.add_column(c, justify="right" if c in right else "left",
                     max_width=PROSE_WIDTH if c in PROSE_COLUMNS else None, overflow="fold")
    return t


def print_rows(con: Console, rows: list[dict[str, Any]], title: str) -> None:
    """A list of dicts as a rich table: numeric columns right-aligned, rows with a `reason` (no plan) dimmed."""
    if not rows:
        con.print("(none)")
        return
    table = _table(title, *rows[0], right=tuple(c for c in rows[0] if numeric(rows, c)))
    for r in rows:
        table.add_row(*(Text(cell(v)) for v in r.values()), style="dim" if r.get("reason") else None)
    con.print(table)


def print_titled(con: Console, title: str, rows: list[dict[str, Any]], notes: Iterable[str]) -> None:
    """A comparison's table (`print_rows`) and its notes, dimmed: training and serving comparisons alike."""
    print_rows(con, rows, title)
    for n in notes:
        con.print(f"[dim]{safe(n)}[/]")


def titled_markdown(title: str, rows: list[dict[str, Any]], notes: Iterable[str]) -> str:
    """The Markdown of `print_titled`: a bold title, the table, the notes as a list."""
    from planner.report.formats import to_markdown

    body = to_markdown([{k: cell(v) for k, v in r.items()} for r in rows])
    return f"**{md_literal(title)}**\n\n" + body + "\n" + "".join(f"- {md_literal(n)}\n" for n in notes)


def _days(d: float | None) -> str:
    return "never (planned stops leave no time to train)" if d is None else f"{d:,.2f}"


def add_time_rows(t: Table, ev: Evaluation) -> None:
    """Ideal and expected days side by side, the model's error range, and what failures cost."""
    td, rel = time_dict(ev), reliability_dict(ev)
    lo, hi = td["step_seconds_range"]
    t.add_row("step time range (p10–p90 of the model's error)", f"{lo:.3f} – {hi:.3f} s")
    expected = "expected (no failures modelled)" if rel["model"] == "none" else "expected with failures"
    t.add_row(f"days for {td['tokens']:.3g} tokens: ideal | {expected}",
              f"{td['days_ideal']:,.2f} | {_days(td['days'])}")
    dlo, dhi = td["days_range"]
    if dlo is not None and dhi is not None:
        t.add_row("expected days range (p10–p90)", f"{dlo:,.2f} – {dhi:,.2f}")
    if td["confidence"] is not None:
        t.add_row(f"days planned at the {td['confidence']:.0%} quantile", _days(td["days_planned"]))
    t.add_row("goodput (ideal / expected)", f"{td['goodput']:.1%}")
    if rel["model"] != "none":
        t.add_row("expected interruptions", f"{rel['expected_interruptions'] or 0:,.1f}"
                  + (f" (MTBF {rel['mtbf_hours']:,.1f} h)" if rel["mtbf_hours"] else ""))
        t.add_row("checkpoint", f"{rel['checkpoint_bytes'] / 1e12:,.2f} TB every "
                  f"{rel['checkpoint_interval_minutes']:,.0f} min")
    gh = td["gpu_hours"]
    t.add_row("GPU-hours: ideal | expected", f"{td['gpu_hours_ideal']:,.0f} | "
              + ("∞" if gh is None else f"{gh:,.0f}"))


def print_warnings(con: Console, ev: Evaluation) -> None:
    """The `warnings[]` of a plan, one line each."""
    for w in warnings_list(ev):
        con.print(Text(f"⚠ {w['message']}", style="yellow"))


# --------------------------------------------------------------------------------------------
# catalog
# --------------------------------------------------------------------------------------------


def gpu_rows(gpus: Iterable[GpuSku]) -> list[dict[str, Any]]:
    from planner.pricing import select_price

    rows = []
    for g in gpus:
        price = select_price(g, "on-demand")
        rows.append({
            "name": g.name,
            "description": g.description,
            "generation": g.arch,
            "bf16_tflops": g.peak("bf16"),
            "fp8_tflops": g.peak_tflops.get("fp8"),
            "memory_gib": rounded(g.hbm_bytes / GIB, 2),
            "hbm_tb_s": g.hbm_bandwidth_tbs,
            "node": g.node_size,
            "scale_up_gb_s": g.intra_node_gbs,
            "network_gbit_s": g.network_gbps,
            "tdp_w": g.tdp_w,
            "usd_per_gpu_hour": price.usd_per_gpu_hour if price else None,
            "price": f"{price.provider} {price.date}" if price else None,
            "source": g.source,  # the catalog entry's figures
        })
    return rows


def model_rows(models: Iterable[ModelSpec]) -> list[dict[str, Any]]:
    from planner.model.params import count_params

    rows = []
    for m in models:
        c = count_params(m)
        rows.append({
            "name": m.name,
            "params": c.total,
            "active": c.active,
            "layers": m.layers,
            "hidden": m.hidden,
            "heads": m.heads,
            "kv_heads": m.n_kv_heads,
            "ffn": m.ffn_hidden,
            "vocab": m.vocab,
            "experts": f"{m.moe.top_k}/{m.moe.experts}" if m.moe else "",
            "source": m.source or "",
        })
    return rows


# --------------------------------------------------------------------------------------------
# estimate
# --------------------------------------------------------------------------------------------


def memory_table(mem: dict[str, Any], title: str) -> Table:
    t = _table(title, "component", "GiB = 2^30 bytes", right=("GiB = 2^30 bytes",))
    for k, v in mem["bytes"].items():
        if k in ("total", "rule_of_thumb"):
            continue
        t.add_row(k, gib(v, 2, unit=False))
    t.add_row("[bold]total[/]", f"[bold]{gib(mem['bytes']['total'], 2, unit=False)}[/]")
    t.add_row("capacity", gib(mem["capacity_bytes"], 2, unit=False))
    head = mem["headroom_bytes"]
    verdict = (f"[green]fits, {gib(head, 2, unit=False)} GiB free[/]" if head >= 0
               else f"[red]short by {gib(-head, 2, unit=False)} GiB[/]")
    t.add_row("verdict", verdict)
    if "bytes_range" in mem:
        lo, hi = mem["bytes_range"]
        t.add_row("peak range (p10–p90 of the model's error)",
                  f"{gib(lo, 2, unit=False)} – {gib(hi, 2, unit=False)}")
    if "rule_of_thumb" in mem["bytes"]:
        rule = gib(mem["bytes"]["rule_of_thumb"], 2, unit=False)
        t.add_row("[dim]rule of thumb (1.2 × weights)[/]", f"[dim]{rule}[/]")
    return t


def print_estimate(con: Console, ev: Evaluation) -> None:
    out = estimate_dict(ev)
    nodes = f"{ev.nodes:,} node" + ("s" if ev.nodes > 1 else "")
    lay = ev.layout
    con.print(
        f"[bold]{safe(ev.model.name)}[/] on [bold]{lay.gpus:,} × {safe(ev.gpu.name)}[/] ({nodes})  "
        f"{layout_text(lay)}, global batch {lay.global_batch} × seq {ev.seq} "
        f"({lay.grad_accumulation} micro-batch{'es' if lay.grad_accumulation != 1 else ''}/step)"
    )
    p = out["params"]
    con.print(f"parameters {p['total']:,} total, {p['active']:,} active per token")
    stage = out["memory"]["binding_stage"]
    con.print(memory_table(out["memory"], f"Per-GPU memory, pipeline stage {stage}"))
    f, t = out["flops"], out["time"]
    ft = _table("Compute and time", "quantity", "value", right=("value",))
    ft.add_row("model FLOPs / step", f"{f['model_per_step']:.4e}")
    ft.add_row("hardware FLOPs / step (with recompute)", f"{f['hardware_per_step']:.4e}")
    ft.add_row("tokens / step", f"{f['tokens_per_step']:,}")
    ft.add_row("step time", f"{t['step_seconds']:.3f} s ({t['mode']})")
    for k, v in t["breakdown"].items():
        if v:
            ft.add_row(f"  {k}", f"{v:.3f} s")
    ft.add_row("MFU / HFU", f"{t['mfu']:.1%} / {t['hfu']:.1%}")
    ft.add_row("model TFLOP/s per GPU", f"{t['tflops_per_gpu']:.1f}")
    ft.add_row("tokens / s", f"{t['tokens_per_s']:,.0f}")
    add_time_rows(ft, ev)
    energy = "∞" if t["energy_mwh"] is None else f"{t['energy_mwh']:,.1f} MWh"
    ft.add_row("energy (GPU TDP, expected GPU-hours)", energy)
    c = out["cost"]
    if c["usd"] is not None:
        ft.add_row("cost", Text(f"${c['usd']:,.0f} at ${c['usd_per_gpu_hour']:.2f}/GPU-h ({literal(c['price'])})"))
        ft.add_row("$ per million tokens", f"{c['usd_per_million_tokens']:.3f}")
    r = out["rules_of_thumb"]
    ft.add_row("[dim]rule of thumb: 20 B/param state[/]",
               f"[dim]{r['state_bytes_20_per_param'] / 1e12:.2f} TB → ≥ {r['min_gpus_for_state']:,} GPUs[/]")
    con.print(ft)
    print_warnings(con, ev)


def print_inference(con: Console, est: InferenceEstimate) -> None:
    con.print(
        f"[bold]{safe(est.model.name)}[/] serving on {est.gpus} × {safe(est.gpu.name)}: batch {est.batch} × "
        f"context {est.context:,}, weights {est.weight_dtype}, KV cache {est.kv_dtype}"
    )
    from planner.report.dicts import inference_dict

    con.print(memory_table(inference_dict(est)["memory"], "Per-GPU inference memory"))


# --------------------------------------------------------------------------------------------
# solve
# --------------------------------------------------------------------------------------------


def short_row(p: Plan) -> dict[str, Any]:
    """One plan in a line: what the runner-ups table and solve's Markdown show."""
    ev = p.evaluation
    td = time_dict(ev)
    lo, hi = td["days_range"]
    return {
        "job": p.job, "sku": p.sku, "gpus": p.gpus, "nodes": p.nodes, "layout": layout_text(ev.layout),
        "memory_gib": rounded(ev.memory.total / GIB, 1), "mfu": rounded(ev.time.mfu, 3),
        "days_ideal": rounded(ev.time.days, 2), "days": None if td["days"] is None else rounded(td["days"], 2),
        "days_range": "" if lo is None or hi is None else f"{lo:,.1f}–{hi:,.1f}",
        "goodput": rounded(td["goodput"], 3), "gpu_hours": round(td["gpu_hours"] or 0.0),
        "cost_usd": round(ev.cost_usd or 0.0), "usd_per_m_tokens": rounded(ev.usd_per_million_tokens or 0.0, 3),
        "warnings": ", ".join(w["code"] for w in warnings_list(ev)),
    } | ({"days_planned": rounded(ev.planned_days, 2)} if ev.basis.confidence is not None else {})


def print_solve(con: Console, result: SolveResult) -> None:
    gap = f", gap {result.gap:.2%}" if result.gap else ""
    pruned = result.search_space_size - result.layouts_evaluated
    looked = f" ({pruned:,} pruned by bounds)" if pruned else ""
    con.print(f"[bold]{result.status}[/] ({result.objective}) in {result.seconds:.2f} s{gap}: "
              f"{result.search_space_size:,} layouts{looked}, {result.candidates:,} candidates")
    if not result.plans:
        con.print("[red]no plan satisfies the scenario[/]")
        for r in result.reasons:
            con.print(f"  • {safe(r)}")
        return
    for p in (result.plans if len(result.jobs) > 1 else result.plans[:1]):
        print_plan(con, p)
    if len(result.jobs) > 1:
        best = result.solutions[0]
        con.print(f"[bold]all jobs[/]: ${best.cost_usd:,.0f}, last one done in {best.days:,.1f} days, "
                  f"{best.gpus:,} GPUs")
        alt = [{"rank": i + 2, "cost_usd": round(s.cost_usd), "days": rounded(s.days, 2), "gpus": s.gpus,
                "plans": "; ".join(f"{p.job}: {p.gpus} × {p.sku}" for p in s.plans)}
               for i, s in enumerate(result.solutions[1:])]
        if alt:
            print_rows(con, alt, "Runner-ups")
    elif len(result.plans) > 1:
        print_rows(con, ranked_rows(result), f"Plan and runner-ups (vs_best: "
                                             f"{'days' if result.objective == 'time' else 'cost'})")
    con.print(near_optimal_line(result))
    if result.pareto:
        print_rows(con, pareto_rows(result), PARETO_TITLE)
    if result.binding:
        con.print("[bold]Binding constraints[/]")
        for b in result.binding:
            con.print(f"  • {safe(b)}")
    if result.skipped:
        con.print("[dim]skipped SKUs: " + safe("; ".join(result.skipped)) + "[/]")


PARETO_TITLE = "Cost vs expected wall-clock (as planned) Pareto front"


def ranked_rows(result: SolveResult, job: bool = False) -> list[dict[str, Any]]:
    """One job's plan and runner-ups, each against the optimum in the first objective's terms (`vs_best`); with
    `job`, the job's name in each row (where no heading names it)."""
    key = "time_s" if result.objective == "time" else "cost_cents"
    best_value = getattr(result.plans[0], key)
    rows = []
    for i, p in enumerate(result.plans):
        row = {"rank": i + 1} | short_row(p)
        if not job:
            del row["job"]
        row["vs_best"] = f"{getattr(p, key) / best_value - 1:+.1%}" if best_value else ""
        rows.append(row)
    return rows


def near_optimal_line(result: SolveResult) -> str:
    n = len(result.near_optimal)
    return f"{n} plan{'s' if n != 1 else ''} within {result.margin:.0%} of the optimum (ties under the model's error)"


def pareto_rows(result: SolveResult) -> list[dict[str, Any]]:
    """The cost / wall-clock Pareto front (`solve --pareto`), one row per solution."""
    return [{"cost_usd": round(s.cost_usd), "days": rounded(s.days, 2), "gpus": s.gpus,
             "plans": "; ".join(f"{p.gpus} × {p.sku} {layout_text(p.evaluation.layout)}" for p in s.plans)}
            for s in result.pareto]


def print_plan(con: Console, p: Plan) -> None:
    ev = p.evaluation
    t = ev.time
    micro = ev.layout.grad_accumulation
    con.print(f"[bold]{safe(p.job)}[/]: [bold]{p.gpus:,} × {safe(p.sku)}[/] ({p.nodes:,} "
              f"node{'s' if p.nodes != 1 else ''} of {ev.gpus_per_node}), {layout_text(ev.layout)}, global batch "
              f"{ev.layout.global_batch} ({micro} micro-batch{'es' if micro != 1 else ''}/step)")
    con.print(memory_table(memory_dict(ev), f"Per-GPU memory, pipeline stage {ev.memory.stage}"))
    ft = _table("Time and cost", "quantity", "value", right=("value",))
    ft.add_row("step time", f"{t.step_seconds:.3f} s")
    for k, v in t.breakdown.items():
        if v:
            ft.add_row(f"  {k}", f"{v:.3f} s")
    ft.add_row("MFU / HFU", f"{t.mfu:.1%} / {t.hfu:.1%}")
    ft.add_row("tokens / s", f"{t.tokens_per_s:,.0f}")
    add_time_rows(ft, ev)
    ft.add_row("energy (GPU TDP, expected GPU-hours)", f"{ev.energy_kwh / 1000:,.1f} MWh")
    if ev.cost_usd is not None and ev.rate is not None:
        ft.add_row("cost", Text(f"${ev.cost_usd:,.0f} at ${ev.rate.usd_per_gpu_hour:.2f}/GPU-h "
                                f"({literal(ev.rate.label)})"))
        ft.add_row("$ per million tokens", f"{ev.usd_per_million_tokens:.3f}")
    con.print(ft)
    print_warnings(con, ev)


# --------------------------------------------------------------------------------------------
# review
# --------------------------------------------------------------------------------------------


def verdict(rev: Review) -> str:
    ev = rev.evaluation
    if not ev.fits:
        return f"does not fit: short by {gib(-ev.headroom_bytes)} on pipeline stage {ev.memory.stage}"
    room = f"{gib(ev.headroom_bytes)} free on the most loaded pipeline stage ({ev.memory.stage})"
    return f"fits, {room}" + ("" if not rev.problems else "; but the layout breaks a rule")


def summary_rows(rev: Review) -> list[dict[str, Any]]:
    """The review in quantity/value rows (its Markdown)."""
    ev = rev.evaluation
    t, td = ev.time, time_dict(ev)
    rows: list[tuple[str, Any]] = [
        ("configuration", f"{rev.config.source}: {ev.model.name} on {ev.layout.gpus} × {ev.gpu.name}"),
        ("layout", layout_text(ev.layout)),
        ("verdict", verdict(rev)),
        ("memory per GPU (GiB)", f"{gib(ev.memory.total, unit=False)} of {gib(ev.capacity_bytes, unit=False)}, "
                                 f"pipeline stage {ev.memory.stage}"),
        ("step time (s)", round(t.step_seconds, 3)),
        ("MFU", round(t.mfu, 3)),
        ("tokens / s", round(t.tokens_per_s)),
        (f"days for {ev.tokens:.3g} tokens, ideal", round(t.days, 2)),
        ("days expected with failures", None if td["days"] is None else rounded(td["days"], 2)),
        ("days range (p10–p90)", " – ".join(f"{d:,.2f}" for d in td["days_range"] if d is not None)),
        ("goodput", round(td["goodput"], 3)),
        ("cost (USD)", round(ev.cost_usd) if ev.cost_usd is not None else None),
    ]
    rows += [("warning", w["message"]) for w in warnings_list(ev)]
    if rev.published is not None and rev.config.case is not None:
        p = rev.published
        rows.append((f"measured {p.quantity}", p.measured))
        rows.append((f"predicted {p.quantity}", round(p.predicted, 3)))
    if rev.better is not None:
        rows.append(("better on the same hardware", f"{layout_text(rev.better.plan.evaluation.layout)}, "
                                                     f"{rev.better.speedup:.2f}× faster"))
    return [{"quantity": k, "value": v} for k, v in rows]


def print_review(con: Console, rev: Review) -> None:
    print_estimate(con, rev.evaluation)
    style = "green" if rev.ok else "bold red"
    con.print(f"[{style}]{verdict(rev)}[/]")
    if rev.published is not None and rev.config.case is not None:
        p = rev.published
        con.print(f"published run {safe(rev.config.case.id)}: measured {p.quantity} {p.measured:,.2f}, predicted "
                  f"{p.predicted:,.2f} ({p.error:+.1%})")
    if rev.findings:
        t = _table("Findings", "severity", "code", "message")
        for f in rev.findings:
            t.add_row(Text(f.severity, style=SEVERITY_STYLE[f.severity]), f.code, Text(literal(f.message)))
        con.print(t)
    b = rev.better
    if b is not None:
        ev = b.plan.evaluation
        con.print(f"[bold]Better on the same hardware[/]: {layout_text(ev.layout)}, {b.speedup:.2f}× the reviewed "
                  f"speed (step {ev.time.step_seconds:.3f} s, MFU {ev.time.mfu:.1%}, "
                  f"{ev.expected.days:,.1f} days expected, {gib(ev.memory.total)} per GPU)")
        if b.changes:
            ct = _table(f"Changes ({b.format})", "key", "from", "to")
            for ch in b.changes:
                ct.add_row(*(Text(literal(v)) for v in (ch["key"], setting_text(ch["from"]),
                                                         setting_text(ch["to"]))))
            con.print(ct)
