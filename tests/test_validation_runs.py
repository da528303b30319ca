"""The held-out validation set (planner/data/validation_runs.yaml): well-formed, complete, and disjoint from the
calibration file. The model's accuracy on it is reported by the benchmarks, not asserted here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from planner import catalog
from planner.interop.published import reference_dir
from planner.scenario import FixedLayout, Job
from planner.schema import Implementation, ModelSpec, MoESpec

DATA = Path(__file__).resolve().parents[1] / "planner" / "data" / "validation_runs.yaml"

PLANNER_KEYS = {"gpu", "gpus", "gpus_per_node", "gpus_def", "model", "job", "implementation", "layout", "complete"}
GPU_DEF_KEYS = {"name", "base", "memory_gib", "hbm_tb_s", "tdp_w"}
THROUGHPUT = ("step_time_s", "tokens_per_s", "tokens_per_s_per_gpu", "tflops_per_gpu", "mfu")
MEMORY_KINDS = {"reserved", "allocated", "nvidia-smi", "unknown"}


@pytest.fixture(scope="module")
def runs() -> list[dict[str, Any]]:
    doc = yaml.safe_load(DATA.read_text(encoding="utf-8"))
    assert doc["schema_version"] == 1
    return doc["runs"]


def test_size_and_unique_ids(runs: list[dict[str, Any]]) -> None:
    ids = [r["id"] for r in runs]
    assert len(ids) >= 50
    assert len(set(ids)) == len(ids), sorted(i for i in ids if ids.count(i) > 1)


def test_disjoint_from_calibration_file(runs: list[dict[str, Any]]) -> None:
    ref = reference_dir()
    if ref is None:
        pytest.skip("published_runs.yaml not found")
    shared = {r["id"] for r in yaml.safe_load((ref / "published_runs.yaml").read_text(encoding="utf-8"))["runs"]}
    assert not shared & {r["id"] for r in runs}


def test_every_run_is_sourced_and_measured(runs: list[dict[str, Any]]) -> None:
    for r in runs:
        src = r["source"]
        assert src.get("title") and src.get("locator") and src.get("ref"), r["id"]
        assert src.get("verification") in ("verified", "secondary"), r["id"]
        assert r.get("flops_accounting"), r["id"]
        meas = r["measured"]
        assert any(meas.get(k) is not None for k in THROUGHPUT), r["id"]
        if meas.get("memory_gb_per_gpu") is not None:
            assert meas["memory_kind"] in MEMORY_KINDS and meas["memory_unit"], r["id"]


def test_layout_is_complete(runs: list[dict[str, Any]]) -> None:
    for r in runs:
        gpus = r["hardware"]["count"]
        par = r["parallelism"]
        assert par["tp"] * par["pp"] * (par.get("cp") or 1) * par["dp"] == gpus, r["id"]
        lay = r["planner"]["layout"]
        assert lay["tp"] * lay["pp"] * lay.get("cp", 1) * lay["dp"] == gpus == r["planner"]["gpus"], r["id"]
        if par.get("ep"):
            assert par["ep"] == lay.get("ep", 1), r["id"]


def test_global_batch_divides(runs: list[dict[str, Any]]) -> None:
    """Every framework here splits the global batch into dp x micro_batch x whole accumulation steps."""
    for r in runs:
        gbs, mbs, dp = r["batch"]["global_batch"], r["batch"].get("micro_batch") or 1, r["parallelism"]["dp"]
        assert gbs % (dp * mbs) == 0, r["id"]
        assert r["planner"]["job"]["global_batch"] == gbs, r["id"]
        assert r["planner"]["layout"].get("micro_batch", mbs) == mbs, r["id"]


def test_planner_block_uses_scenario_keys(runs: list[dict[str, Any]]) -> None:
    gpus = catalog.load_gpus()
    names = set(gpus) | {a for g in gpus.values() for a in g.aliases}
    for r in runs:
        p = r["planner"]
        assert set(p) <= PLANNER_KEYS, (r["id"], set(p) - PLANNER_KEYS)
        custom = p.get("gpus_def")
        if custom:
            assert set(custom) <= GPU_DEF_KEYS and custom["base"] in names and p["gpu"] == custom["name"], r["id"]
        else:
            assert p["gpu"] in names, r["id"]
        assert set(p["job"]) <= set(Job.model_fields), r["id"]
        assert set(p["model"]) <= set(ModelSpec.model_fields), r["id"]
        if p["model"].get("moe"):
            MoESpec(**p["model"]["moe"])
        assert p["model"]["max_seq"] >= p["job"]["seq_len"], r["id"]
        Implementation(**p["implementation"])  # names and values (framework, fp8 recipe, recompute modules)
        FixedLayout(**p["layout"])
        if p["job"].get("precision") == "fp8":
            assert p["implementation"].get("fp8_recipe"), r["id"]


def test_set_covers_the_stacks_it_is_for(runs: list[dict[str, Any]]) -> None:
    frameworks = {r["planner"]["implementation"].get("framework") for r in runs} - {None}
    assert frameworks == {"megatron-core", "torchtitan", "fsdp", "deepspeed"}
    assert {"b200", "gb200", "b300"} <= {r["planner"]["gpu"] for r in runs}
    assert {"delayed", "current", "mxfp8"} <= {r["planner"]["implementation"].get("fp8_recipe") for r in runs}
    assert sum(r["measured"].get("memory_gb_per_gpu") is not None for r in runs) >= 15
