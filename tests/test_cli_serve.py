"""`planner serve` end to end through the CLI: the one-deployment JSON, a scenario's fleet, exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planner.cli import app

runner = CliRunner()
ONE = ["serve", "--model", "llama-3.1-8b", "--gpu", "h100", "--tp", "1", "--concurrency", "4", "--input-len", "500",
       "--output-len", "50", "--requests", "60"]


def test_one_deployment_json_has_the_documented_fields() -> None:
    r = runner.invoke(app, [*ONE, "--weight-dtype", "fp8", "--kv-dtype", "fp8", "--format", "json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert set(d) == {"ttft_ms", "tpot_ms", "throughput", "memory", "max_concurrency"}
    assert set(d["ttft_ms"]) == set(d["tpot_ms"]) == {"p50", "p90", "p99"}
    assert set(d["memory"]["bytes"]) == {"weights", "kv_cache", "total"} and d["memory"]["fits"] is True
    # fp8 weights of an 8.0 B-parameter model (embeddings and head stay 16-bit): 8-10 GB
    assert 8e9 < d["memory"]["bytes"]["weights"] < 10e9
    assert d["throughput"]["output_tokens_per_s"] > 0 and d["max_concurrency"] >= 4


def test_tables_and_markdown_render() -> None:
    r = runner.invoke(app, ONE)
    assert r.exit_code == 0 and "TTFT" in r.output and "TPOT" in r.output
    r = runner.invoke(app, [*ONE, "--format", "markdown"])
    assert r.exit_code == 0 and "| ttft_ms.p99 |" in r.output


def test_bad_flags_exit_2_naming_the_flag() -> None:
    for extra, named in ((["--weight-dtype", "fp5"], "--weight-dtype"), (["--tp", "3"], "tp=3"),
                         (["--seed", "-1"], "--seed")):
        r = runner.invoke(app, [*ONE, *extra])
        assert r.exit_code == 2 and named in r.output and len(r.output.strip().splitlines()) == 1, r.output
    r = runner.invoke(app, ["serve", "--gpu", "h100"])
    assert r.exit_code == 2 and "--model" in r.output


def _scenario(tmp_path: Path, slo: str, qps: float = 2) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(f"""model: llama-3.1-8b
hardware: {{skus: [h100-sxm]}}
serving:
  traffic: {{qps: {qps}, input: 500, output: 60}}
  slo: {slo}
  weight_dtype: fp8
  search: {{tp: [1], batch_limits: [16], requests: 60}}
""")
    return path


def test_scenario_fleet_json_and_exit_statuses(tmp_path: Path) -> None:
    r = runner.invoke(app, ["serve", str(_scenario(tmp_path, "{ttft_ms: 2000, tpot_ms: 100}")), "--format", "json",
                            "--pareto", "--plots", str(tmp_path / "plots")])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    plan = out["plan"]
    assert plan["pools"][0]["sku"] == "h100-sxm" and plan["usd_per_hour"] > 0 and plan["slo_met"]
    # cost never falls as the request rate rises
    costs = [p["usd_per_hour"] for p in out["pareto"]]
    assert len(costs) == 5 and costs == sorted(costs)
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"capacity.png", "capacity.svg", "cost_vs_qps.png",
                                                                "cost_vs_qps.svg"}
    # a TPOT below one weight read of the model on any GPU: no fleet, exit 1 with the numbers
    r = runner.invoke(app, ["serve", str(_scenario(tmp_path, "{ttft_ms: 2000, tpot_ms: 0.5}"))])
    assert r.exit_code == 1 and "TPOT" in r.output and "ms" in r.output, r.output
    bad = _scenario(tmp_path, "{ttft_ms: 2000, tpot_ms: -1}")
    r = runner.invoke(app, ["serve", str(bad)])
    assert r.exit_code == 2 and str(bad) in r.output and "serving.slo.tpot_ms" in r.output, r.output


def test_schema_serving_flag_describes_the_serving_block() -> None:
    r = runner.invoke(app, ["schema", "--serving"])
    assert r.exit_code == 0, r.output
    schema = json.loads(r.output)
    assert schema["title"] == "planner serving scenario"
    assert set(schema["required"]) == {"model", "serving"}
    serving = schema["$defs"]["ServingSpec"]["properties"]
    assert {"traffic", "slo", "engine", "weight_dtype", "kv_dtype", "search"} <= set(serving)


# Disaggregated pools at 8 requests/s of 2,000-token prompts: one prefill H100 and three decode H100s, against four
# co-located H100 replicas (2 requests/s each) — the same GPUs at the same load.
DISAGG = ["serve", "--model", "llama-3.1-8b", "--gpu", "h100", "--input-len", "2000", "--output-len", "200",
          "--requests", "300", "--format", "json"]


def test_disaggregated_json_is_finite_and_decode_pool_has_lower_tpot_than_colocated() -> None:
    r = runner.invoke(app, [*DISAGG, "--qps", "8", "--prefill-replicas", "1", "--decode-replicas", "3"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert set(d) == {"ttft_ms", "tpot_ms", "throughput", "kv_transfer_ms", "link", "gpus", "memory"}
    assert set(d["ttft_ms"]) == set(d["tpot_ms"]) == {"p50", "p90", "p99"}
    assert set(d["throughput"]) == {"output_tokens_per_s", "requests_per_s"}
    assert d["gpus"] == 4 and d["link"] == "nvlink" and d["kv_transfer_ms"] > 0
    for pool in ("prefill", "decode"):
        mem = d["memory"][pool]
        assert mem["fits"] is True and 0 < mem["bytes"]["weights"] < mem["bytes"]["total"] <= 80e9
    # at 8 requests/s the pools carry the load: 8 x 200 output tokens/s within the simulation's noise
    assert 0.8 * 1600 < d["throughput"]["output_tokens_per_s"] < 1.2 * 1600
    colocated = runner.invoke(app, [*DISAGG, "--qps", "2"])
    assert colocated.exit_code == 0, colocated.output
    co = json.loads(colocated.output)
    # a decode replica runs no prefill, so no 2,000-token prompt stalls its steps (DistServe §2): lower TPOT p99
    assert d["tpot_ms"]["p99"] < 0.95 * co["tpot_ms"]["p99"]
    # a different decode SKU crosses the network; the hand-off is then slower than over NVLink
    r = runner.invoke(app, [*DISAGG, "--qps", "2", "--prefill-replicas", "1", "--decode-replicas", "1",
                            "--decode-gpu", "a100-80gb", "--decode-tp", "2"])
    assert r.exit_code == 0, r.output
    other = json.loads(r.output)
    assert other["link"] == "network" and other["gpus"] == 3 and other["kv_transfer_ms"] > d["kv_transfer_ms"]


def test_disaggregated_tables_render() -> None:
    args = [a for a in DISAGG if a not in ("--format", "json")] + ["--qps", "2", "--prefill-replicas", "1",
                                                                   "--decode-replicas", "1"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "TPOT" in r.output and "decode" in r.output and "nvlink" in r.output, r.output
    for fmt, cell in (("markdown", "| kv_transfer_ms |"), ("csv", "memory.decode.fits,")):
        r = runner.invoke(app, [*args, "--format", fmt])
        assert r.exit_code == 0 and cell in r.output, r.output


@pytest.mark.parametrize(("extra", "named"), [
    (["--qps", "2", "--prefill-replicas", "1"], "--decode-replicas"),
    (["--prefill-replicas", "1", "--decode-replicas", "1"], "--qps"),
    (["--qps", "2", "--prefill-replicas", "1", "--decode-replicas", "1", "--concurrency", "4"], "--concurrency"),
    (["--qps", "2", "--prefill-replicas", "1", "--decode-replicas", "1", "--pp", "2"], "--pp"),
    (["--qps", "2", "--decode-tp", "2"], "--decode-tp"),
    (["--qps", "2", "--decode-gpu", "a100"], "--decode-gpu"),
    (["--qps", "2", "--prefill-replicas", "1", "--decode-replicas", "1", "--decode-tp", "3"], "--decode-tp"),
    (["--qps", "2", "--prefill-replicas", "1", "--decode-replicas", "1", "--decode-gpu", "nope"], "--decode-gpu"),
    (["--qps", "2", "--prefill-replicas", "0", "--decode-replicas", "1"], "--prefill-replicas"),
    (["--qps", "2", "--prefill-replicas", "1", "--decode-replicas", "inf"], "--decode-replicas"),
    (["--qps", "2", "--prefill-replicas", "1", "--decode-replicas", "1", "--decode-tp", "nan"], "--decode-tp"),
    (["--qps", "2", "--prefill-replicas", "1048576", "--decode-replicas", "1"], "--prefill-replicas"),
    (["--qps", "2", "--prefill-replicas", "1", "--decode-replicas", "1", "--output-len", "1"], "--output-len"),
])
def test_disaggregated_flag_misuse_exits_2_naming_the_flag(extra: list[str], named: str) -> None:
    r = runner.invoke(app, [*DISAGG, *extra])
    assert r.exit_code == 2 and named in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_disaggregated_request_longer_than_a_pool_holds_exits_1_with_the_numbers() -> None:
    r = runner.invoke(app, [*DISAGG, "--qps", "2", "--prefill-replicas", "1", "--decode-replicas", "1",
                            "--input-len", "9000000"])
    assert r.exit_code == 1 and "9,000,000 tokens" in r.output and "KV cache" in r.output, r.output


def test_a_rate_the_replica_cannot_keep_up_with_is_flagged() -> None:
    """At --qps 1e6 one H100 completes a few requests a second: the queue grows without bound and a finite run's
    percentiles describe no steady state. The table says so, JSON keeps its keys and says it on stderr; a rate the
    replica serves is not flagged (the same keep-up test the fleet search applies)."""
    rate = ["serve", "--model", "llama-3.1-8b", "--gpu", "h100", "--input-len", "500", "--output-len", "50",
            "--requests", "100"]
    table = runner.invoke(app, [*rate, "--qps", "1e6"])
    assert table.exit_code == 0 and "overloaded: 1e+06 requests/s offered" in table.stdout, table.output
    # beside the rate while requests arrive, the whole run's: the throughput the table shows
    shown = json.loads(runner.invoke(app, [*rate, "--qps", "1e6", "--format", "json"]).stdout)
    assert f"({shown['throughput']['requests_per_s']:.3g}/s over the whole run" in table.stdout
    js = runner.invoke(app, [*rate, "--qps", "1e6", "--format", "json"])
    assert js.exit_code == 0 and "warning: overloaded" in js.stderr
    assert set(json.loads(js.stdout)) == {"ttft_ms", "tpot_ms", "throughput", "memory", "max_concurrency"}
    light = runner.invoke(app, [*rate, "--qps", "0.5"])
    assert light.exit_code == 0 and "overloaded" not in light.output, light.output
    split = runner.invoke(app, [*rate, "--qps", "1e6", "--prefill-replicas", "1", "--decode-replicas", "1"])
    assert split.exit_code == 0 and "overloaded" in split.stdout and "replica completes" in split.stdout


def test_a_scenario_serves_on_gpus_it_defines(tmp_path: Path) -> None:
    """A serving scenario's `gpus:` (the training scenarios' format: a catalog `base:` with changes) are SKUs
    like the catalog's: in hardware.skus and hardware.max_gpus, priced as their base; unknown names in either
    key are one line naming the file and the key."""
    path = tmp_path / "s.yaml"
    text = _scenario(tmp_path, "{ttft_ms: 2000, tpot_ms: 100}").read_text().replace(
        "hardware: {skus: [h100-sxm]}",
        "gpus: [{name: h100-96gb-500w, base: h100-sxm, memory_gib: 95.0, hbm_tb_s: 2.4, tdp_w: 500}]\n"
        "hardware: {skus: [h100-96gb-500w], max_gpus: {h100-96gb-500w: 8}}")
    path.write_text(text)
    r = runner.invoke(app, ["serve", str(path), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["plan"]["pools"][0]["sku"] == "h100-96gb-500w"
    r = runner.invoke(app, ["compare", str(path), "--format", "json"])
    assert r.exit_code == 0 and "h100-96gb-500w" in r.output, r.output
    for old, new, key in (("skus: [h100-96gb-500w]", "skus: [h100-96gb-50w]", "hardware.skus"),
                          ("{h100-96gb-500w: 8}", "{h100-96gb-50w: 8}", "hardware.max_gpus"),
                          ("base: h100-sxm", "base: h100-sxx", "gpus[0] (h100-96gb-500w): base")):
        path.write_text(text.replace(old, new))
        for command in ("serve", "compare"):
            r = runner.invoke(app, [command, str(path)])
            assert r.exit_code == 2 and f"error: {path}: {key}: unknown GPU" in r.output, r.output


def test_the_smallest_request_rate_is_served_by_one_replica(tmp_path: Path) -> None:
    """Any positive rate needs a replica (a vanishing load still takes one capacity unit); rates outside
    [MIN_QPS, MAX_QPS] are refused naming the key or flag, where they used to end in an internal error."""
    from planner import MIN_QPS

    path = _scenario(tmp_path, "{ttft_ms: 2000, tpot_ms: 100}", qps=MIN_QPS)
    for command in ("serve", "compare"):
        r = runner.invoke(app, [command, str(path), "--format", "json"])
        assert r.exit_code == 0, r.output
    plan = json.loads(runner.invoke(app, ["serve", str(path), "--format", "json"]).output)["plan"]
    assert plan["gpus"] == 1 and plan["pools"][0]["replicas"] == 1
    r = runner.invoke(app, ["serve", str(_scenario(tmp_path, "{ttft_ms: 2000, tpot_ms: 100}", qps=1e-30))])
    assert r.exit_code == 2 and "serving.traffic.qps" in r.output
    r = runner.invoke(app, ["compare", str(path), "--qps", "1e-9"])
    assert r.exit_code == 2 and "--qps: 1e-9" in r.output


def test_a_mixture_of_experts_deployment_says_how_far_the_published_runs_put_it() -> None:
    """Every published MoE serving run came out slower than the model (serving_bands.yaml): an MoE deployment says
    so under the table and, keeping the JSON keys, on stderr; a dense model, the calibrated regime, says nothing."""
    moe = ["serve", "--model", "gpt-oss-20b", "--gpu", "b200", "--weight-dtype", "fp4", "--kv-dtype", "fp8",
           "--concurrency", "8", "--input-len", "500", "--output-len", "50", "--requests", "60"]
    table = runner.invoke(app, moe)
    assert table.exit_code == 0 and "extrapolated: mixture-of-experts model" in table.stdout, table.output
    assert "read it as an upper bound" in table.stdout
    js = runner.invoke(app, [*moe, "--format", "json"])
    assert js.exit_code == 0 and "warning: extrapolated: mixture-of-experts" in js.stderr
    assert set(json.loads(js.stdout)) == {"ttft_ms", "tpot_ms", "throughput", "memory", "max_concurrency"}
    dense = runner.invoke(app, ONE)
    assert dense.exit_code == 0 and "extrapolated" not in dense.output


def test_a_deployment_that_does_not_fit_exits_1_with_the_numbers() -> None:
    """As `review` for a training layout: the output still describes the deployment, the exit status says
    there is no plan, and a machine format's reason goes to stderr (the table shows it)."""
    one = ["serve", "--model", "llama-3.1-405b", "--gpu", "h100", "--tp", "1"]
    table = runner.invoke(app, one)
    assert table.exit_code == 1 and "does not fit: weights 756.0 GiB per GPU" in table.stdout, table.output
    js = runner.invoke(app, [*one, "--format", "json"])
    assert js.exit_code == 1 and json.loads(js.stdout)["memory"]["fits"] is False, js.output
    assert js.stderr.strip() == "does not fit: weights 756.0 GiB per GPU, 0 requests fit the KV pool"
    split = runner.invoke(app, [*one, "--qps", "1", "--prefill-replicas", "1", "--decode-replicas", "1"])
    assert split.exit_code == 1 and len(split.output.strip().splitlines()) == 1, split.output
    assert "prefill pool (--gpu/--tp) does not fit: weights 756.0 GiB per GPU" in split.output
    assert "h100-sxm (79.6 GiB)" in split.output
