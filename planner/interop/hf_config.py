"""Build a ModelSpec from a Hugging Face config.json, as transformers saves it.

Only the keys that change the module tree or the attention's work are read (sliding windows). Everything else
(dtype, RoPE base and scaling, token ids, dropout, router loss weights, quantization) is ignored. A key that selects
a layout planner cannot count exactly is refused with an InputError naming it, rather than guessed at.
Missing optional keys take the default of the transformers config class, so a spec built here has the
parameter count of `AutoModelForCausalLM.from_config` on the same file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from planner.errors import InputError, format_validation_error
from planner.interop.sources import parse_json_object, read_text
from planner.schema import MLASpec, ModelSpec, MoESpec

Fields = dict[str, Any]


class _Config:
    """Typed reads from one config.json; every failure is an InputError naming the file and the key."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.data = data
        self.where = where

    def error(self, message: str) -> InputError:
        return InputError(f"{self.where}: {message}")

    def refuse(self, key: str, why: str) -> InputError:
        return self.error(f"{key}={json.dumps(self.data.get(key), default=repr)} is not supported: {why}")

    def check_int(self, key: str, value: Any, minimum: int) -> int:
        # bool is an int subclass in Python; `true` is never a layer count.
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            kind = "a positive integer" if minimum > 0 else "a non-negative integer"
            raise self.error(f"key '{key}' must be {kind}, got {json.dumps(value, default=repr)}")
        return value

    def need(self, *keys: str, minimum: int = 1) -> int:
        """A required integer; `keys` are the spellings transformers accepts, the saved one first."""
        for key in keys:
            if self.data.get(key) is not None:
                return self.check_int(key, self.data[key], minimum)
        raise self.error(f"missing required key '{keys[0]}'")

    def optional(self, key: str, default: int | None) -> int | None:
        value = self.data.get(key)
        return default if value is None else self.check_int(key, value, 1)

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(f"key '{key}' must be true or false, got {json.dumps(value, default=repr)}")
        return value


def _mha_none(kv_heads: int | None, heads: int) -> int | None:
    """Catalog convention: kv_heads is left out for plain multi-head attention."""
    return None if kv_heads in (None, heads) else kv_heads


def _head_dim(cfg: _Config, hidden: int, heads: int) -> int | None:
    """An explicit head_dim only where it differs from hidden // heads (Mistral-Nemo style configs)."""
    d = cfg.optional("head_dim", None)
    return None if d is None or (hidden % heads == 0 and d == hidden // heads) else d


# transformers' class defaults when the key is absent (an explicit null means "= heads" in all of them).
_KV_DEFAULT = {"mistral": 8, "mixtral": 8, "qwen2": 32, "qwen3": 32, "qwen3_moe": 4}


# sliding_window when the key is absent (MistralConfig 4096, MixtralConfig none), and the first windowed layer of
# Qwen2/Qwen3 (max_window_layers) when use_sliding_window turns the window on.
_WINDOW_DEFAULT = {"mistral": 4096, "qwen2": 4096, "qwen3": 4096, "qwen3_moe": 4096, "gpt_oss": 128}
_MAX_WINDOW_LAYERS_DEFAULT = {"qwen2": 28, "qwen3": 28}


def _window(cfg: _Config, model_type: str, layers: int) -> Fields:
    """sliding_window and window_layers as transformers builds the attention: Mistral and Mixtral window every
    layer; Qwen2 and Qwen3 only with use_sliding_window, in the layers layer_types marks (or from
    max_window_layers on); Qwen3-MoE every layer then; gpt-oss the layers layer_types marks (or every other)."""
    if model_type in ("qwen2", "qwen3", "qwen3_moe") and not cfg.flag("use_sliding_window", False):
        return {}
    window = cfg.data.get("sliding_window", _WINDOW_DEFAULT.get(model_type))
    if window is None:
        return {}
    window = cfg.check_int("sliding_window", window, 1)
    kinds = cfg.data.get("layer_types")
    if isinstance(kinds, list) and len(kinds) == layers:
        windowed = sum(kind == "sliding_attention" for kind in kinds)
    elif model_type == "gpt_oss":
        windowed = (layers + 1) // 2  # GptOssConfig: layers 0, 2, 4, … slide, the others attend fully
    elif model_type in _MAX_WINDOW_LAYERS_DEFAULT:
        first = cfg.data.get("max_window_layers", _MAX_WINDOW_LAYERS_DEFAULT[model_type])
        windowed = layers - min(layers, cfg.check_int("max_window_layers", first, 0))
    else:
        windowed = layers
    return {"sliding_window": window, "window_layers": None if windowed == layers else windowed} if windowed else {}


def _gated(cfg: _Config, model_type: str) -> Fields:
    """Llama, Mistral, Mixtral, Qwen2: RMSNorm, SwiGLU, RoPE; the head is untied unless the config ties it."""
    hidden, heads = cfg.need("hidden_size"), cfg.need("num_attention_heads")
    kv = cfg.data.get("num_key_value_heads", _KV_DEFAULT.get(model_type))
    kv_heads = None if kv is None else cfg.check_int("num_key_value_heads", kv, 1)
    ffn = cfg.need("intermediate_size")
    bias = "none"
    if model_type == "llama":
        # LlamaAttention puts attention_bias on q, k, v and o; LlamaMLP puts mlp_bias on gate, up and down.
        attention_bias, mlp_bias = cfg.flag("attention_bias", False), cfg.flag("mlp_bias", False)
        if mlp_bias and not attention_bias:
            raise cfg.refuse("mlp_bias", "planner models MLP biases only together with attention biases")
        bias = "all" if mlp_bias else "attention" if attention_bias else "none"
    elif model_type == "qwen2":
        bias = "qkv"  # Qwen2Attention: q, k, v with bias, o_proj without, whatever the config says
    moe = None
    if model_type == "mixtral":
        moe = MoESpec(experts=cfg.need("num_local_experts"), top_k=cfg.need("num_experts_per_tok"), expert_ffn=ffn)
    return {
        "layers": cfg.need("num_hidden_layers"),
        "hidden": hidden,
        "heads": heads,
        "kv_heads": _mha_none(kv_heads, heads),
        "head_dim": _head_dim(cfg, hidden, heads),
        "ffn_hidden": ffn,
        "vocab": cfg.need("vocab_size"),
        "max_seq": cfg.need("max_position_embeddings"),
        "bias": bias,
        "tied_embeddings": cfg.flag("tie_word_embeddings", False),
        "moe": moe,
        **_window(cfg, model_type, cfg.need("num_hidden_layers")),
    }


def _gpt2(cfg: _Config, model_type: str) -> Fields:
    """GPT-2: LayerNorm, two-matrix GeLU MLP, biases everywhere, learned positions, tied head."""
    if cfg.flag("add_cross_attention", False):
        raise cfg.refuse("add_cross_attention", "cross-attention blocks (encoder-decoder use) are not modelled")
    hidden = cfg.need("n_embd", "hidden_size")
    return {
        "layers": cfg.need("n_layer", "num_hidden_layers"),
        "hidden": hidden,
        "heads": cfg.need("n_head", "num_attention_heads"),
        "ffn_hidden": cfg.optional("n_inner", 4 * hidden),
        "vocab": cfg.need("vocab_size"),
        "max_seq": cfg.need("n_positions", "max_position_embeddings"),
        "mlp": "gelu",  # any activation_function: the parameter shapes are those of a two-matrix MLP
        "norm": "layernorm",
        "bias": "all",
        "position": "learned",
        "tied_embeddings": cfg.flag("tie_word_embeddings", True),
    }


def _falcon(cfg: _Config, model_type: str) -> Fields:
    """Falcon-7B style: multi-query attention, one LayerNorm feeding attention and MLP in parallel."""
    if cfg.flag("new_decoder_architecture", False):
        raise cfg.refuse(
            "new_decoder_architecture",
            "the Falcon-40B/180B block (grouped KV heads with two LayerNorms in parallel) is not modelled",
        )
    if cfg.flag("alibi", False):
        raise cfg.refuse("alibi", "ALiBi attention is not modelled")
    hidden, heads = cfg.need("hidden_size", "n_embed"), cfg.need("num_attention_heads")
    # Without the new architecture HF ignores num_kv_heads: one KV head (multi_query) or as many as heads.
    multi_query = cfg.flag("multi_query", True)
    return {
        "layers": cfg.need("num_hidden_layers"),
        "hidden": hidden,
        "heads": heads,
        "kv_heads": _mha_none(1 if multi_query else None, heads),
        "ffn_hidden": cfg.optional("ffn_hidden_size", 4 * hidden),
        "vocab": cfg.need("vocab_size"),
        # falcon-7b's own config.json has no max_position_embeddings; FalconConfig defaults to 2048.
        "max_seq": cfg.optional("max_position_embeddings", 2048),
        "mlp": "gelu",
        "norm": "layernorm",
        "bias": "all" if cfg.flag("bias", False) else "none",
        "position": "rope",
        "tied_embeddings": cfg.flag("tie_word_embeddings", True),
        "parallel_block": cfg.flag("parallel_attn", True),
    }


# first_k_dense_replace when absent: DeepseekV2Config and DeepseekV3Config defaults.
_DENSE_DEFAULT = {"deepseek_v2": 0, "deepseek_v3": 3}


def _deepseek(cfg: _Config, model_type: str) -> Fields:
    """DeepSeek-V2/V3: multi-head latent attention, shared + routed experts after the first dense layers.

    The multi-token-prediction module of V3 (num_nextn_predict_layers) is not part of the transformers
    model, and is not counted here either.
    """
    for key in ("attention_bias", "mlp_bias"):
        if cfg.flag(key, False):
            raise cfg.refuse(key, "DeepSeek layers with biases are not modelled")
    # transformers makes every layer after the dense ones MoE; DeepSeek's own code honours moe_layer_freq.
    freq = cfg.data.get("moe_layer_freq", 1)
    if freq != 1:
        raise cfg.refuse("moe_layer_freq", "planner models an MoE MLP in every layer after first_k_dense_replace")
    if "q_lora_rank" not in cfg.data:
        raise cfg.error("missing required key 'q_lora_rank' (null for a full-rank Q projection)")
    mla = MLASpec(
        q_lora_rank=cfg.optional("q_lora_rank", None),
        kv_lora_rank=cfg.need("kv_lora_rank"),
        qk_rope_head_dim=cfg.need("qk_rope_head_dim"),
        qk_nope_head_dim=cfg.need("qk_nope_head_dim"),
        v_head_dim=cfg.need("v_head_dim"),
    )
    dense = cfg.data.get("first_k_dense_replace", _DENSE_DEFAULT[model_type])
    moe = MoESpec(
        experts=cfg.need("n_routed_experts"),
        top_k=cfg.need("num_experts_per_tok"),
        expert_ffn=cfg.need("moe_intermediate_size"),
        # HF builds the shared experts as one MLP of width n_shared·moe_intermediate: the same count.
        shared_experts=cfg.need("n_shared_experts", minimum=0),
        dense_layers=cfg.check_int("first_k_dense_replace", dense, 0),
    )
    return {
        "layers": cfg.need("num_hidden_layers"),
        "hidden": cfg.need("hidden_size"),
        "heads": cfg.need("num_attention_heads"),
        "ffn_hidden": cfg.need("intermediate_size"),
        "vocab": cfg.need("vocab_size"),
        "max_seq": cfg.need("max_position_embeddings"),
        "tied_embeddings": cfg.flag("tie_word_embeddings", False),
        "moe": moe,
        "mla": mla,
    }


def _qk_normed(cfg: _Config, model_type: str) -> Fields:
    """Qwen3 and Qwen3-MoE: the gated block with an RMSNorm of head_dim on each head's query and key
    (Qwen3Attention q_norm/k_norm). Every attention projection carries attention_bias."""
    hidden, heads = cfg.need("hidden_size"), cfg.need("num_attention_heads")
    kv = cfg.data.get("num_key_value_heads", _KV_DEFAULT.get(model_type))
    kv_heads = heads if kv is None else cfg.check_int("num_key_value_heads", kv, 1)
    d = cfg.optional("head_dim", 128 if model_type == "qwen3" else None)  # Qwen3Config's default
    head_dim = None if d is None or (hidden % heads == 0 and d == hidden // heads) else d
    ffn = cfg.need("intermediate_size")
    moe = None
    dense_layers = 0
    layers = cfg.need("num_hidden_layers")
    if model_type == "qwen3_moe":
        experts = cfg.need("num_experts", minimum=0)
        if experts == 0:
            raise cfg.refuse("num_experts", "a Qwen3-MoE config without experts is a dense Qwen3; use model_type qwen3")
        if cfg.data.get("decoder_sparse_step", 1) != 1:
            raise cfg.refuse("decoder_sparse_step", "planner models an MoE MLP in every layer after the dense ones")
        only = cfg.data.get("mlp_only_layers") or []
        if not isinstance(only, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in only) \
                or sorted(only) != list(range(len(only))) or len(only) > layers:
            raise cfg.refuse("mlp_only_layers", "planner models dense MLPs in the first layers only (0, 1, …)")
        dense_layers = len(only)
        moe = MoESpec(experts=experts, top_k=cfg.need("num_experts_per_tok"),
                      expert_ffn=cfg.need("moe_intermediate_size"), dense_layers=dense_layers)
    return {
        "layers": layers,
        "hidden": hidden,
        "heads": heads,
        "kv_heads": _mha_none(kv_heads, heads),
        "head_dim": head_dim,
        "ffn_hidden": ffn,
        "vocab": cfg.need("vocab_size"),
        "max_seq": cfg.need("max_position_embeddings"),
        "bias": "attention" if cfg.flag("attention_bias", False) else "none",
        "qk_norm": "head",
        "tied_embeddings": cfg.flag("tie_word_embeddings", False),
        "moe": moe,
        **_window(cfg, model_type, layers),
    }


def _gpt_oss(cfg: _Config, model_type: str) -> Fields:
    """gpt-oss: every layer an MoE of biased SwiGLU experts behind a biased router, biased q/k/v/o projections, a
    learned sink logit per head, sliding-window attention in alternate layers (GptOssConfig layer_types)."""
    if not cfg.flag("attention_bias", True):
        raise cfg.refuse("attention_bias", "gpt-oss's experts and router keep their biases; planner models them "
                         "together with the attention biases only")
    hidden, heads = cfg.need("hidden_size"), cfg.need("num_attention_heads")
    kv = cfg.data.get("num_key_value_heads", 8)
    kv_heads = heads if kv is None else cfg.check_int("num_key_value_heads", kv, 1)
    d = cfg.optional("head_dim", 64)
    ffn = cfg.need("intermediate_size")
    layers = cfg.need("num_hidden_layers")
    return {
        "layers": layers,
        "hidden": hidden,
        "heads": heads,
        "kv_heads": _mha_none(kv_heads, heads),
        "head_dim": None if hidden % heads == 0 and d == hidden // heads else d,
        "ffn_hidden": ffn,
        "vocab": cfg.need("vocab_size"),
        "max_seq": cfg.need("max_position_embeddings"),
        "bias": "all",
        "attention_sinks": True,
        "tied_embeddings": cfg.flag("tie_word_embeddings", False),
        "moe": MoESpec(experts=cfg.need("num_local_experts"), top_k=cfg.need("num_experts_per_tok"), expert_ffn=ffn),
        **_window(cfg, model_type, layers),
    }


_BUILDERS: dict[str, Callable[[_Config, str], Fields]] = {
    "llama": _gated,
    "mistral": _gated,
    "mixtral": _gated,
    "qwen2": _gated,
    "qwen3": _qk_normed,
    "qwen3_moe": _qk_normed,
    "gpt_oss": _gpt_oss,
    "gpt2": _gpt2,
    "falcon": _falcon,
    "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek,
}

SUPPORTED_MODEL_TYPES = tuple(sorted(_BUILDERS))


def _read(source: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[Mapping[str, Any], str, Path | None]:
    """The config as a mapping, the name to put in messages, and the file it came from."""
    if isinstance(source, Mapping):
        return source, "config.json", None
    path = Path(source)
    try:
        folder = path.is_dir()
    except (OSError, ValueError):  # a name too long or with a NUL byte: read_text says so
        folder = False
    if folder:
        path = path / "config.json"
    text, where = read_text(path, "config")
    data = parse_json_object(text, where)
    return data, str(path), path


def _default_name(data: Mapping[str, Any], path: Path | None) -> str:
    """The file's name (its folder's for config.json); for a dict, the repo in _name_or_path."""
    if path is not None:
        return (path.parent.name if path.name == "config.json" else path.stem).lower() or "custom"
    repo = data.get("_name_or_path")
    if isinstance(repo, str) and repo.strip("/"):
        return repo.strip("/").rsplit("/", 1)[-1].lower()
    return "custom"


def _pretrain_seq(cfg: _Config, max_seq: int) -> int | None:
    """The context before rope scaling stretched it (transformers' rope_scaling
    `original_max_position_embeddings`: Llama 3.1's llama3 scaling, YaRN), when shorter than max_seq."""
    scaling = cfg.data.get("rope_scaling")
    if not isinstance(scaling, Mapping) or scaling.get("original_max_position_embeddings") is None:
        return None
    original = cfg.check_int("rope_scaling.original_max_position_embeddings",
                             scaling["original_max_position_embeddings"], 1)
    return original if original < max_seq else None


def model_from_hf_config(
    path_or_dict: str | os.PathLike[str] | Mapping[str, Any], name: str | None = None
) -> ModelSpec:
    """A ModelSpec from a config.json path (or its folder) or an already parsed dict.

    Raises InputError for unreadable or malformed JSON, a missing or ill-typed key, an unsupported
    model_type, or an architecture option planner does not model; the message names the file and key.
    """
    data, where, path = _read(path_or_dict)
    cfg = _Config(data, where)
    model_type = data.get("model_type")
    if model_type is None:
        raise cfg.error("missing required key 'model_type'")
    builder = _BUILDERS.get(model_type) if isinstance(model_type, str) else None
    if builder is None:
        raise cfg.error(f"model_type {model_type!r} is not supported (supported: {', '.join(SUPPORTED_MODEL_TYPES)})")
    try:
        fields = builder(cfg, model_type)
        fields["pretrain_seq"] = _pretrain_seq(cfg, fields["max_seq"])
        repo = data.get("_name_or_path")
        source = f"{repo} config.json" if isinstance(repo, str) and repo else str(path or "config.json")
        return ModelSpec(name=name or _default_name(data, path), source=source, **fields)
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, where)) from exc
