"""Rich terminal tables for people. Machine formats live in planner/report.py."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

from planner.report.formats import GIB, gib
from planner.schema import GpuSku, ModelSpec


def print_rows(con: Console, rows: list[dict[str, Any]], title: str, cell: Callable[[Any], str] | None = None) -> None:
    """A list of dicts as a rich table: numeric columns right-aligned, rows with a `reason` (no plan) dimmed."""
    if not rows:
        con.print("(none)")
        return
    fmt = cell or fmt_cell
    table = Table(title=title, title_justify="left")
    for col in rows[0]:
        numeric = any(isinstance(r.get(col), int | float) and not isinstance(r.get(col), bool) for r in rows)
        table.add_column(col, justify="right" if numeric else "left")
    for r in rows:
        table.add_row(*(fmt(v) for v in r.values()), style="dim" if r.get("reason") else None)
    con.print(table)


def fmt_cell(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def gpu_rows(gpus: Iterable[GpuSku]) -> list[dict[str, Any]]:
    from planner.pricing import select_price

    rows = []
    for g in gpus:
        price = select_price(g, "on-demand")
        rows.append({
            "name": g.name,
            "description": g.description,
            "bf16_tflops": g.peak("bf16"),
            "fp8_tflops": g.peak_tflops.get("fp8"),
            "memory_gib": round(g.hbm_bytes / GIB, 2),
            "hbm_tb_s": g.hbm_bandwidth_tbs,
            "node": g.node_size,
            "scale_up_gb_s": g.intra_node_gbs,
            "network_gbit_s": g.network_gbps,
            "tdp_w": g.tdp_w,
            "usd_per_gpu_hour": price.usd_per_gpu_hour if price else None,
            "price": f"{price.provider} {price.date}" if price else None,
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


def memory_table(mem: dict[str, Any], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("component")
    t.add_column("GiB = 2^30 bytes", justify="right")
    for k, v in mem["bytes"].items():
        if k in ("total", "rule_of_thumb"):
            continue
        t.add_row(k, gib(v))
    t.add_row("[bold]total[/]", f"[bold]{gib(mem['bytes']['total'])}[/]")
    t.add_row("capacity", gib(mem["capacity_bytes"]))
    head = mem["headroom_bytes"]
    verdict = f"[green]fits, {gib(head)} GiB free[/]" if head >= 0 else f"[red]short by {gib(-head)} GiB[/]"
    t.add_row("verdict", verdict)
    if "rule_of_thumb" in mem["bytes"]:
        t.add_row("[dim]rule of thumb (1.2 × weights)[/]", f"[dim]{gib(mem['bytes']['rule_of_thumb'])}[/]")
    return t


def print_estimate(con: Console, out: dict[str, Any]) -> None:
    lay = out["layout"]
    nodes = f"{out['nodes']:,} node" + ("s" if out["nodes"] > 1 else "")
    con.print(
        f"[bold]{out['model']}[/] on [bold]{out['gpus']:,} × {out['gpu']}[/] ({nodes})  "
        f"TP{lay['tp']} PP{lay['pp']}" + (f" VPP{lay['vpp']}" if lay["vpp"] > 1 else "")
        + f" DP{lay['dp']} CP{lay['cp']} EP{lay['ep']} ZeRO-{lay['zero']} recompute={lay['recompute']} "
        f"SP={'on' if lay['sequence_parallel'] else 'off'} micro-batch {lay['micro_batch']} "
        f"global batch {lay['global_batch']} × seq {out['seq']} ({lay['grad_accumulation']} micro-batches/step)"
    )
    p = out["params"]
    con.print(f"parameters {p['total']:,} total, {p['active']:,} active per token")
    stage = out["memory"]["binding_stage"]
    con.print(memory_table(out["memory"], f"Per-GPU memory, pipeline stage {stage}"))
    f, t = out["flops"], out["time"]
    ft = Table(title="Compute and time", title_justify="left")
    ft.add_column("quantity")
    ft.add_column("value", justify="right")
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
    ft.add_row(f"days for {t['tokens']:.3g} tokens", f"{t['days']:,.1f}")
    ft.add_row("GPU-hours", f"{t['gpu_hours']:,.0f}")
    ft.add_row("energy (GPU TDP)", f"{t['energy_mwh']:,.1f} MWh")
    c = out["cost"]
    if c["usd"] is not None:
        ft.add_row("cost", f"${c['usd']:,.0f} at ${c['usd_per_gpu_hour']:.2f}/GPU-h ({c['price']})")
        ft.add_row("$ per million tokens", f"{c['usd_per_million_tokens']:.3f}")
    r = out["rules_of_thumb"]
    ft.add_row("[dim]rule of thumb: 20 B/param state[/]",
               f"[dim]{r['state_bytes_20_per_param'] / 1e12:.2f} TB → ≥ {r['min_gpus_for_state']:,} GPUs[/]")
    con.print(ft)


def print_inference(con: Console, out: dict[str, Any]) -> None:
    con.print(
        f"[bold]{out['model']}[/] serving on {out['gpus']} × {out['gpu']}: batch {out['batch']} × "
        f"context {out['context']:,}, weights {out['weight_dtype']}, KV cache {out['kv_dtype']}"
    )
    con.print(memory_table(out["memory"], "Per-GPU inference memory"))
