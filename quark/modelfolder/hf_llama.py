"""Hugging Face Llama folders: export a Quark model so transformers, vLLM and llama.cpp load it, and
import a Llama-architecture safetensors folder (Quark's own export, or a user's) as a Quark model.

Quark's parameter names are Llama's without the "model." prefix (lm_head.weight excepted), its RoPE
is Llama's rotate-half, and its config fields map one to one (table below), so both directions are
renames. transformers is never imported here: the formats are plain JSON and safetensors.

The tokenizer travels as tokenizer.model (SentencePiece, for Quark and llama.cpp) and as
tokenizer.json (a tokenizers Unigram model built from the same pieces and scores, with byte
fallback and Quark's whitespace rules), which transformers' AutoTokenizer loads and which encodes
and decodes text exactly as Quark does. One intended difference: like every HF chat tokenizer it
parses special tokens written in the text ("<|user|>"); Quark's own tokenizer never does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from quark.atomic import atomic_dir
from quark.errors import QuarkError
from quark.modelfolder import DEFAULT_GENERATION, check_state, generation_defaults, load_model, load_state, read_config_json, save_model
from quark.models.llm import LLM, LLMConfig
from quark.tokenizer import Tokenizer

# Quark LLMConfig field -> LlamaConfig key.
CONFIG_KEYS = {"vocab_size": "vocab_size", "n_embd": "hidden_size", "intermediate_size": "intermediate_size",
               "n_layer": "num_hidden_layers", "n_head": "num_attention_heads", "n_kv_head": "num_key_value_heads",
               "max_seq_len": "max_position_embeddings", "rope_theta": "rope_theta", "norm_eps": "rms_norm_eps",
               "tie_embeddings": "tie_word_embeddings", "init_std": "initializer_range"}
_SPACE = "\u2581"


def hf_name(name: str) -> str:
    return name if name == "lm_head.weight" else f"model.{name}"


def quark_name(name: str) -> str:
    return name.removeprefix("model.")


def hf_config(cfg: LLMConfig, tokenizer: Tokenizer) -> dict[str, Any]:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
            **{hf: getattr(cfg, ours) for ours, hf in CONFIG_KEYS.items()},
            "head_dim": cfg.head_dim, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
            "attention_dropout": 0.0, "rope_scaling": None, "torch_dtype": "float32",
            "bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}


def quark_config(data: dict[str, Any], where: Path) -> LLMConfig:
    """LLMConfig from a LlamaConfig config.json, refusing what Quark's architecture cannot express."""
    if data.get("model_type") not in (None, "llama") and "LlamaForCausalLM" not in data.get("architectures", []):
        raise QuarkError(f"{where}: model_type {data.get('model_type')!r} is not a Llama architecture")
    for key, expected in (("hidden_act", "silu"), ("attention_bias", False), ("mlp_bias", False)):
        if data.get(key, expected) != expected:
            raise QuarkError(f"{where}: {key}={data[key]!r} is not supported (Quark's Llama has {key}={expected!r})")
    rope = data.get("rope_scaling") or data.get("rope_parameters") or {}
    if not isinstance(rope, dict):
        raise QuarkError(f"{where}: rope_scaling must be an object or null, got {rope!r}")
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise QuarkError(f"{where}: rope scaling {rope.get('rope_type', rope.get('type'))!r} is not supported")
    if "rope_theta" not in data and "rope_theta" in rope:
        data = {**data, "rope_theta": rope["rope_theta"]}
    values = {ours: data[hf] for ours, hf in CONFIG_KEYS.items() if hf in data}
    values.setdefault("tie_embeddings", False)  # LlamaConfig's default
    if "n_kv_head" not in values and "n_head" in values:
        values["n_kv_head"] = values["n_head"]
    missing = [CONFIG_KEYS[k] for k in ("vocab_size", "n_embd", "n_layer", "n_head",
                                        "intermediate_size") if k not in values]
    if missing:
        raise QuarkError(f"{where}: missing LlamaConfig key(s) {', '.join(missing)}")
    try:
        cfg = LLMConfig(**values)
    except (TypeError, ValueError) as exc:
        raise QuarkError(f"{where}: {exc}") from None
    if data.get("head_dim", cfg.head_dim) != cfg.head_dim:
        raise QuarkError(f"{where}: head_dim {data['head_dim']} differs from hidden_size / num_attention_heads "
                         f"({cfg.head_dim}), which Quark's attention assumes")
    return cfg


def tokenizer_json(tokenizer: Tokenizer) -> dict[str, Any]:
    """A tokenizers (HF) Unigram tokenizer equivalent to Quark's SentencePiece model.

    SentencePiece splits words before each run of spaces (split_by_whitespace with
    allow_whitespace_only_pieces): the Split regex below is that rule; spaces become U+2581 and back,
    and byte-fallback pieces fuse back into UTF-8 when decoding.
    """
    sp = tokenizer.sp
    special = [i for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)]
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": sp.id_to_piece(i), "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True} for i in special],
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": _SPACE},
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": f"{_SPACE}+[^{_SPACE}]*|[^{_SPACE}]+"},
                          "behavior": "Isolated", "invert": False},
        "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": _SPACE}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "Unigram", "unk_id": sp.unk_id(), "byte_fallback": True,
                  "vocab": [[sp.id_to_piece(i), sp.get_score(i)] for i in range(sp.get_piece_size())]},
    }


# Quark's chat template (quark.tokenizer.encode_chat) in the Jinja form transformers and vLLM render.
CHAT_TEMPLATE = ("{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _tokenizer_files(folder: Path, tokenizer: Tokenizer, max_len: int) -> None:
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer_json(tokenizer), ensure_ascii=False), encoding="utf-8")
    sp = tokenizer.sp
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": sp.id_to_piece(tokenizer.bos_id),
        "eos_token": sp.id_to_piece(tokenizer.eos_id), "unk_token": sp.id_to_piece(sp.unk_id()),
        "pad_token": sp.id_to_piece(tokenizer.pad_id), "add_bos_token": False, "add_eos_token": False,
        "clean_up_tokenization_spaces": False, "model_max_length": max_len, "chat_template": CHAT_TEMPLATE,
    }, indent=2), encoding="utf-8")


def export_hf(model_folder: Path, out: Path) -> dict[str, Any]:
    """Write `out` (a new folder) that LlamaForCausalLM.from_pretrained and AutoTokenizer load."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise QuarkError(f"--out {out} exists and is not empty; choose a new folder")
    model = load_model(model_folder)
    cfg = model.config
    tokenizer = Tokenizer.load(Path(model_folder) / "tokenizer.model")
    state = {hf_name(k): v.contiguous() for k, v in model.state_dict().items()
             if not (cfg.tie_embeddings and k == "lm_head.weight")}
    generation = generation_defaults(Path(model_folder))
    with atomic_dir(out) as tmp:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(hf_config(cfg, tokenizer), indent=2))
        (tmp / "generation_config.json").write_text(json.dumps({
            "bos_token_id": tokenizer.bos_id, "eos_token_id": [tokenizer.eos_id, tokenizer.end_id],
            "pad_token_id": tokenizer.pad_id, "do_sample": True, **{k: generation[k] for k in DEFAULT_GENERATION}},
            indent=2))
        shutil.copyfile(Path(model_folder) / "tokenizer.model", tmp / "tokenizer.model")
        _tokenizer_files(tmp, tokenizer, cfg.max_seq_len)
    return {"out": str(out), "files": sorted(p.name for p in out.iterdir()), "parameters": model.num_parameters()}


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """model.safetensors, or the shards listed in model.safetensors.index.json."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, AttributeError) as exc:
            raise QuarkError(f"{index}: malformed index ({exc})") from None
        state: dict[str, torch.Tensor] = {}
        for name in files:
            state.update(load_state(folder / name))
        return state
    if not (folder / "model.safetensors").is_file():
        raise QuarkError(f"no weights in {folder}: expected model.safetensors or model.safetensors.index.json")
    return load_state(folder / "model.safetensors")


def import_hf(folder: Path, dest: Path, *, tokenizer_model: Path | None = None, source: str = "") -> dict[str, Any]:
    """Make `dest` a Quark model folder from a Llama-architecture safetensors folder."""
    folder = Path(folder)
    cfg = quark_config(read_config_json(folder, "Hugging Face model"), folder / "config.json")
    tokenizer_model = tokenizer_model or folder / "tokenizer.model"
    if not Path(tokenizer_model).is_file():
        raise QuarkError(f"no tokenizer.model in {folder}: Quark needs a SentencePiece tokenizer (pass --tokenizer)")
    tokenizer = Tokenizer.load(tokenizer_model)
    if tokenizer.vocab_size > cfg.vocab_size:
        raise QuarkError(f"tokenizer has {tokenizer.vocab_size} pieces but config.json vocab_size is {cfg.vocab_size}")
    # Older transformers saved RoPE's inverse frequencies as weights; Quark derives them from the config.
    state = {quark_name(k): v for k, v in _read_weights(folder).items() if not k.endswith("rotary_emb.inv_freq")}
    if cfg.tie_embeddings:
        state.pop("lm_head.weight", None)
    with torch.device("meta"):
        model = LLM(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()
                if not (cfg.tie_embeddings and k == "lm_head.weight")}
    check_state(state, expected, f"weights in {folder} do not match its config.json")
    model.load_state_dict(state, strict=False, assign=True)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    with atomic_dir(dest, replace=False) as tmp:
        save_model(tmp, model, tokenizer_model, extra_config={"source": source or f"import:{folder}"})
    return {"model": dest.name, "parameters": model.num_parameters(), "config": cfg.to_dict()}
