"""Parameter counts, checked against the transformers module tree; the model catalog; config.json import.

Every expected count comes from building the transformers model on the meta device (no memory is
allocated, so 405B and 671B build in milliseconds) and summing its parameters. The only literal numbers
are the three the product promises, asserted against both the module and count_params.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from planner.catalog import get_model, load_models
from planner.errors import InputError
from planner.interop.hf_config import SUPPORTED_MODEL_TYPES, model_from_hf_config
from planner.model.params import count_params
from planner.schema import ModelSpec

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

FIXTURES = Path(__file__).parent / "fixtures" / "hf_configs"

# Catalog entries no transformers class can build, and why.
NOT_BUILDABLE = {
    "gpt3-13b": "Table 2.1's d_model 5140 is not 40 heads x 128; GPT2Attention needs hidden = heads x head_dim",
}
# Catalog entries whose count differs from the module, pinned to the exact difference (none today).
KNOWN_GAPS: dict[str, str] = {}


def _fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def _gpt2_shaped(m: ModelSpec) -> Any:
    """GPT-3 and MT-NLG are GPT-2 architecture at other shapes."""
    return transformers.GPT2Config(
        n_layer=m.layers,
        n_embd=m.hidden,
        n_head=m.heads,
        n_inner=m.ffn_hidden,
        n_positions=m.max_seq,
        vocab_size=m.vocab,
    )


def _opt_175b() -> Any:
    """OPT-175B as Zhang et al. 2022, Table 1 give it; the 2048 positions are the paper's, not the catalog's."""
    return transformers.OPTConfig(
        num_hidden_layers=96,
        hidden_size=12288,
        num_attention_heads=96,
        ffn_dim=49152,
        vocab_size=50272,
        max_position_embeddings=2048,
        word_embed_proj_dim=12288,
        do_layer_norm_before=True,
        enable_bias=True,
        activation_function="relu",
    )


def hf_config(name: str) -> Any | None:
    """The transformers config for a catalog model: its real config.json, or the paper's shape."""
    if (FIXTURES / f"{name}.json").exists():
        return transformers.AutoConfig.for_model(**_fixture(name))
    if name.startswith(("gpt3-", "mt-nlg-")):
        return _gpt2_shaped(get_model(name))
    if name == "opt-175b":
        return _opt_175b()
    return None


def _meta_model(cfg: Any) -> Any:
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(cfg)


def _counts(model: Any, top_k: int) -> tuple[int, int]:
    """(total, inactive) of a module tree: inactive = the experts a token is not routed to, per layer.

    transformers 5 stores each MoE layer's routed experts as fused [experts, ...] tensors in a
    `*Experts` module; a token uses top_k of those rows.
    """
    total = sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once
    inactive = 0
    for module in model.modules():
        if type(module).__name__.endswith("Experts"):
            for p in module.parameters():
                experts = p.shape[0]
                assert experts == module.num_experts
                inactive += p.numel() // experts * (experts - top_k)
    return total, inactive


@cache
def hf_counts(name: str) -> tuple[int, int]:
    """(total, inactive) parameters of the transformers model for a catalog entry; only ints are kept."""
    cfg = hf_config(name)
    assert cfg is not None, f"{name}: no transformers config"
    return _counts(_meta_model(cfg), getattr(cfg, "num_experts_per_tok", 0) or 0)


def _catalog_cases() -> list[Any]:
    cases = []
    for name in sorted(load_models()):
        marks: list[Any] = []
        if name in NOT_BUILDABLE:
            marks.append(pytest.mark.skip(reason=NOT_BUILDABLE[name]))
        elif name in KNOWN_GAPS:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[name]))
        cases.append(pytest.param(name, marks=marks, id=name))
    return cases


# --------------------------------------------------------------------------------------------
# count_params against the module tree
# --------------------------------------------------------------------------------------------


def test_every_catalog_model_is_checked_or_excused() -> None:
    unchecked = [n for n in load_models() if hf_config(n) is None and n not in NOT_BUILDABLE]
    assert unchecked == []


@pytest.mark.parametrize("name", _catalog_cases())
def test_count_matches_transformers(name: str) -> None:
    counted = count_params(get_model(name))
    total, inactive = hf_counts(name)
    assert counted.total == total
    assert counted.active == total - inactive


def test_opt_learned_positions_have_two_extra_rows() -> None:
    # OPTLearnedPositionalEmbedding holds max_position_embeddings + 2 rows: position_offset says so.
    model = _meta_model(_opt_175b())
    rows = model.model.decoder.embed_positions.weight.shape[0]
    spec = get_model("opt-175b")
    assert rows == 2048 + 2 == spec.max_seq + spec.position_offset


@pytest.mark.parametrize(
    ("name", "total", "active"),
    [
        ("llama-2-7b", 6_738_415_616, 6_738_415_616),
        ("gpt3-175b", 174_604_259_328, 174_604_259_328),
        ("mixtral-8x7b", 46_702_792_704, 12_879_925_248),
    ],
)
def test_promised_counts(name: str, total: int, active: int) -> None:
    counted = count_params(get_model(name))
    hf_total, hf_inactive = hf_counts(name)
    assert counted.total == hf_total == total
    assert counted.active == hf_total - hf_inactive == active


def test_moe_active_is_not_total() -> None:
    # Guards the inactive-expert arithmetic itself: every MoE entry routes to fewer experts than it has.
    for name, m in load_models().items():
        if m.moe is not None:
            total, inactive = hf_counts(name)
            assert 0 < inactive < total, name


# --------------------------------------------------------------------------------------------
# config.json import
# --------------------------------------------------------------------------------------------

SUPPORTED_FIXTURES = sorted(
    p.stem for p in FIXTURES.glob("*.json") if _fixture(p.stem)["model_type"] in SUPPORTED_MODEL_TYPES
)
OTHER_FIXTURES = sorted(p.stem for p in FIXTURES.glob("*.json") if p.stem not in SUPPORTED_FIXTURES)


def _shape(m: ModelSpec) -> dict[str, Any]:
    return m.model_dump(exclude={"name", "source"})


# Catalog pretraining contexts a technical report states and config.json does not (no original_max_position_embeddings)
PRETRAIN_SEQ_FROM_REPORT = {"qwen3-8b", "qwen3-32b", "qwen3-30b-a3b", "qwen3-235b-a22b"}


@pytest.mark.parametrize("name", SUPPORTED_FIXTURES)
def test_hf_config_matches_catalog(name: str) -> None:
    spec = model_from_hf_config(FIXTURES / f"{name}.json")
    expected = _shape(get_model(name))
    if name in PRETRAIN_SEQ_FROM_REPORT:
        assert spec.pretrain_seq is None and expected["pretrain_seq"] is not None
        expected["pretrain_seq"] = None
    assert _shape(spec) == expected
    assert spec.name == name


def test_hf_config_accepts_a_dict_a_folder_and_a_name(tmp_path: Path) -> None:
    data = _fixture("llama-2-7b")
    (tmp_path / "config.json").write_text(json.dumps(data))
    from_dict = model_from_hf_config(data)
    from_dir = model_from_hf_config(tmp_path)
    assert from_dict.name == "llama-2-7b-hf"  # the repo in _name_or_path
    assert from_dir.name == tmp_path.name.lower()
    assert model_from_hf_config(data, name="mine").name == "mine"
    assert _shape(from_dict) == _shape(from_dir) == _shape(get_model("llama-2-7b"))


def _edited(name: str, **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(_fixture(name))
    data.update(changes)
    return data


# Options outside the catalog that planner models: each must still count exactly what transformers builds.
VARIANTS = {
    "llama-all-biases": _edited("llama-2-7b", attention_bias=True, mlp_bias=True),
    "llama-attention-bias": _edited("llama-2-7b", attention_bias=True, num_hidden_layers=2),
    "mistral-explicit-head-dim": _edited("mistral-7b", hidden_size=5120, head_dim=128, num_hidden_layers=4),
    "mixtral-null-head-dim": _edited("mixtral-8x7b", head_dim=None, num_hidden_layers=2),
    "qwen2-tied": _edited("qwen2.5-7b", tie_word_embeddings=True, num_hidden_layers=2),
    "falcon-mha-sequential-bias": _edited("falcon-7b", multi_query=False, parallel_attn=False, bias=True),
    "gpt2-n-inner-untied": _edited("gpt2", n_inner=1000, tie_word_embeddings=False, activation_function="relu"),
    "deepseek-v2-no-dense-layer": _edited("deepseek-v2-lite", first_k_dense_replace=0, num_hidden_layers=3),
    "deepseek-v3-full-rank-q": _edited("deepseek-v3", q_lora_rank=None, num_hidden_layers=4),
    "qwen3-attention-bias-tied": _edited("qwen3-8b", attention_bias=True, tie_word_embeddings=True,
                                         num_hidden_layers=2),
    "qwen3-default-head-dim": {k: v for k, v in _edited("qwen3-8b", hidden_size=2048, num_hidden_layers=2).items()
                               if k != "head_dim"},
    "qwen3-moe-dense-first-layers": _edited("qwen3-30b-a3b", mlp_only_layers=[0, 1], num_hidden_layers=4),
    "qwen3-moe-no-head-dim": {k: v for k, v in _edited("qwen3-30b-a3b", num_hidden_layers=2).items()
                              if k != "head_dim"},
    "gpt-oss-defaults": {k: v for k, v in _edited("gpt-oss-20b", num_hidden_layers=3, num_local_experts=8).items()
                         if k not in ("layer_types", "head_dim", "sliding_window")},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_hf_config_variants_count_like_transformers(variant: str) -> None:
    data = VARIANTS[variant]
    spec = model_from_hf_config(data)
    cfg = transformers.AutoConfig.for_model(**data)
    total, inactive = _counts(_meta_model(cfg), getattr(cfg, "num_experts_per_tok", 0) or 0)
    counted = count_params(spec)
    assert (counted.total, counted.active) == (total, total - inactive)


@pytest.mark.parametrize("name", OTHER_FIXTURES)
def test_hf_config_refuses_other_model_types(name: str) -> None:
    path = FIXTURES / f"{name}.json"
    with pytest.raises(InputError, match=rf"model_type '{_fixture(name)['model_type']}' is not supported"):
        model_from_hf_config(path)


def test_hf_config_unknown_model_type() -> None:
    with pytest.raises(InputError) as err:
        model_from_hf_config(_edited("llama-2-7b", model_type="xyz"))
    assert str(err.value).startswith("config.json: model_type 'xyz' is not supported (supported: ")
    assert "llama" in str(err.value)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("llama-2-7b", "model_type"),
        ("llama-2-7b", "hidden_size"),
        ("llama-3.1-405b", "max_position_embeddings"),
        ("mixtral-8x7b", "num_local_experts"),
        ("qwen2-7b", "intermediate_size"),
        ("gpt2", "n_embd"),
        ("falcon-7b", "num_attention_heads"),
        ("deepseek-v3", "kv_lora_rank"),
        ("deepseek-v2-lite", "q_lora_rank"),
        ("deepseek-v3", "n_shared_experts"),
        ("qwen3-30b-a3b", "moe_intermediate_size"),
    ],
)
def test_hf_config_missing_key(name: str, key: str) -> None:
    data = _fixture(name)
    del data[key]
    with pytest.raises(InputError, match=rf"^config\.json: missing required key '{key}'"):
        model_from_hf_config(data)


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("llama-2-7b", "hidden_size", "4096"),
        ("llama-2-7b", "num_hidden_layers", True),
        ("llama-2-7b", "vocab_size", 0),
        ("llama-2-7b", "tie_word_embeddings", "no"),
        ("deepseek-v3", "first_k_dense_replace", -1),
    ],
)
def test_hf_config_ill_typed_key(name: str, key: str, value: Any) -> None:
    with pytest.raises(InputError, match=rf"^config\.json: key '{key}' must be"):
        model_from_hf_config(_edited(name, **{key: value}))


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("falcon-7b", "new_decoder_architecture", True),
        ("falcon-7b", "alibi", True),
        ("llama-2-7b", "mlp_bias", True),
        ("gpt2", "add_cross_attention", True),
        ("deepseek-v3", "moe_layer_freq", 2),
        ("deepseek-v3", "attention_bias", True),
        ("deepseek-v2-lite", "mlp_bias", True),
        ("qwen3-30b-a3b", "decoder_sparse_step", 2),
        ("qwen3-30b-a3b", "mlp_only_layers", [3, 7]),
        ("qwen3-30b-a3b", "num_experts", 0),
        ("gpt-oss-20b", "attention_bias", False),
    ],
)
def test_hf_config_unsupported_option(name: str, key: str, value: Any) -> None:
    said = re.escape(f"{key}={json.dumps(value)}")
    with pytest.raises(InputError, match=rf"^config\.json: {said} is not supported"):
        model_from_hf_config(_edited(name, **{key: value}))


def test_hf_config_inconsistent_shape_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(_edited("gpt2", n_head=7)))  # 768 is not divisible by 7
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: .*not divisible by heads"):
        model_from_hf_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"model_type": "llama",', "invalid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        (b"\xff\xfe{}", "cannot read config"),
    ],
)
def test_hf_config_malformed_file(tmp_path: Path, text: str | bytes, message: str) -> None:
    path = tmp_path / "config.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: .*{message}"):
        model_from_hf_config(path)


def test_hf_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=rf"^{re.escape(str(tmp_path / 'nope.json'))}: cannot read config"):
        model_from_hf_config(tmp_path / "nope.json")


def test_pretraining_context_from_rope_scaling() -> None:
    """Llama 3.1 and DeepSeek-V2/V3 stretch a shorter pretraining context with rope scaling: config.json's
    rope_scaling.original_max_position_embeddings is `pretrain_seq` (what an estimate assumes without --seq), the
    catalog agrees with the configs (test_hf_config_matches_catalog), an ill-typed value names the key, and a
    pretraining context longer than max_seq is refused."""
    from pydantic import ValidationError
    from typer.testing import CliRunner

    from planner.cli import app

    assert [get_model(n).training_seq for n in ("llama-3.1-8b", "deepseek-v3", "llama-2-7b")] == [8192, 4096, 4096]
    data = _fixture("llama-3.1-8b")
    assert model_from_hf_config(data).pretrain_seq == 8192
    assert model_from_hf_config({**data, "rope_scaling": None}).pretrain_seq is None
    bad = {**data["rope_scaling"], "original_max_position_embeddings": "8k"}
    with pytest.raises(InputError, match=r"rope_scaling\.original_max_position_embeddings"):
        model_from_hf_config({**data, "rope_scaling": bad})
    with pytest.raises(ValidationError, match="pretrain_seq"):
        ModelSpec.model_validate({**get_model("llama-3.1-8b").model_dump(), "pretrain_seq": 262144})
    out = CliRunner().invoke(app, ["estimate", "--model", "llama-3.1-8b", "--gpu", "h100", "--gpus", "8"]).output
    assert "seq 8192" in out.splitlines()[0]


WINDOWS = {
    "mistral-default": _fixture("mistral-7b"),
    "mistral-none": _edited("mistral-7b", sliding_window=None),
    "mixtral-window": _edited("mixtral-8x7b", sliding_window=2048),
    "qwen2-off": _fixture("qwen2.5-7b"),
    "qwen2-from-layer-20": _edited("qwen2.5-7b", use_sliding_window=True, sliding_window=4096, max_window_layers=20),
    "gpt-oss": _fixture("gpt-oss-120b"),
    "gpt-oss-default-layer-types": {k: v for k, v in _edited("gpt-oss-20b", num_hidden_layers=5).items()
                                    if k != "layer_types"},
    "qwen3-layer-types": _edited("qwen3-8b", use_sliding_window=True, sliding_window=1024,
                                 layer_types=["full_attention", "sliding_attention"] * 18),
}


@pytest.mark.parametrize("variant", sorted(WINDOWS))
def test_hf_config_sliding_windows_are_transformers(variant: str) -> None:
    """The sliding window and the layers that use it, as transformers builds the attention (its config's
    layer_types, or every layer where the model has none)."""
    data = WINDOWS[variant]
    spec = model_from_hf_config(data)
    cfg = transformers.AutoConfig.for_model(**data)
    window = getattr(cfg, "sliding_window", None)
    kinds = getattr(cfg, "layer_types", None)
    windowed = 0 if window is None else (kinds.count("sliding_attention") if kinds else cfg.num_hidden_layers)
    assert spec.n_window_layers == windowed
    assert spec.sliding_window == (window if windowed else None)
