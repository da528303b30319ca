"""Serving results in every format: the JSON of `planner serve` (a fleet or one deployment), its rich tables,
CSV and Markdown rows, and the plots (throughput against latency per SKU, cost against request rate)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from planner.report.formats import machine, to_csv, to_json, to_markdown
from planner.report.text import literal, rounded

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from rich.console import Console
    from rich.table import Table

    from planner.search.serving import ServingSolution
    from planner.workloads.serving.evaluation import DeploymentResult, DisaggregatedResult

__all__ = ["capacity_figure", "cost_figure", "deployment_dict", "disaggregated_dict", "figures", "print_deployment",
           "print_disaggregated", "print_serving", "serving_dict", "serving_rows", "serving_text"]


def deployment_dict(r: DeploymentResult) -> dict[str, Any]:
    """`planner serve --model ... --format json`: exactly ttft_ms, tpot_ms, throughput, memory, max_concurrency."""
    return r.to_dict()


def disaggregated_dict(r: DisaggregatedResult) -> dict[str, Any]:
    """`planner serve --model ... --prefill-replicas P --decode-replicas D --format json`: ttft_ms, tpot_ms,
    throughput, kv_transfer_ms, link, gpus, memory per pool."""
    return r.to_dict()


def serving_dict(s: ServingSolution) -> dict[str, Any]:
    """`planner serve SCENARIO.yaml --format json`: plan, best single SKU, mix saving, pareto, candidates."""
    return s.to_dict()


def serving_rows(s: ServingSolution) -> list[dict[str, Any]]:
    """One row per pool of the plan (then the pareto trace when there is one), for CSV and Markdown."""
    p = s.plan
    rows = []
    for pool in p.pools:
        c = pool.candidate
        rows.append({
            "sku": c.sku, "tp": c.tp, "batch_limit": c.batch_limit, "replicas": pool.replicas, "gpus": pool.gpus,
            "usd_per_hour": rounded(pool.usd_per_hour, 2), "qps": rounded(sum(pool.qps), 2),
            "ttft_p50_ms": rounded(pool.ttft_ms["p50"], 1), "ttft_p99_ms": rounded(pool.ttft_ms["p99"], 1),
            "tpot_p50_ms": rounded(pool.tpot_ms["p50"], 2), "tpot_p99_ms": rounded(pool.tpot_ms["p99"], 2),
            "headroom": rounded(pool.headroom, 3), "slo_met": pool.slo_met,
        })
    return rows


def serving_text(s: ServingSolution, fmt: str) -> str:
    if fmt == "json":
        return to_json(serving_dict(s)) + "\n"
    rows = serving_rows(s)
    if fmt == "csv":
        return to_csv(rows)
    p = s.plan
    head = (f"**{p.status}**: ${p.usd_per_hour:,.2f}/hour for {p.qps:g} requests/s on {_gpus(p.gpus)}; "
            f"${p.usd_per_million_input_tokens:.3f} per million input tokens, "
            f"${p.usd_per_million_output_tokens:.3f} per million output tokens\n\n")
    body = to_markdown(rows)
    if s.pareto:
        body += "\nCost against request rate:\n\n" + to_markdown(
            [pt.to_dict() | {"skus": ", ".join(pt.skus)} for pt in s.pareto])
    return head + body


def deployment_text(r: DeploymentResult, fmt: str) -> str:
    return machine(deployment_dict(r), fmt) + ("\n" if fmt == "json" else "")


def print_serving(con: Console, s: ServingSolution) -> None:
    from rich.table import Table
    from rich.text import Text

    p, sc = s.plan, s.scenario
    slo = sc.serving.slo
    con.print(Text(literal(
        f"{sc.name}: {p.qps:g} requests/s within TTFT p{slo.percentile:g} ≤ {slo.ttft_ms:g} ms and "
        f"TPOT p{slo.percentile:g} ≤ {slo.tpot_ms:g} ms")))
    t = Table(title="Fleet (" + p.status + ")", title_justify="left")
    rows = serving_rows(s)
    for col in rows[0]:
        t.add_column(col, justify="left" if col == "sku" else "right")
    for r in rows:
        t.add_row(*(Text(literal(v)) for v in r.values()))
    con.print(t)
    con.print(Text(f"${p.usd_per_hour:,.2f}/hour on {_gpus(p.gpus)}; ${p.usd_per_million_input_tokens:.3f} per "
                   f"million input tokens, ${p.usd_per_million_output_tokens:.3f} per million output tokens"))
    single = s.best_single_sku
    if single is not None and single is not p and single.usd_per_hour > p.usd_per_hour:
        con.print(Text(f"best single SKU ({', '.join(single.skus)}): ${single.usd_per_hour:,.2f}/hour; the mix "
                       f"saves {1 - p.usd_per_hour / single.usd_per_hour:.1%}"))
    if s.pareto:
        pt = Table(title="Cost against request rate", title_justify="left")
        for col in ("qps", "usd_per_hour", "gpus", "skus"):
            pt.add_column(col, justify="left" if col == "skus" else "right")
        for q in s.pareto:
            pt.add_row(f"{q.qps:g}", "infeasible" if q.usd_per_hour is None else f"{q.usd_per_hour:,.2f}",
                       "" if q.gpus is None else str(q.gpus), Text(literal(", ".join(q.skus))))
        con.print(pt)
    if s.extrapolated:
        con.print(Text(f"⚠ {s.extrapolated}", style="yellow"))
    con.print(Text(f"{len(s.candidates)} replica types, {s.simulations} simulations, {s.seconds:.1f} s", style="dim"))


def print_deployment(con: Console, r: DeploymentResult) -> None:
    from rich.text import Text

    load = f"{r.concurrency} clients" if r.concurrency is not None else f"{r.qps:g} requests/s"
    con.print(Text(literal(
        f"{r.model} on {r.tp * r.pp} × {r.gpu} (tp {r.tp}, pp {r.pp}), {r.engine}, weights {r.weight_dtype}, "
        f"KV {r.kv_dtype}: {load}, {r.input_len:g} in / {r.output_len:g} out")))
    if r.unfit:
        con.print(Text(r.unfit, style="bold red"))
        return
    assert r.ttft_ms is not None and r.tpot_ms is not None
    con.print(latency_table(r.ttft_ms, r.tpot_ms))
    con.print(Text(f"{r.output_tokens_per_s:,.0f} output tokens/s, {r.requests_per_s:.2f} requests/s; "
                   f"{r.total_bytes / 2**30:.1f} GiB per GPU (weights {r.weights_bytes / 2**30:.1f}, "
                   f"KV {r.kv_cache_bytes / 2**30:.1f}); up to {r.max_concurrency} requests at once"))
    if r.extrapolated:
        con.print(Text(f"⚠ {r.extrapolated}", style="yellow"))
    if r.overload:
        con.print(Text(r.overload, style="bold red"))


def latency_table(ttft_ms: dict[str, float], tpot_ms: dict[str, float]) -> Table:
    """TTFT and TPOT percentiles, ms, one row each."""
    from rich.table import Table

    t = Table(title="Latency (ms)", title_justify="left")
    for col in ("", "p50", "p90", "p99"):
        t.add_column(col, justify="right")
    t.add_row("TTFT", *(f"{ttft_ms[k]:.1f}" for k in ("p50", "p90", "p99")))
    t.add_row("TPOT", *(f"{tpot_ms[k]:.2f}" for k in ("p50", "p90", "p99")))
    return t


def print_disaggregated(con: Console, r: DisaggregatedResult) -> None:
    from rich.table import Table
    from rich.text import Text

    con.print(Text(literal(
        f"{r.model}, {r.engine}, weights {r.weight_dtype}, KV {r.kv_dtype}: {r.qps:g} requests/s, "
        f"{r.input_len:g} in / {r.output_len:g} out, disaggregated on {r.gpus} GPUs")))
    if r.prefill is not None and r.decode is not None:
        t = Table(title="Pools (memory per GPU, GiB)", title_justify="left")
        for col in ("pool", "gpu", "tp", "replicas", "weights", "KV", "total", "requests at once"):
            t.add_column(col, justify="left" if col in ("pool", "gpu") else "right")
        for name, p in (("prefill", r.prefill), ("decode", r.decode)):
            t.add_row(name, Text(literal(p.gpu)), str(p.tp), str(p.replicas), f"{p.weights_bytes / 2**30:.1f}",
                      f"{p.kv_cache_bytes / 2**30:.1f}", f"{p.total_bytes / 2**30:.1f}", str(p.max_concurrency))
        con.print(t)
    con.print(latency_table(r.ttft_ms, r.tpot_ms))
    con.print(Text(f"{r.output_tokens_per_s:,.0f} output tokens/s, {r.requests_per_s:.2f} requests/s; KV hand-off "
                   f"{r.kv_transfer_ms:.2f} ms per request over {r.link}"))
    if r.extrapolated:
        con.print(Text(f"⚠ {r.extrapolated}", style="yellow"))
    if r.overload:
        con.print(Text(r.overload, style="bold red"))


def capacity_figure(s: ServingSolution) -> Figure:
    """Each replica type's capacity per dollar (requests/s within the SLOs per $/hour, all classes at their
    shares) against its batch limit: one line per SKU and TP."""
    from planner.report.plots import _figure, sku_colors

    fig = _figure()
    ax = fig.add_subplot()
    shares = [c.share for c in s.scenario.serving.traffic.resolved_classes()]
    skus = sorted({c.sku for c in s.candidates})
    colors = sku_colors(skus)
    for sku, tp in sorted({(c.sku, c.tp) for c in s.candidates}):
        pts = []
        for c in sorted((c for c in s.candidates if (c.sku, c.tp) == (sku, tp)), key=lambda c: c.batch_limit):
            if all(r > 0 for r in c.rates):  # the replica's rate at the traffic mix: shares over class capacities
                pts.append((c.batch_limit, 1.0 / sum(sh / r for sh, r in zip(shares, c.rates, strict=True))
                            / c.usd_per_hour))
        if pts:
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", color=colors[sku],
                    linestyle="-" if tp == 1 else "--", label=f"{sku} tp{tp}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch limit (max_num_seqs)")
    ax.set_ylabel("requests/s within the SLOs per $/hour")
    ax.legend(fontsize="small")
    return fig


def figures(s: ServingSolution) -> dict[str, Figure]:
    """The serving plots by name: capacity per dollar per replica type, and cost against request rate when the
    solution has a pareto trace."""
    figs = {"capacity": capacity_figure(s)}
    if s.pareto:
        figs["cost_vs_qps"] = cost_figure(s)
    return figs


def cost_figure(s: ServingSolution) -> Figure:
    """$ per million output tokens against request rate (the pareto trace)."""
    from planner.report.plots import _figure

    fig = _figure()
    ax = fig.add_subplot()
    out = s.scenario.serving.traffic
    mean_out = sum(c.share * c.output.expected() for c in out.resolved_classes())
    pts = [(q.qps, q.usd_per_hour / (q.qps * mean_out * 3600) * 1e6) for q in s.pareto if q.usd_per_hour]
    ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o")
    ax.set_xscale("log")
    ax.set_xlabel("requests/s")
    ax.set_ylabel("$ per million output tokens (whole fleet)")
    return fig


def _gpus(n: int) -> str:
    return f"{n:,} GPU" + ("" if n == 1 else "s")
