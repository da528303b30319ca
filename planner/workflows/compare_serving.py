"""Serving procurement comparison: every SKU × price option of a serving scenario side by side, each with the
cheapest fleet on that SKU alone that serves the scenario's traffic within its SLOs; the mix of SKUs the fleet
search finds when it is cheaper than any one SKU; cost against request rate; throughput against latency per SKU.

A replica type's capacity does not depend on its price or on the request rate (planner.search.serving), so the
candidates are found once for every SKU, at a placeholder price. A price option only reprices its SKU's
candidates, and a request rate only re-runs the selection and the pools' re-simulation: both are
`cheapest_fleet`, the selection `planner serve` makes, so a row is the fleet `planner serve` finds for the
scenario pinned to that SKU (`hardware.skus`) and price (`pricing.kind`, `pricing.provider`).

`compare_serving(scenario)` returns a `ServingCompareResult`: the rows as a pandas frame (and a request-rate
sweep's rows when asked), and the `ServingComparison` that made them, which traces cost against request rate
(`sweep`) and throughput against latency (`latency_curves`) for the plots.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from planner.errors import InputError, expect
from planner.pricing import hourly_rate, select_price
from planner.report.text import gib
from planner.scenario import Pricing, read_yaml
from planner.schema import GIB, GpuSku, ModelSpec
from planner.search.serving import Candidate, ServingPlan, cheapest_fleet, serving_candidates
from planner.workflows.compare import DEFAULT_KINDS, KIND_ORDER, PriceOption, SweptRows, price_options
from planner.workloads.serving.engines import resolve_engine
from planner.workloads.serving.evaluation import default_requests, max_concurrency, replica_model, workspace_bytes
from planner.workloads.serving.scenario import ServingScenario, is_serving_scenario, load_serving_scenario
from planner.workloads.serving.simulation import analytic_bounds, poisson_arrivals, simulate

__all__ = ["COLUMNS", "CURVE_COLUMNS", "DEFAULT_QPS_FACTORS", "MIX", "ServingCompareResult", "ServingComparison",
           "compare_serving", "is_serving_file"]

# The request rates of the cost-against-QPS trace when the scenario gives no `serving.pareto_qps`: these
# multiples of its rate (the ones `planner serve --pareto` uses).
DEFAULT_QPS_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
# A class no replica of a SKU serves within the SLOs is shown at this share of the replica's analytic throughput:
# requests rarely overlap, so its latencies are the best the replica does.
LIGHT_LOAD = 0.05
MIX = "mix"  # the `sku` of the row whose fleet mixes SKUs
Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what is happening)


def is_serving_file(path: str | Path) -> bool:
    """Whether a scenario file is a serving scenario (a `serving:` block and no training `job:`)."""
    data = read_yaml(Path(path))
    return is_serving_scenario(data) and "job" not in data


def scenario_option(gpu: GpuSku, pricing: Pricing) -> PriceOption | None:
    """The price `planner serve` gives the SKU under the scenario's pricing, as a price option; None when the
    catalog has none of that kind."""
    try:
        rate = hourly_rate(gpu, pricing)
    except InputError:
        return None
    if pricing.usd_per_gpu_hour and gpu.name in pricing.usd_per_gpu_hour:
        return PriceOption(gpu.name, "override", "scenario", rate, pricing, "", None)
    price = select_price(gpu, pricing.kind, pricing.provider)
    assert price is not None  # hourly_rate found it
    narrowed = pricing.model_copy(update={"provider": price.provider})
    return PriceOption(gpu.name, price.kind, price.provider, rate, narrowed, price.date, price.usd_per_gpu)


def repriced(cands: Sequence[Candidate], option: PriceOption) -> list[Candidate]:
    """The candidates at the option's hourly rate (a replica costs its GPUs at that rate)."""
    rate = option.rate.usd_per_gpu_hour
    return [replace(c, usd_per_hour=rate * c.gpus, price_label=option.rate.label) for c in cands]


def fleet_text(plan: ServingPlan, *, skus: bool) -> str:
    """'2 × tp1 b256', or with `skus` '1 × a100-80gb tp1 b256 + 2 × h100-sxm tp1 b256'."""
    return " + ".join(f"{p.replicas} × " + (p.candidate.label if skus else
                                             f"tp{p.candidate.tp} b{p.candidate.batch_limit}") for p in plan.pools)


# --------------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------------


class ServingComparison:
    """Every (SKU, price option) of one serving scenario, the candidates found once; rows at any request rate."""

    def __init__(self, scenario: ServingScenario, *, kinds: Sequence[str] = DEFAULT_KINDS,
                 progress: Progress | None = None) -> None:
        from planner.catalog import load_gpus
        from planner.scenario import resolve_model

        bad = [k for k in kinds if k not in KIND_ORDER]
        if bad or not kinds:
            raise InputError(f"--kinds: {', '.join(bad) or '(none)'}: use {', '.join(KIND_ORDER)}")
        say = progress or (lambda _d, _t, _m: None)
        s = self.scenario = scenario
        self.kinds = tuple(kinds)
        self.model: ModelSpec = resolve_model(s.model)
        names = s.hardware.skus
        gpus = ([*load_gpus().values(), *s.custom_gpus()] if names == "all"
                else list({(g := s.gpu(n, "hardware.skus")).name: g for n in names}.values()))
        offers = {g.name: price_options(g, s.pricing, self.kinds) for g in gpus}
        self.unpriced = [g.name for g in gpus if not offers[g.name]]
        own = {g.name: scenario_option(g, s.pricing) for g in gpus}
        self.gpus = {g.name: g for g in gpus if offers[g.name] or own[g.name]}
        if not any(offers.values()):
            raise InputError(f"pricing: no SKU of the scenario has a {' / '.join(self.kinds)} price in the catalog")
        self.options = [o for g in gpus for o in offers[g.name]]
        self.own = {n: o for n, o in own.items() if o is not None and n in self.gpus}
        # every SKU at $1/GPU-hour: candidates without a price lookup (each option prices them)
        placeholder = s.model_copy(update={
            "hardware": s.hardware.model_copy(update={"skus": list(self.gpus)}),
            "pricing": s.pricing.model_copy(update={"usd_per_gpu_hour": dict.fromkeys(self.gpus, 1.0)})})
        say(0, 0, f"finding the capacity of every replica type on {len(self.gpus)} SKUs")
        cands, notes = serving_candidates(placeholder, self.model)
        self.candidates = {n: [c for c in cands if c.sku == n] for n in self.gpus}
        self.notes = {n.partition(": ")[0]: n.partition(": ")[2] for n in notes}
        self.classes = s.serving.traffic.resolved_classes()
        self._reasons: dict[tuple[str, float], str] = {}

    # ----------------------------------------------------------------------------------------

    @property
    def qps(self) -> float:
        return self.scenario.serving.traffic.qps

    @property
    def skus(self) -> list[str]:
        """Every SKU of the scenario, in its order (priced ones first)."""
        return list(self.gpus) + [n for n in self.unpriced if n not in self.gpus]

    @property
    def mixes(self) -> bool:
        """Whether the scenario allows a fleet of several SKUs and has two priced under its own pricing."""
        return self.scenario.serving.search.mix and len(self.own) > 1

    def class_qps(self, qps: float) -> list[float]:
        return [qps * c.share for c in self.classes]

    def default_rates(self) -> list[float]:
        """The request rates of the cost-against-QPS trace: `serving.pareto_qps`, else DEFAULT_QPS_FACTORS × qps."""
        sv = self.scenario.serving
        return sorted(sv.pareto_qps or [sv.traffic.qps * f for f in DEFAULT_QPS_FACTORS])

    def fleet(self, sku: str, option: PriceOption, qps: float) -> ServingPlan | None:
        """The cheapest fleet on this SKU alone at this price and rate (None: see `reason`)."""
        s = self.scenario.model_copy(update={"pricing": option.pricing})
        return cheapest_fleet(s, repriced(self.candidates[sku], option), self.class_qps(qps), mix=False)

    def mix_fleets(self, qps: float) -> tuple[ServingPlan | None, ServingPlan | None]:
        """(the cheapest fleet over every SKU, the cheapest on one SKU), each SKU at the scenario's pricing."""
        cands = [c for n, o in self.own.items() for c in repriced(self.candidates[n], o)]
        q = self.class_qps(qps)
        return cheapest_fleet(self.scenario, cands, q, mix=True), cheapest_fleet(self.scenario, cands, q, mix=False)

    # ----------------------------------------------------------------------------------------

    def rows(self, qps: float | None = None, *, sweep: bool = False) -> list[dict[str, Any]]:
        """One row per (SKU, price option) at `qps` (default the scenario's), cheapest first, then the mix row
        when a mix of SKUs is cheaper than any one of them at the scenario's pricing. `sweep`: one row per SKU
        at the scenario's pricing, and the mix row whatever it costs (the cost-against-QPS trace)."""
        q = self.qps if qps is None else qps
        options = list(self.own.values()) if sweep else self.options
        found: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        for i, o in enumerate(options):
            row = self.price_columns(o) | {"qps": q}
            plan = self.fleet(o.sku, o, q)
            if plan is None:
                found.append(((1, i), row | {"feasible": False, "reason": self.reason(o.sku, q)}))
            else:
                found.append(((0, plan.usd_per_hour, i), row | self.plan_columns(plan, skus=False)))
        if self.mixes:
            mix, single = self.mix_fleets(q)
            if mix is not None and (sweep or (len(mix.skus) > 1 and single is not None
                                              and mix.usd_per_hour < single.usd_per_hour)):
                row = self.mix_columns(mix) | {"qps": q} | self.plan_columns(mix, skus=True)
                row["mix_saving"] = 1.0 - mix.usd_per_hour / single.usd_per_hour if single else None
                found.append(((0, mix.usd_per_hour, -1), row))
        found.sort(key=lambda kr: kr[0])
        out = [r for _, r in found]
        best = next((r["usd_per_hour"] for r in out if r["feasible"]), None)
        for r in out:
            r["gap"] = r["usd_per_hour"] / best - 1.0 if r["feasible"] and best else None
        if not sweep:
            kinds = ", ".join(self.kinds)
            out += [{"sku": n, "qps": q, "feasible": False, "reason": f"no {kinds} price in the catalog"}
                    for n in self.unpriced]
        return out

    def price_columns(self, o: PriceOption) -> dict[str, Any]:
        return {"sku": o.sku, "pricing": o.label, "kind": o.kind, "provider": o.provider,
                "usd_per_gpu_hour": o.rate.usd_per_gpu_hour, "price_date": o.date, "price_source": o.rate.source,
                "capacity_gib": self.gpus[o.sku].hbm_bytes / GIB}

    def mix_columns(self, plan: ServingPlan) -> dict[str, Any]:
        p = self.scenario.pricing
        rates = {c.sku: c.price_label for c in (pool.candidate for pool in plan.pools)}
        return {"sku": MIX, "pricing": f"the scenario's ({p.kind})", "kind": p.kind, "provider": p.provider,
                "price_source": "; ".join(f"{k}: {v}" for k, v in rates.items())}

    def plan_columns(self, plan: ServingPlan, *, skus: bool) -> dict[str, Any]:
        pools = plan.pools
        one = pools[0].candidate if len(pools) == 1 else None
        return {
            "feasible": True, "fleet": fleet_text(plan, skus=skus), "tp": one.tp if one else None,
            "batch_limit": one.batch_limit if one else None, "replicas": sum(p.replicas for p in pools),
            "gpus": plan.gpus, "usd_per_hour": plan.usd_per_hour,
            "usd_per_million_input_tokens": plan.usd_per_million_input_tokens,
            "usd_per_million_output_tokens": plan.usd_per_million_output_tokens,
            "usd_per_million_tokens": plan.usd_per_million_tokens,
            "percentile": self.scenario.serving.slo.percentile,
            "ttft_ms": max(p.ttft_slo_ms for p in pools), "tpot_ms": max(p.tpot_slo_ms for p in pools),
            "headroom": min(p.headroom for p in pools), "slo_met": plan.slo_met,
            "pools": [p.to_dict(plan.class_names) for p in pools],
        }

    # ----------------------------------------------------------------------------------------
    # why a SKU has no fleet

    def reason(self, sku: str, qps: float) -> str:
        """Why no fleet on this SKU alone serves `qps` within the SLOs, with the numbers (price-independent)."""
        key = (sku, qps)
        if key not in self._reasons:
            self._reasons[key] = self._reason(sku, qps)
        return self._reasons[key]

    def _reason(self, sku: str, qps: float) -> str:
        cands = self.candidates[sku]
        if not cands:
            return self.notes.get(sku) or self.fit_reason(self.gpus[sku])
        for k in range(len(self.classes)):
            if all(x.rates[k] <= 0 for x in cands):
                return self.slo_reason(cands, k)
        return self.inventory_reason(sku, qps)

    def fit_reason(self, g: GpuSku) -> str:
        """No replica of this SKU holds the weights and one request: at the largest TP the search may use."""
        m, sv = self.model, self.scenario.serving
        node = self.scenario.hardware.gpus_per_node or g.node_size
        tps = [tp for tp in sorted(set(sv.search.tp)) if tp <= node and m.heads % tp == 0]
        if not tps:
            return (f"no tp of {sorted(set(sv.search.tp))} divides the model's {m.heads} heads within "
                    f"{node} GPUs per node")
        tp = tps[-1]
        sm = replica_model(m, g, tp=tp, weight_dtype=sv.weight_dtype, kv_dtype=sv.kv_dtype, seff=sv.efficiency)
        base = resolve_engine(sv.engine, g)
        eng = replace(base, max_num_seqs=min(sv.search.batch_limits or [base.max_num_seqs]))
        pool = sm.kv_pool_tokens(eng)
        if pool <= 0:
            return (f"does not fit: at tp{tp} weights {gib(sm.weight_bytes)} and workspace and reserve "
                    f"{gib(workspace_bytes(sm, eng))} per GPU, {gib(g.hbm_bytes)} on the GPU "
                    f"({eng.memory_fraction:.0%} for {eng.name})")
        need = max(c.input.expected() + c.output.expected() for c in self.classes)
        return (f"does not fit: at tp{tp} the KV cache holds {pool:,} tokens per replica, a request needs "
                f"{need:,.0f}")

    def slo_reason(self, cands: Sequence[Candidate], k: int) -> str:
        """No replica of the SKU serves class k within the SLOs: its fastest one's latencies at light load."""
        cls, slo = self.classes[k], self.scenario.serving.slo
        hit = cls.prefix_hit_rate or 0.0
        mean_in, mean_out = cls.input.expected(), cls.output.expected()
        bounds = [analytic_bounds(c.model, c.engine, mean_in, mean_out, prefix_hit=hit) for c in cands]
        who = f" for class {cls.name!r}" if len(self.classes) > 1 else ""
        if all(b.max_batch < 1 for b in bounds):
            return f"does not fit{who}: a request of {mean_in + mean_out:,.0f} tokens exceeds every replica's KV cache"
        t, b = min(((i, b) for i, b in enumerate(bounds) if b.max_batch >= 1),
                   key=lambda ib: max(ib[1].ttft_min_s * 1e3 / slo.ttft_ms, ib[1].tpot_min_s * 1e3 / slo.tpot_ms))
        c = cands[t]
        rng = np.random.default_rng([self.scenario.serving.search.seed, k])
        n = self.scenario.serving.search.requests
        rate = LIGHT_LOAD * b.max_requests_per_s
        sim = simulate(c.model, c.engine, cls.input.sample(n, rng), cls.output.sample(n, rng),
                       arrivals=poisson_arrivals(rate, n, rng), prefix_hit=hit)
        pct = slo.percentile
        # a metric no request reached (none finished) falls back to the replica's analytic best
        got = [(name.upper(), v if math.isfinite(v := sim.at(name, pct)) else floor_s * 1e3, limit)
               for name, floor_s, limit in (("ttft", b.ttft_min_s, slo.ttft_ms), ("tpot", b.tpot_min_s, slo.tpot_ms))]
        missed = [g for g in got if g[1] > g[2]]
        parts = [f"{name} p{pct:g} {v:,.1f} ms (SLO {limit:,.4g} ms, {v / limit - 1:+.0%})"
                 for name, v, limit in missed or got]
        if missed:
            return (f"misses the SLO{who}: {', '.join(parts)} on its fastest replica ({c.label}) at "
                    f"{LIGHT_LOAD:.0%} load")
        return (f"no request rate within the SLOs{who} in the capacity search, though its fastest replica "
                f"({c.label}) at {LIGHT_LOAD:.0%} load shows {', '.join(parts)}")

    def inventory_reason(self, sku: str, qps: float) -> str:
        """Every class is servable, so the caps bind: the GPUs the fleet needs without them."""
        s = self.scenario
        hw = s.hardware
        cap = None
        if isinstance(hw.max_gpus, dict):
            caps = {s.gpu(k, "hardware.max_gpus").name: v for k, v in hw.max_gpus.items()}
            cap = f"inventory {caps[sku]:,}" if sku in caps else None
        elif isinstance(hw.max_gpus, int):
            cap = f"max_gpus {hw.max_gpus:,}"
        lifted = s.model_copy(update={"hardware": hw.model_copy(update={"max_gpus": None})})
        o = self.own.get(sku) or next(o for o in self.options if o.sku == sku)
        plan = cheapest_fleet(lifted, repriced(self.candidates[sku], o), self.class_qps(qps), mix=False)
        if plan is not None and cap is not None:
            return f"needs {plan.gpus:,} GPUs, {cap}"
        return (f"needs more than {s.serving.search.max_replicas:,} replicas of one type "
                f"(serving.search.max_replicas)")

    # ----------------------------------------------------------------------------------------
    # frames and traces

    def frame(self, qps: float | None = None) -> pd.DataFrame:
        return to_frame(self.rows(qps))

    def sweep(self, rates: Sequence[float] = (), progress: Progress | None = None) -> pd.DataFrame:
        """Cost against request rate: at each rate (default `default_rates()`), the cheapest fleet on each SKU
        at the scenario's pricing and the mix, in rate order."""
        say = progress or (lambda _d, _t, _m: None)
        points = sorted(rates) if rates else self.default_rates()
        for q in points:
            if not (q > 0 and math.isfinite(q)):
                raise InputError(f"--qps: request rates are positive finite numbers, got {q!r}")
        out: list[dict[str, Any]] = []
        for n, q in enumerate(points):
            out += self.rows(q, sweep=True)
            say(n + 1, len(points), "tracing cost against request rate")
        return to_frame(out)

    def best_tp(self, sku: str) -> int | None:
        """The TP of the SKU's fleet at the scenario's rate (its largest pool), else of its replica type with the
        most capacity per GPU; None when no replica of the SKU holds the model."""
        cands = self.candidates[sku]
        if not cands:
            return None
        plan = cheapest_fleet(self.scenario, cands, self.class_qps(self.qps), mix=False)  # at the placeholder price
        if plan is not None:
            return max(plan.pools, key=lambda p: p.gpus).candidate.tp
        shares = [c.share for c in self.classes]
        return max(cands, key=lambda c: sum(r * sh for r, sh in zip(c.rates, shares, strict=True)) / c.gpus).tp

    def latency_curves(self, progress: Progress | None = None) -> pd.DataFrame:
        """Throughput against latency per SKU: at each SKU's best TP and its largest batch limit, a closed loop of
        1, 2, 4, … clients up to what the KV cache holds, with the scenario's traffic mix of request sizes. Output
        tokens/s per GPU (the replica's over its TP) and TTFT and TPOT at the SLO percentile (CURVE_COLUMNS)."""
        say = progress or (lambda _d, _t, _m: None)
        sv = self.scenario.serving
        shares = np.array([c.share for c in self.classes])
        mean_in = float(shares @ [c.input.expected() for c in self.classes])
        mean_out = float(shares @ [c.output.expected() for c in self.classes])
        hit = float(shares @ [c.prefix_hit_rate or 0.0 for c in self.classes])
        rows: list[dict[str, Any]] = []
        for n, sku in enumerate(self.gpus):
            tp = self.best_tp(sku)
            if tp is None:
                continue
            c = max((c for c in self.candidates[sku] if c.tp == tp), key=lambda c: c.batch_limit)
            pool = c.model.kv_pool_tokens(c.engine)
            most = max(1, max_concurrency(c.model, c.engine, mean_in, mean_out, pool))
            clients = sorted({2 ** i for i in range(int(math.log2(most)) + 1)} | {most})
            for conc in clients:
                rng = np.random.default_rng([sv.search.seed, conc])
                size = default_requests(conc, None, mean_out)
                which = rng.choice(len(self.classes), size=size, p=shares)
                ins, outs = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64)
                for k, cls in enumerate(self.classes):
                    mask = which == k
                    ins[mask] = cls.input.sample(int(mask.sum()), rng)
                    outs[mask] = cls.output.sample(int(mask.sum()), rng)
                sim = simulate(c.model, c.engine, ins, outs, concurrency=conc, kv_tokens=pool, prefix_hit=hit)
                pct = sv.slo.percentile
                rows.append({
                    "sku": sku, "tp": tp, "batch_limit": c.batch_limit, "concurrency": conc,
                    "output_tokens_per_s_per_gpu": sim.output_tokens_per_s / c.gpus,
                    "requests_per_s": sim.requests_per_s, "percentile": pct,
                    "ttft_ms": sim.at("ttft", pct), "tpot_ms": sim.at("tpot", pct),
                })
            say(n + 1, len(self.gpus), "tracing throughput against latency")
        return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


# --------------------------------------------------------------------------------------------
# Frames and the result
# --------------------------------------------------------------------------------------------

# The frame's columns. fleet: the pools as 'replicas × [sku] tpN bB'; tp and batch_limit: the replica type's when
# the fleet has one (else see fleet and pools); ttft_ms and tpot_ms: the worst pool's at the SLO percentile
# (`percentile`), re-simulated at its load; headroom: the least of the pools' capacity over load − 1; gap: $/hour
# over the cheapest row's − 1; mix_saving: the mix row's $/hour below the best single SKU's at the same pricing;
# pools: every pool (JSON only).
COLUMNS = ("sku", "pricing", "kind", "provider", "usd_per_gpu_hour", "price_date", "price_source", "capacity_gib",
           "qps", "feasible", "fleet", "tp", "batch_limit", "replicas", "gpus", "usd_per_hour",
           "usd_per_million_input_tokens", "usd_per_million_output_tokens", "usd_per_million_tokens", "percentile",
           "ttft_ms", "tpot_ms", "headroom", "slo_met", "gap", "mix_saving", "reason", "pools")
CURVE_COLUMNS = ("sku", "tp", "batch_limit", "concurrency", "output_tokens_per_s_per_gpu", "requests_per_s",
                 "percentile", "ttft_ms", "tpot_ms")


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.astype({"tp": "Int64", "batch_limit": "Int64", "replicas": "Int64", "gpus": "Int64",
                      "feasible": bool, "slo_met": "boolean"})


@dataclass
class ServingCompareResult(SweptRows):
    """Every option at the scenario's request rate (`base`), and at each rate of a sweep (`sweep`)."""

    comparison: ServingComparison
    base: pd.DataFrame
    sweep: pd.DataFrame | None = None
    swept: str | None = None  # "qps" with a sweep
    _trace: pd.DataFrame | None = field(default=None, repr=False)

    def cost_curve(self) -> pd.DataFrame:
        """The cost-against-QPS trace: the sweep when one was asked for, else at the default rates."""
        if self.sweep is not None:
            return self.sweep
        if self._trace is None:
            self._trace = self.comparison.sweep()
        return self._trace


def compare_serving(
    scenario: ServingScenario | str | Path,
    *,
    kinds: Sequence[str] = DEFAULT_KINDS,
    qps: Sequence[float] = (),
    progress: Progress | None = None,
) -> ServingCompareResult:
    """Compare GPU SKUs and price options for a serving scenario (`planner compare SERVING.yaml`).

    Args:
        scenario: a ServingScenario or the path of a YAML file with a `serving:` block.
        kinds: the catalog price kinds to compare (default on-demand, reserved-1y, reserved-3y, purchase).
        qps: request rates to sweep (the rows at each, each SKU at the scenario's pricing, and the mix).

    Returns:
        ServingCompareResult: `base`, one row per (SKU, price option) with the cheapest fleet on that SKU alone
        (fleet, tp, batch_limit, replicas, GPUs, $/hour, $ per million input and output tokens, TTFT and TPOT at
        the SLO percentile, headroom) or the reason none exists, and the `mix` row when a mix of SKUs beats every
        single SKU at the scenario's pricing; `sweep` with `qps`; `comparison` for `sweep()` and
        `latency_curves()`.

    Raises:
        InputError: a bad scenario, kind or rate (exit 2).
    """
    say = progress or (lambda _d, _t, _m: None)
    expect(scenario, (ServingScenario, str, Path), "scenario")
    s = load_serving_scenario(scenario) if isinstance(scenario, (str, Path)) else scenario
    cmp = ServingComparison(s, kinds=kinds, progress=say)
    say(0, 0, "choosing a fleet per option")
    base = cmp.frame()
    if not qps:
        return ServingCompareResult(cmp, base)
    return ServingCompareResult(cmp, base, cmp.sweep(qps, progress=say), "qps")
