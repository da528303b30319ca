"""Hostile scenario files end in an InputError naming the file and the key, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from planner.errors import InputError
from planner.scenario import load_scenario

BASE = "model: gpt3-175b\njob: {tokens: 300e9, seq_len: 2048, global_batch: 1536}\n"


def _load(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "s.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(InputError) as info:
        load_scenario(path)
    message = str(info.value)
    assert str(path) in message
    return message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: café\n".encode("latin-1"), "not UTF-8"),
        ("name: x\n".encode("utf-16"), "not UTF-8"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        ("model: " + "[" * 100_000, "nested deeper"),
        ("model:\n" + "".join(" " * i + "a:\n" for i in range(1, 200)), "nested deeper"),
        (BASE + "name: a\nname: b\n", "duplicate key 'name'"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str | bytes, expected: str) -> None:
    assert expected in _load(tmp_path, text)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("job: {tokens: .inf, seq_len: 2048, global_batch: 1536}", "job.tokens"),
        ("job: {tokens: 'inf', seq_len: 2048, global_batch: 1536}", "job.tokens"),
        ("job: {tokens: 1e30, seq_len: 2048, global_batch: 1536}", "job.tokens"),
        ("job: {tokens: 1e-30, seq_len: 2048, global_batch: 1536}", "one optimizer step"),
        ("constraints: {deadline_days: .inf}", "constraints.deadline_days"),
        ("constraints: {budget_usd: 1e18}", "constraints.budget_usd"),
        ("constraints: {min_gpus: 9, max_gpus: 3}", "min_gpus (9) exceeds max_gpus (3)"),
        ("pricing: {usd_per_gpu_hour: {h100-sxm: .nan}}", "pricing.usd_per_gpu_hour.h100-sxm"),
        ("pricing: {usd_per_gpu_hour: {h100-sxm: -2}}", "pricing.usd_per_gpu_hour.h100-sxm"),
        ("pricing: {pue: .inf}", "pricing.pue"),
        ("pricing: {amortisation_years: .inf}", "pricing.amortisation_years"),
        ("efficiency: {nccl_hop_latency_net_us: .inf}", "efficiency.nccl_hop_latency_net_us"),
        ("overheads: {reserve_bytes: 1099511627777}", "overheads.reserve_bytes"),
        ("hardware: {skus: [h100-sxm]}\nlayout: {sku: b200}", "layout.sku 'b200' is not among hardware.skus"),
        ("hardware: {skus: [h100-sxm]}\npricing: {usd_per_gpu_hour: {h100-pcie: 2}}", "names 'h100-pcie'"),
    ],
)
def test_numbers_out_of_physical_range(tmp_path: Path, extra: str, key: str) -> None:
    text = extra + "\n" + ("model: gpt3-175b\n" if extra.startswith("job:") else BASE)
    assert key in _load(tmp_path, text)


def test_an_alias_names_the_same_sku(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(BASE + "hardware: {skus: [h100]}\nlayout: {sku: h100-sxm}\n")
    assert load_scenario(path).layout.sku == "h100-sxm"


def test_thousands_of_unknown_keys_print_a_few_lines(tmp_path: Path) -> None:
    message = _load(tmp_path, BASE + "".join(f"k{i}: 1\n" for i in range(5_000)))
    lines = message.splitlines()
    assert len(lines) <= 11 and "more errors" in lines[-1]


def test_booleans_are_yaml_1_2(tmp_path: Path) -> None:
    """Only true/false are booleans (YAML 1.2 core schema): YAML 1.1's off/no/yes/on stay the strings written, so a
    scenario named `off` keeps its name and a string key is never a boolean; a boolean key still reads true/false."""
    from planner import safe_yaml

    assert safe_yaml.loads("a: off\nb: NO\nc: yes\nd: on\ne: true\nf: False\n", "t") == {
        "a": "off", "b": "NO", "c": "yes", "d": "on", "e": True, "f": False}
    assert safe_yaml.loads("a: off\ne: TRUE\n", "t", trusted=True) == {"a": "off", "e": True}
    path = tmp_path / "s.yaml"
    path.write_text("name: off\n" + BASE + "implementation: {cuda_graphs: true}\n")
    sc = load_scenario(path)
    assert sc.name == "off" and sc.implementation.cuda_graphs is True


@pytest.mark.parametrize(("model", "expected"), [
    ("{name: m, layers: 2, hidden: 64, heads: 4, kv_heads: 3, ffn_hidden: 128, vocab: 1000, max_seq: 8192}",
     "model: heads (4) must be a multiple of kv_heads (3)"),
    ("{name: m, layers: 2, hidden: 64, heads: 4, ffn_hidden: 128, vocab: 1000, max_seq: 8192, pretrain_seq: 9000}",
     "model: pretrain_seq (9000) exceeds max_seq (8192)"),
])
def test_an_inline_model_error_is_not_hidden_behind_the_name_branch(tmp_path: Path, model: str, expected: str) -> None:
    """`model:` takes a catalog name or an inline spec: when the spec's own validator refuses it, that reason is
    the message, without the name branch's "should be a valid string"."""
    message = _load(tmp_path, f"model: {model}\njob: {{tokens: 300e9, seq_len: 2048, global_batch: 1536}}\n")
    assert message.splitlines() == [f"{tmp_path / 's.yaml'}: {expected}"]
