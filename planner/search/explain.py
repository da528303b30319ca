"""Why no plan exists, and which limits shape the optimum, in sentences with the numbers that decide.

Infeasibility: memory (the smallest footprint of any legal layout against the SKU's capacity), the
fastest plan within the inventory against the deadline, the GPUs a deadline needs once the caps are
lifted, the CP-SAT core of limits that cannot hold together, and what lifting each would give.
Binding limits: each constraint group switched off in turn, and memory where a faster layout exists on
the chosen SKU and GPU count.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from planner.report.text import days, gib, layout_text, usd
from planner.search.candidates import JobCandidates, budget_cents, deadline_seconds, microseconds
from planner.search.cpsat import Selection, Selector, value_of
from planner.search.problem import DEFAULT_MAX_GPUS, SkuOption


def describe(c: JobCandidates, k: int) -> str:
    """'1,024 × h100-sxm (TP8 ...)' for row k of a job's candidate table."""
    return f"{int(c.table.gpus[k]):,} × {c.table.sku[k]} ({layout_text(c.layout(k))})"


def describe_selection(sel: Selector, s: Selection) -> str:
    parts = [(f"{c.job.name}: " if len(sel.cands) > 1 else "") + describe(c, k)
             for c, k in zip(sel.cands, s.picks, strict=True)]
    return f"{usd(s.cost_cents / 100)} in {days(s.time_s)} on " + "; ".join(parts)


def cap_label(sku: SkuOption) -> str:
    """'h100-sxm inventory 512', or the price offer's size where that is the cap."""
    assert sku.inventory is not None
    if sku.rate.max_gpus is not None and sku.inventory == sku.rate.max_gpus:
        return f"{sku.name} inventory {sku.inventory:,} (the most its price, {sku.rate.label}, rents together)"
    return f"{sku.name} inventory {sku.inventory:,}"


def group_label(sel: Selector, name: str) -> str:
    """'the 30-day deadline of gpt3', 'the $5,000 budget', 'the h100-sxm inventory (512)', ..."""
    p = sel.problem
    kind, _, what = name.partition(":")
    if kind == "deadline":
        job = next(c.job for c in sel.cands if c.job.name == what)
        return f"the {job.deadline_days:g}-day deadline of {what}"
    if kind == "budget":
        return f"the {usd((budget_cents(p.budget_usd) or 0) / 100)} budget"
    if kind == "inventory":
        sku = next(s for s in p.skus if s.name == what)
        return f"the {cap_label(sku)}"
    if kind == "max_gpus":
        return f"max_gpus ({p.max_gpus:,})"
    return f"min_gpus ({p.min_gpus:,})"


def memory_lines(c: JobCandidates) -> list[str]:
    """Where memory rules a SKU out: its smallest per-GPU footprint over every legal layout."""
    out = []
    for s in c.stats:
        if s.fits or s.min_memory is None or s.min_memory_row is None:
            continue
        lay = c.job.workload.layout(c.grid, s.min_memory_row)
        out.append(f"{c.job.name}: nothing fits on {s.sku}: the smallest per-GPU memory of any legal layout is "
                   f"{gib(s.min_memory)} ({layout_text(lay)} on {lay.gpus:,} GPUs), above its {gib(s.capacity)}")
    return out


def explain_infeasible(sel: Selector, relaxed: Sequence[JobCandidates] | None) -> list[str]:
    """Why no plan exists, with numbers: memory, the fastest plan within the inventory, the GPUs a
    deadline needs, what lifting the deadline / budget / inventory would give, and the CP-SAT core.
    `relaxed` holds the same jobs' candidates with inventories and GPU caps lifted."""
    p = sel.problem
    reasons: list[str] = []
    for j, c in enumerate(sel.cands):
        t = c.table
        if len(t) == 0:
            if not any(s.legal for s in c.stats):
                node = max(s.node for s in p.skus_for(c.job))
                why = "; ".join(c.job.workload.fixed_field_problems(node)) or (
                    "no GPU count within the caps and the job's bounds is sold (whole nodes or hosts, or part of one)")
                reasons.append(f"{c.job.name}: no legal layout: {why}")
            else:
                reasons.append(f"{c.job.name}: no legal layout fits in GPU memory on any allowed SKU")
                reasons += memory_lines(c)
            continue
        limit = deadline_seconds(c.job.deadline_days)
        if limit is None:
            continue
        k = int(t.time_s.argmin())
        fastest = int(t.time_s[k])
        reasons.append(f"{c.job.name}: the fastest plan within the inventory takes {days(fastest)} on "
                       f"{describe(c, k)}; its deadline is {days(limit)}")
        if fastest <= limit or relaxed is None:
            continue
        reasons += memory_lines(c)  # a SKU that cannot hold the model may be the one that would be fast
        rt = relaxed[j].table
        ok = np.flatnonzero(rt.time_s <= limit)
        if len(ok):
            m = int(ok[np.lexsort((rt.cost_cents[ok], rt.gpus[ok]))[0]])
            have = [cap_label(s) for s in p.skus if s.inventory is not None]
            if p.max_gpus is not None:
                have.append(f"max_gpus {p.max_gpus:,}")
            reasons.append(f"{c.job.name}: meeting its deadline needs at least {int(rt.gpus[m]):,} GPUs: "
                           f"{describe(relaxed[j], m)} takes {days(int(rt.time_s[m]))}; the scenario allows "
                           + ", ".join(have))
        else:
            reasons.append(f"{c.job.name}: no plan meets its deadline even with {DEFAULT_MAX_GPUS:,} GPUs of any "
                           "allowed SKU")
    if any(len(c.table) == 0 for c in sel.cands):
        return reasons
    core = sel.core()
    if core:
        reasons.append("these limits cannot all hold together: " + ", ".join(group_label(sel, g) for g in core))
    deadlines = "deadlines" if sum(c.job.deadline_days is not None for c in sel.cands) > 1 else "deadline"
    lifts = [("deadline", f"the {deadlines} lifted"), ("inventory", "the inventory and GPU caps lifted")]
    kinds = {g.split(":")[0] for g in core}
    for kind, label in lifts:
        if kind in kinds and not sel.out_of_time():
            off = frozenset({kind, "max_gpus"} if kind == "inventory" else {kind})
            o = sel.lexicographic(("cost", "time", "rank"), off)
            if o.selection is not None:
                reasons.append(f"with {label}, the cheapest plan: " + describe_selection(sel, o.selection))
    budget = budget_cents(p.budget_usd)
    if budget is not None and "budget" in kinds and not sel.out_of_time():
        o = sel.lexicographic(("cost", "time", "rank"), frozenset({"budget"}))
        if o.selection is not None:
            reasons.append(f"the cheapest plan within every other limit costs {usd(o.selection.cost_cents / 100)}, "
                           f"above the {usd(budget / 100)} budget: " + describe_selection(sel, o.selection))
    return reasons


def slack(sel: Selector, name: str, best: Selection) -> str:
    """How far the plan is from a limit that does not bind."""
    kind, _, what = name.partition(":")
    p = sel.problem
    if kind == "deadline":
        j = next(i for i, c in enumerate(sel.cands) if c.job.name == what)
        used = int(sel.cands[j].table.time_s[best.picks[j]])
        return f"{days(used)} of {days(deadline_seconds(sel.cands[j].job.deadline_days) or 0)}"
    if kind == "budget":
        return f"{usd(best.cost_cents / 100)} of {usd((budget_cents(p.budget_usd) or 0) / 100)}"
    if kind == "inventory":
        used = sum(int(c.table.gpus[k]) for c, k in zip(sel.cands, best.picks, strict=True)
                   if c.table.sku[k] == what)
        return f"{used:,} GPUs used"
    return f"{best.gpus:,} GPUs used"


def explain_binding(sel: Selector, objectives: Sequence[str], best: Selection) -> list[str]:
    """Which limits shape the optimum: each group whose removal improves the first objective, with the
    plan it would allow, and memory where a faster layout exists on the chosen SKU and GPU count."""
    out: list[str] = []
    primary = objectives[0]
    v = value_of(best, primary)

    def fmt(x: int) -> str:
        return usd(x / 100) if primary == "cost" else days(x)

    for g in sel.group_names():
        if sel.out_of_time():
            break
        o = sel.lexicographic(objectives, frozenset({g}))
        label = group_label(sel, g)
        if o.selection is not None and value_of(o.selection, primary) < v:
            w = value_of(o.selection, primary)
            change = (w - v) / v
            out.append(f"{label} binds: without it the {primary} would be {fmt(w)} instead of {fmt(v)} "
                       f"({change:+.{1 if abs(change) >= 1e-3 else 3}%}): " + describe_selection(sel, o.selection))
        else:
            out.append(f"{label} does not bind ({slack(sel, g, best)})")
    p = sel.problem
    for c, k in zip(sel.cands, best.picks, strict=True):
        t = c.table
        sku = next(s for s in p.skus if s.name == t.sku[k])
        work = c.job.workload
        gpus = int(t.gpus[k])
        rows = np.flatnonzero(work.runnable(c.grid, sku.node, c.job.counts(p.cap(sku, c.job), [sku]))
                              & (c.grid.gpus == gpus))
        step_us = microseconds(work.step_seconds(c.grid, rows, sku.gpu, sku.node))
        f = int(np.argmin(step_us))
        if step_us[f] < int(t.step_us[k]):
            need, slower = int(c.memory[rows[f]]), int(t.step_us[k]) / step_us[f] - 1
            out.append(
                f"memory binds for {c.job.name} on {gpus:,} × {sku.name}: the fastest layout there "
                f"({layout_text(work.layout(c.grid, int(rows[f])))}) needs {gib(need)} of "
                f"{gib(sku.gpu.hbm_bytes)}; the plan's step is {slower:.1%} slower")
    return out
