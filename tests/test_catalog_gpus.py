"""The GPU catalog: every entry valid and sourced, peaks dense, lookups forgiving, bad files reported well."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from planner import catalog
from planner.errors import InputError
from planner.schema import GpuSku

REQUIRED = [
    "v100-32gb", "a100-40gb", "a100-80gb", "a100-80gb-pcie", "h100-sxm", "h100-pcie", "h100-nvl", "h800",
    "h200", "h20", "b200", "l40s", "l4", "rtx-4090", "mi250x", "mi300x", "mi325x",
]  # fmt: skip
HOPPER = ["h100-sxm", "h100-pcie", "h100-nvl", "h800", "h200", "h20"]
MIB = 2**20


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    """Each test sees the catalog directory its environment points at, and leaves no cache behind."""
    catalog.clear_caches()
    yield
    catalog.clear_caches()


@pytest.fixture
def gpus() -> dict[str, GpuSku]:
    return catalog.load_gpus()


def _write_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "gpus.yaml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv(catalog.ENV_VAR, str(tmp_path))
    catalog.clear_caches()
    return path


# --------------------------------------------------------------------------------------------
# content of catalogs/gpus.yaml
# --------------------------------------------------------------------------------------------


def test_every_raw_entry_validates() -> None:
    raw = yaml.safe_load((catalog.catalog_dir() / "gpus.yaml").read_text(encoding="utf-8"))
    assert isinstance(raw["gpus"], list) and raw["gpus"]
    for entry in raw["gpus"]:
        GpuSku.model_validate(entry)


def test_required_skus_present(gpus: dict[str, GpuSku]) -> None:
    missing = [name for name in REQUIRED if name not in gpus]
    assert not missing, f"missing SKUs: {missing}"


def test_names_are_normalised(gpus: dict[str, GpuSku]) -> None:
    for sku in gpus.values():
        for name in [sku.name, *sku.aliases]:
            assert catalog.normalise(name) == name, name


def test_every_entry_and_price_is_sourced(gpus: dict[str, GpuSku]) -> None:
    for sku in gpus.values():
        assert sku.source.strip(), sku.name
        assert sku.description.strip(), sku.name
        assert sku.efficiency.source.strip(), sku.name
        assert sku.efficiency.source != GpuSku.model_fields["efficiency"].default.source, sku.name
        for price in sku.prices:
            assert price.date.strip() and price.source.strip(), (sku.name, price)


def test_first_price_is_the_default_on_demand_rate(gpus: dict[str, GpuSku]) -> None:
    """The first on-demand entry is the default; it must come before every other rental kind."""
    for sku in gpus.values():
        kinds = [p.kind for p in sku.prices]
        if "on-demand" in kinds:
            assert kinds[0] == "on-demand", sku.name
        for price in sku.prices:
            rental = price.kind != "purchase"
            assert (price.usd_per_gpu_hour is not None) == rental, (sku.name, price)


def test_memory_is_whole_mib_and_matches_nvidia_smi(gpus: dict[str, GpuSku]) -> None:
    for sku in gpus.values():
        assert sku.hbm_bytes % MIB == 0, sku.name
    assert gpus["h100-sxm"].hbm_bytes == 81559 * MIB  # "80GB" is 79.65 GiB
    assert gpus["a100-80gb"].hbm_bytes == 80 * 2**30
    assert gpus["h200"].hbm_bytes == 143771 * MIB
    assert gpus["b200"].hbm_bytes == 183359 * MIB
    assert gpus["mi300x"].hbm_bytes == 192 * 2**30


def test_dense_peaks(gpus: dict[str, GpuSku]) -> None:
    assert gpus["h100-sxm"].peak("bf16") == pytest.approx(989.4, rel=1e-3)
    assert gpus["a100-80gb"].peak("bf16") == pytest.approx(312)
    assert gpus["a100-40gb"].peak("tf32") == pytest.approx(156)
    assert gpus["v100-32gb"].peak("bf16") == pytest.approx(125)  # falls back to FP16: Volta has no BF16
    assert gpus["rtx-4090"].peak("bf16") == pytest.approx(165.2)  # FP32 accumulate, not 330
    assert gpus["mi300x"].peak("bf16") == pytest.approx(1307.4)
    for name in HOPPER:
        sku = gpus[name]
        assert sku.peak("fp8") == pytest.approx(2 * sku.peak("bf16"), rel=1e-3), name


def test_no_sparse_headline_leaked(gpus: dict[str, GpuSku]) -> None:
    """Sparse headlines are 2x dense; the known dense values bound every NVIDIA/AMD generation."""
    assert all(sku.peak("bf16") <= 2516.6 for sku in gpus.values())
    assert all(sku.peak("bf16") < 1000 for name, sku in gpus.items() if name in HOPPER)
    for sku in gpus.values():
        table = sku.peak_tflops
        if "tf32" in table:
            assert table["tf32"] <= table.get("bf16", table.get("fp16", 0)), sku.name
        if "fp32" in table:
            assert table["fp32"] < sku.peak("bf16"), sku.name


def test_interconnect_and_efficiency_sane(gpus: dict[str, GpuSku]) -> None:
    assert gpus["h100-sxm"].intra_node_gbs == 450  # unidirectional half of 900
    assert gpus["h800"].intra_node_gbs == 200
    assert gpus["gb200"].node_size == 72
    assert gpus["h100-sxm"].efficiency.gemm == pytest.approx(794.5 / 989.4, abs=1e-3)
    assert gpus["a100-80gb"].efficiency.gemm == pytest.approx(271.2 / 312, abs=1e-3)
    for sku in gpus.values():
        assert sku.intra_node_gbs * 8 > sku.network_gbps, sku.name  # GB/s x 8 = Gbit/s: scale-up wins
        assert sku.efficiency.gemm_fp8 is None or "fp8" in sku.peak_tflops, sku.name


def test_blackwell_efficiencies_are_blackwell_measurements(gpus: dict[str, GpuSku]) -> None:
    """B200, GB200 and B300 carry their own MAMF measurements (stas00/ml-engineering), not H100's."""
    measured = {"b200": (1745.0, 3432.5), "gb200": (1822.0, 3615.6), "b300": (1769.0, 3353.3)}
    for name, (bf16, fp8) in measured.items():
        eff = gpus[name].efficiency
        assert eff.gemm == pytest.approx(bf16 / gpus[name].peak("bf16"), abs=1e-3), name
        assert eff.gemm_fp8 == pytest.approx(fp8 / gpus[name].peak("fp8"), abs=1e-3), name
        assert "MAMF" in eff.source and "stas00" in eff.source, name


def test_block_scaled_fp8_where_the_tensor_cores_have_it(gpus: dict[str, GpuSku]) -> None:
    """MXFP8 is native on datacenter Blackwell, 1x128/128x128 block scaling on Hopper (TE support matrix)."""
    for name, sku in gpus.items():
        eff = sku.efficiency
        if name in ("b200", "gb200", "b300"):
            assert eff.gemm_mxfp8 is not None and eff.gemm_fp8_block is None, name
        elif name in HOPPER:
            assert eff.gemm_fp8_block is not None and eff.gemm_mxfp8 is None, name
        else:
            assert eff.gemm_mxfp8 is None and eff.gemm_fp8_block is None, name
    assert gpus["gb200"].efficiency.host_link_gbs > 5 * gpus["h100-sxm"].efficiency.host_link_gbs  # NVLink-C2C


# --------------------------------------------------------------------------------------------
# lookup
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["h100", "H100", "h100-80gb", "H100_SXM_80GB", "h100 sxm", " h100-sxm "])
def test_alias_lookup(alias: str) -> None:
    assert catalog.get_gpu(alias) is catalog.get_gpu("h100-sxm")


def test_unknown_gpu_suggests_close_names() -> None:
    with pytest.raises(InputError, match="did you mean") as info:
        catalog.get_gpu("h10")
    assert "'h10'" in str(info.value)
    assert "h100" in str(info.value) and "h100-sxm" in str(info.value)


def test_unknown_gpu_without_close_names_lists_catalog() -> None:
    with pytest.raises(InputError) as info:
        catalog.get_gpu("zzzzzz")
    message = str(info.value)
    assert "did you mean" not in message
    assert all(name in message for name in REQUIRED)


# --------------------------------------------------------------------------------------------
# catalog location and malformed files
# --------------------------------------------------------------------------------------------

GOOD_ENTRY = """
  - name: toy
    aliases: [toy-gpu]
    vendor: Test
    description: a toy accelerator
    peak_tflops: {bf16: 100}
    hbm_bytes: 1073741824
    hbm_bandwidth_tbs: 1.0
    intra_node_gbs: 100
    network_gbps: 100
    tdp_w: 100
    source: test fixture
"""


def test_env_var_selects_catalog_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_catalog(tmp_path, monkeypatch, "gpus:" + GOOD_ENTRY)
    assert catalog.catalog_dir() == tmp_path
    assert list(catalog.load_gpus()) == ["toy"]
    assert catalog.get_gpu("TOY_GPU").name == "toy"


def test_malformed_entry_names_file_entry_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = GOOD_ENTRY.replace("{bf16: 100}", "{bf16: fast}").replace("tdp_w: 100", "tdp_watts: 100")
    path = _write_catalog(tmp_path, monkeypatch, "gpus:" + GOOD_ENTRY.replace("toy", "ok") + bad)
    with pytest.raises(InputError) as info:
        catalog.load_gpus()
    message = str(info.value)
    assert str(path) in message
    assert "gpus[1] (toy)" in message
    assert "peak_tflops.bf16" in message
    assert "tdp_watts: unknown key" in message
    assert "gpus[0]" not in message  # the good entry is not blamed


def test_model_level_error_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_catalog(tmp_path, monkeypatch, "gpus:" + GOOD_ENTRY.replace("{bf16: 100}", "{fp32: 100}"))
    with pytest.raises(InputError, match=r"gpus\[0\] \(toy\): .*needs bf16 or fp16"):
        catalog.load_gpus()


def test_duplicate_alias_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    second = GOOD_ENTRY.replace("name: toy", "name: other")  # keeps alias toy-gpu
    _write_catalog(tmp_path, monkeypatch, "gpus:" + GOOD_ENTRY + second)
    with pytest.raises(InputError, match="'toy-gpu' is already used by 'toy'"):
        catalog.load_gpus()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gpus: [unclosed\n", "not valid YAML"),
        ("- just a list\n", "`gpus:` list"),
        ("gpus:\n  - 3\n", "gpus[0]: expected a mapping"),
    ],
)
def test_unreadable_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str) -> None:
    path = _write_catalog(tmp_path, monkeypatch, text)
    with pytest.raises(InputError) as info:
        catalog.load_gpus()
    assert str(path) in str(info.value) and expected in str(info.value)


def test_missing_catalog_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(catalog.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="cannot read"):
        catalog.load_gpus()


def test_model_loader_is_generic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models.yaml").write_text(
        "models:\n"
        "  - {name: tiny-llama, source: test, layers: 2, hidden: 64, heads: 4, ffn_hidden: 128,\n"
        "     vocab: 1000, max_seq: 128}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv(catalog.ENV_VAR, str(tmp_path))
    catalog.clear_caches()
    assert catalog.get_model("Tiny_Llama").hidden == 64
    with pytest.raises(InputError, match="did you mean tiny-llama"):
        catalog.get_model("tiny-lama")


def test_scenario_gpu_inherits_from_its_base() -> None:
    from planner.model.power import power_limited
    from planner.schema import GpuDefinition

    (g,) = catalog.derive_gpus(
        [GpuDefinition(name="h100-96gb-500w", base="h100-sxm", memory_gib=95.0, hbm_tb_s=2.4, tdp_w=500)]
    )
    base = catalog.get_gpu("h100-sxm")
    assert g.hbm_bytes == 95 * 2**30 and g.hbm_bandwidth_tbs == 2.4
    assert (g.tdp_w, g.rated_tdp_w) == (500, base.tdp_w)  # a power limit below the rated board power
    assert g.peak_tflops == base.peak_tflops
    # the power rule (planner.model.power) scales the compute efficiencies; bandwidth efficiencies are the base's
    assert g.efficiency == power_limited(base.model_copy(update={"tdp_w": 500}), base.tdp_w).efficiency
    assert g.efficiency.gemm < base.efficiency.gemm and g.efficiency.hbm == base.efficiency.hbm
    assert catalog.get_gpu("H100_96GB_500W", [g]) is g


def test_a_renamed_derivative_keeps_its_base_generation() -> None:
    """A scenario GPU whose name says nothing of its architecture is its base's generation wherever that matters:
    the fp8 recipe a framework defaults to (MXFP8 on Blackwell), torchtitan's attention kernel there (cuDNN), the
    flash kernel rate (FlashAttention-2 on a Blackwell part runs below the native kernels), the uncertainty regime
    and serving's fp4/int8 tensor cores; an explicit `generation:` wins, and a chain keeps the catalog part."""
    from planner.model import perf
    from planner.model.presets import default_fp8_recipe, resolve
    from planner.model.serving import peak_tflops
    from planner.model.stack import stack_of
    from planner.model.uncertainty import gpu_generation
    from planner.schema import GpuDefinition, Implementation

    base = catalog.get_gpu("b200")
    (mine, stated, chained) = catalog.derive_gpus([
        GpuDefinition(name="lab-accelerator-a", base="b200", tdp_w=800),
        GpuDefinition(name="lab-accelerator-b", base="h100-sxm", generation="blackwell"),
        GpuDefinition(name="lab-accelerator-c", base="lab-accelerator-a"),
    ])
    assert (mine.arch, gpu_generation(mine), stated.arch) == ("blackwell", "blackwell", "blackwell")
    assert (mine.base, stated.base) == ("b200", "h100-sxm")
    assert chained.base == "b200" and chained.arch == "blackwell"
    assert all(peak_tflops(mine, d) == peak_tflops(base, d) is not None for d in ("fp4", "int8"))
    assert catalog.get_gpu("h100-sxm").arch == "hopper" and base.generation is None and base.arch == "blackwell"
    assert default_fp8_recipe("megatron-core", mine) == default_fp8_recipe("megatron-core", base) == "mxfp8"
    titan, fa2 = Implementation(framework="torchtitan"), Implementation(framework="fsdp")
    assert resolve(titan, None, mine).attention_kernel == resolve(titan, None, base).attention_kernel == "native"
    stack = stack_of(fa2, "bf16", mine.efficiency, mine)
    assert perf._flash_kernel_share(stack, mine) == perf._flash_kernel_share(stack, base) != (1.0, 1.0)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"name": "h100", "base": "h100-sxm"}, "already a GPU"),
        ({"name": "x", "base": "h1000"}, "base: unknown GPU 'h1000'"),
        ({"name": "x", "base": "h100-sxm", "efficiency": {"gemm": 3}}, "efficiency.gemm"),
    ],
)
def test_scenario_gpu_errors_name_the_entry(entry: dict, expected: str) -> None:
    from planner.schema import GpuDefinition

    with pytest.raises(InputError, match="gpus\\[0\\]") as info:
        catalog.derive_gpus([GpuDefinition(**entry)])
    assert expected in str(info.value)


def test_mxfp8_needs_block_scaled_tensor_cores() -> None:
    """Transformer Engine runs the MXFP8 recipe from compute capability 10.0 (check_mxfp8_support): a Hopper GPU is
    refused for it with the key named, skipped with the reason when a Blackwell one is allowed beside it, and a
    scenario GPU derived from a Blackwell part keeps the capability."""
    from typer.testing import CliRunner

    from planner.catalog import derive_gpus, get_gpu
    from planner.cli import app
    from planner.schema import GpuDefinition, compute_dtype

    assert compute_dtype("fp8", "mxfp8") == "mxfp8" and compute_dtype("bf16", "mxfp8") == "bf16"
    assert get_gpu("b200").supports("mxfp8") and not get_gpu("h100").supports("mxfp8")
    assert get_gpu("h100").supports(compute_dtype("fp8", "blockwise"))
    (capped,) = derive_gpus([GpuDefinition(name="b200-700w", base="b200", tdp_w=700)])
    assert capped.supports("mxfp8")
    runner = CliRunner()
    flags = ["estimate", "--model", "llama-3.1-8b", "--gpus", "8", "--zero", "3", "--seq", "4096", "--precision",
             "fp8", "--fp8-recipe", "mxfp8"]
    hopper = runner.invoke(app, [*flags, "--gpu", "h100"])
    assert hopper.exit_code == 2 and "--fp8-recipe" in hopper.output and len(hopper.output.strip().splitlines()) == 1
    assert runner.invoke(app, [*flags, "--gpu", "b200"]).exit_code == 0


def test_a_search_with_mxfp8_leaves_hopper_out() -> None:
    """solve and compare search MXFP8 jobs on block-scaled tensor cores only: Hopper is listed as skipped, and a
    scenario that allows nothing else is refused at implementation.fp8_recipe."""
    import pytest

    from planner.errors import InputError
    from planner.scenario import Scenario
    from planner.search.problem import resolve_problem

    doc = {"name": "mx", "model": "llama-3.1-8b", "job": {"tokens": 1e11, "seq_len": 8192, "global_batch": 256,
                                                          "precision": "fp8"},
           "implementation": {"fp8_recipe": "mxfp8"}, "hardware": {"skus": ["h100-sxm", "b200"], "max_gpus": 64}}
    problem = resolve_problem(Scenario.model_validate(doc))
    assert [s.name for s in problem.skus] == ["b200"]
    assert any(s.startswith("h100-sxm (no mxfp8") for s in problem.skipped)
    doc["hardware"] = {"skus": ["h100-sxm"], "max_gpus": 64}
    with pytest.raises(InputError, match=r"implementation\.fp8_recipe: mxfp8 needs block-scaled fp8"):
        resolve_problem(Scenario.model_validate(doc))
