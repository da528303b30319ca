"""`planner compare SERVING.yaml`: every (SKU, price option) row is the fleet `planner serve` finds with the
scenario pinned to that SKU and price; the mix row is `planner serve`'s fleet and beats the best single SKU on the
shipped Mélange scenario; rows without a fleet say why with numbers that `planner serve` confirms; cost never
falls as the request rate rises; the CLI's formats, exit statuses, plots and HTML page (in headless Chromium)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_compare import chromium, headless  # noqa: F401 - the session fixture and its runner
from typer.testing import CliRunner

from planner import InfeasibleError, compare_serving, serve
from planner.cli import app
from planner.workflows.compare_serving import COLUMNS, ServingCompareResult
from planner.workloads.serving.scenario import ServingScenario, load_serving_scenario

runner = CliRunner()
MIX = Path(__file__).parent.parent / "scenarios" / "serving" / "mix.yaml"
# Llama-3.1-8B on 4,000-token prompts within TTFT p99 250 ms: an H100 prefills one in ~60 ms, an A100 (no fp8
# tensor cores) in ~400 ms; two H100s at most; the L4 has no on-demand price in the catalog.
SMALL = """name: small-serving
model: llama-3.1-8b
hardware: {skus: [a100-80gb, h100-sxm, l4], max_gpus: {h100-sxm: 2}}
serving:
  traffic: {qps: 4, input: 4000, output: 100}
  slo: {ttft_ms: 250, tpot_ms: 40}
  weight_dtype: fp8
  kv_dtype: fp8
  search: {tp: [1], batch_limits: [16, 32]}
"""


def pinned(s: ServingScenario, row: dict[str, Any], **hardware: Any) -> ServingScenario:
    """The scenario restricted to the row's SKU at the row's price, as a user would write it for `planner serve`."""
    pricing = s.pricing.model_copy(update={"kind": row["kind"], "provider": row["provider"]})
    hw = s.hardware.model_copy(update={"skus": [row["sku"]], **hardware})
    return s.model_copy(update={"pricing": pricing, "hardware": hw})


def fleet(pools: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(p["sku"], p["tp"], p["batch_limit"], p["replicas"]) for p in pools]


def assert_same_fleet(row: dict[str, Any], plan: Any) -> None:
    assert fleet(row["pools"]) == fleet([p.to_dict(plan.class_names) for p in plan.pools])
    assert row["gpus"] == plan.gpus
    assert row["usd_per_hour"] == pytest.approx(plan.usd_per_hour, rel=1e-12)
    assert row["usd_per_million_input_tokens"] == pytest.approx(plan.usd_per_million_input_tokens, rel=1e-12)
    assert row["usd_per_million_output_tokens"] == pytest.approx(plan.usd_per_million_output_tokens, rel=1e-12)
    assert row["ttft_ms"] == pytest.approx(max(p.ttft_ms["p99"] for p in plan.pools), rel=1e-12)
    assert row["tpot_ms"] == pytest.approx(max(p.tpot_ms["p99"] for p in plan.pools), rel=1e-12)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ServingScenario, ServingCompareResult]:
    path = tmp_path_factory.mktemp("serving") / "small.yaml"
    path.write_text(SMALL)
    s = load_serving_scenario(path)
    return path, s, compare_serving(s, kinds=["on-demand"])


@pytest.fixture(scope="module")
def mix() -> ServingCompareResult:
    return compare_serving(MIX, kinds=["on-demand"])


# --------------------------------------------------------------------------------------------
# rows against planner serve
# --------------------------------------------------------------------------------------------


def test_every_row_is_the_fleet_serve_finds_for_that_sku_and_price(small: Any) -> None:
    _, s, result = small
    df = result.base
    assert list(df.columns) == list(COLUMNS)
    assert set(df["sku"]) == {"a100-80gb", "h100-sxm", "l4"}
    assert df["feasible"].any() and not df["feasible"].all()
    for row in df[df["pricing"].notna()].to_dict(orient="records"):
        if not row["feasible"]:
            with pytest.raises(InfeasibleError):
                serve(pinned(s, row))
            continue
        plan = serve(pinned(s, row)).plan
        assert_same_fleet(row, plan)
        assert all(p.candidate.price_label.startswith(row["pricing"]) for p in plan.pools)
        assert row["tp"] == 1 and row["replicas"] == sum(p.replicas for p in plan.pools)
    ok = df[df["feasible"]]
    assert ok["usd_per_hour"].is_monotonic_increasing  # cheapest first
    assert ok["gap"].to_numpy() == pytest.approx(ok["usd_per_hour"] / ok["usd_per_hour"].iat[0] - 1)


def test_mix_row_is_serves_fleet_and_beats_the_best_single_sku(mix: ServingCompareResult) -> None:
    df = mix.base
    row = df[df["sku"] == "mix"].iloc[0].to_dict()
    solution = serve(MIX)
    assert_same_fleet(row, solution.plan)
    assert len({p["sku"] for p in row["pools"]}) == 2
    assert solution.best_single_sku is not None
    assert row["mix_saving"] == pytest.approx(1 - solution.plan.usd_per_hour / solution.best_single_sku.usd_per_hour)
    # the best single SKU at the scenario's pricing (each SKU's default on-demand price) is dearer
    own = {o.sku: o.label for o in mix.comparison.own.values()}
    singles = df[df.apply(lambda r: own.get(r["sku"]) == r["pricing"], axis=1) & df["feasible"]]
    assert set(singles["sku"]) == {"a100-80gb", "h100-sxm"}
    assert row["usd_per_hour"] < singles["usd_per_hour"].min() == pytest.approx(solution.best_single_sku.usd_per_hour)
    # and each SKU's row at that price is `planner serve` pinned to it
    s = mix.comparison.scenario
    for single in singles.to_dict(orient="records"):
        assert_same_fleet(single, serve(pinned(s, single)).plan)


# --------------------------------------------------------------------------------------------
# rows without a fleet
# --------------------------------------------------------------------------------------------


def test_infeasible_rows_give_numbers_that_serve_confirms(small: Any) -> None:
    _, s, result = small
    df = result.base
    slow = df[df["sku"] == "a100-80gb"]
    assert not slow["feasible"].any() and slow["reason"].nunique() == 1
    reason = slow["reason"].iat[0]
    assert reason.startswith("misses the SLO: TTFT p99 ") and "(SLO 250 ms, +" in reason, reason
    ttft = float(reason.split("TTFT p99 ")[1].split(" ms")[0].replace(",", ""))
    assert ttft > 250
    assert df[df["sku"] == "l4"]["reason"].tolist() == ["no on-demand price in the catalog"]
    # ten times the traffic: the two H100s the inventory allows are too few, by the number the row gives
    busy = [r for r in result.comparison.rows(40.0) if r["sku"] == "h100-sxm"]
    assert busy and not any(r["feasible"] for r in busy)
    prefix, _, cap = busy[0]["reason"].partition(", ")
    assert prefix.startswith("needs ") and cap == "inventory 2", busy[0]["reason"]
    needed = int(prefix.split()[1].replace(",", ""))
    loud = s.model_copy(update={"serving": s.serving.model_copy(
        update={"traffic": s.serving.traffic.model_copy(update={"qps": 40.0})})})
    assert serve(pinned(loud, busy[0], max_gpus={"h100-sxm": needed})).plan.gpus == needed
    with pytest.raises(InfeasibleError):
        serve(pinned(loud, busy[0], max_gpus={"h100-sxm": needed - 1}))


# --------------------------------------------------------------------------------------------
# traces
# --------------------------------------------------------------------------------------------


def test_cost_never_falls_as_the_request_rate_rises(small: Any, mix: ServingCompareResult) -> None:
    _, _, result = small
    sweep = result.comparison.sweep([1.0, 4.0, 16.0, 64.0])
    h100 = sweep[sweep["sku"] == "h100-sxm"].sort_values("qps")
    feasible = h100["feasible"].to_numpy()
    assert feasible[0] and not feasible[-1]  # the sweep crosses the inventory
    assert (feasible[1:] <= feasible[:-1]).all()  # once the inventory is too small, it stays too small
    cost = h100.loc[h100["feasible"], "usd_per_hour"].to_numpy()
    assert (cost[1:] >= cost[:-1]).all() and cost[-1] > cost[0]
    curve = mix.cost_curve()  # the scenario's pareto_qps: 10, 30, 60, 120
    assert list(dict.fromkeys(curve["qps"])) == [10.0, 30.0, 60.0, 120.0]
    for _, c in curve.groupby("sku"):
        usd = c.sort_values("qps")["usd_per_hour"].to_numpy()
        assert (usd[1:] >= usd[:-1]).all()
    by_rate = curve.pivot_table(index="qps", columns="sku", values="usd_per_hour")
    assert (by_rate["mix"] <= by_rate[["a100-80gb", "h100-sxm"]].min(axis=1) + 1e-9).all()


def test_latency_curves_trade_throughput_for_latency(mix: ServingCompareResult) -> None:
    curves = mix.comparison.latency_curves()
    assert set(curves["sku"]) == {"a100-80gb", "h100-sxm"}
    for _, c in curves.groupby("sku"):
        c = c.sort_values("concurrency")
        assert c["concurrency"].iat[0] == 1 and c["tpot_ms"].is_monotonic_increasing
        assert c["output_tokens_per_s_per_gpu"].iat[-1] > 5 * c["output_tokens_per_s_per_gpu"].iat[0]


# --------------------------------------------------------------------------------------------
# CLI, plots, HTML
# --------------------------------------------------------------------------------------------


def test_cli_formats_and_exit_statuses(small: Any, tmp_path: Path) -> None:
    path, _, result = small
    out = tmp_path / "rows.json"
    r = runner.invoke(app, ["compare", str(path), "--kinds", "on-demand", "-f", "json", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())
    assert len(rows) == len(result.base)
    for row in rows:
        if row["feasible"]:
            assert {"sku", "pricing", "usd_per_gpu_hour", "qps", "fleet", "tp", "batch_limit", "replicas", "gpus",
                    "usd_per_hour", "usd_per_million_input_tokens", "usd_per_million_output_tokens", "percentile",
                    "ttft_ms", "tpot_ms", "headroom", "slo_met", "gap", "pools"} <= set(row) and "reason" not in row
        else:
            assert row["reason"] and "gpus" not in row
    csv = runner.invoke(app, ["compare", str(path), "--kinds", "on-demand", "-f", "csv"]).stdout
    assert csv.splitlines()[0] == ",".join(c for c in COLUMNS if c != "pools")
    md = runner.invoke(app, ["compare", str(path), "--kinds", "on-demand", "--qps", "2,4", "-f", "markdown"]).stdout
    assert "| qps | a100-80gb | h100-sxm | mix |" in md and "| 2 | — | 3.20 | 3.20 |" in md, md
    # exit 2: a bad key, a training flag, a bad rate; exit 1: nothing fits
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL.replace("tpot_ms: 40", "tpot_ms: -1"))
    for args, named in (([str(bad)], "serving.slo.tpot_ms"), ([str(path), "--deadline", "10"], "--deadline"),
                        ([str(path), "--qps", "0"], "--qps"), ([str(path), "--kinds", "rental"], "--kinds")):
        r = runner.invoke(app, ["compare", *args])
        assert r.exit_code == 2 and named in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.output
    big = tmp_path / "big.yaml"
    big.write_text(SMALL.replace("llama-3.1-8b", "llama-3.1-70b").replace("a100-80gb, h100-sxm, l4", "l40s"))
    r = runner.invoke(app, ["compare", str(big), "-f", "json"])
    assert r.exit_code == 1, r.output
    reasons = [row["reason"] for row in json.loads(r.stdout)]
    assert reasons and all(x.startswith("does not fit: at tp1 weights ") and "GiB" in x for x in reasons), reasons


@pytest.fixture(scope="module")
def report(small: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    path, _, result = small
    tmp = tmp_path_factory.mktemp("serving-report")
    html, plots = tmp / "report.html", tmp / "plots"
    r = runner.invoke(app, ["compare", str(path), "--kinds", "on-demand", "--plots", str(plots), "--html", str(html),
                            "-f", "csv"])
    assert r.exit_code == 0, r.output
    return html, plots, result.base


def test_plots_are_written(report: tuple[Path, Path, pd.DataFrame]) -> None:
    _, plots, _ = report
    names = ("throughput_latency", "cost_vs_qps")
    assert {p.name for p in plots.iterdir()} == {f"{n}.{e}" for n in names for e in ("png", "svg")}
    for n in names:
        assert (plots / f"{n}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert ET.parse(plots / f"{n}.svg").getroot().find(".//{http://www.w3.org/2000/svg}path") is not None


def test_html_report_renders_in_chromium(report: tuple[Path, Path, pd.DataFrame], chromium: str,  # noqa: F811
                                         tmp_path: Path) -> None:
    html, _, df = report
    text = html.read_text()
    assert "http://" not in text.replace("http://www.w3.org", "") and "<script" not in text
    assert "ttft_ms: 250" in text  # the scenario travels with it
    dom = headless(chromium, tmp_path / "profile", "--dump-dom", html.resolve().as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    table = page[page.index('<div id="comparison">'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr") == len(df) + 1  # header and one row per option
    assert '<div id="sweep">' in page and page.count("<img") == 2


def test_a_mixture_of_experts_comparison_carries_the_serving_band() -> None:
    """The table's footnotes say what `planner serve` says of an MoE model: the published MoE runs' error band."""
    from planner.report.serving_compare import notes

    moe = ServingScenario.model_validate({
        "name": "moe-serving", "model": "gpt-oss-20b", "hardware": {"skus": ["b200"], "max_gpus": 2},
        "serving": {"traffic": {"qps": 2, "input": 1000, "output": 100}, "slo": {"ttft_ms": 2000, "tpot_ms": 100},
                    "weight_dtype": "fp4", "kv_dtype": "fp8", "search": {"tp": [1], "batch_limits": [16]}},
    })
    r = compare_serving(moe, kinds=["on-demand"])
    assert any(n.startswith("extrapolated: mixture-of-experts model") for n in notes(r.comparison, r.base))
    dense = compare_serving(load_serving_scenario(MIX), kinds=["on-demand"])
    assert not any("extrapolated" in n for n in notes(dense.comparison, dense.base))
