"""`quark models`: info (parameters, FLOPs, memory), list, and the Hugging Face export/import round trip."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from _train_data import corpus_home, one_thread, token_home  # noqa: F401
from quark.modelfolder import load_model, save_model
from quark.modelfolder.flops import activation_bytes
from quark.models.llm import LLM, LLMConfig
from quark.tokenizer import Tokenizer

CODE = (Path(sysconfig.get_paths()["stdlib"]) / "difflib.py").read_text()[:4000] + "\n\tx  = 1234  # é 中文 😀\r\n  "


def test_info_counts_the_blueprint_without_allocating_it(quark) -> None:
    out = quark.json("models", "info", "--preset", "blueprint-700m", "--batch", "2", "--seq", "8192")
    V, d, L, kv, inter = 65536, 1536, 24, 8 * 96, 4096
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * inter + 2 * d
    n = V * d + L * per_layer + d  # tied embeddings count once
    assert out["parameters"] == n and out["embedding_parameters"] == V * d
    assert out["non_embedding_parameters"] == n - V * d
    assert out["flops_per_token"] == 6 * n + 12 * L * 8192 * d  # tied: the lm_head's matmul is the embedding's
    mem = out["training_bytes"]
    assert out["weight_bytes"] == {"float32": 4 * n, "bfloat16": 2 * n}
    assert mem["optimizer"] == 8 * n and mem["gradients"] == 4 * n
    assert 0 < mem["activations_checkpointed"] < mem["activations"] / 3
    assert mem["total"] == 16 * n + mem["activations"]
    assert quark("models", "info", "--preset", "huge", expect=1).output.count("\n") == 1


def test_activation_estimate_tracks_what_autograd_saves() -> None:
    cfg = LLMConfig(vocab_size=512, n_layer=2, n_head=4, n_kv_head=2, n_embd=64, max_seq_len=128)
    model = LLM(cfg).train()
    params = {p.data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    idx = torch.randint(0, 512, (4, 128))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(idx, idx)
    estimate = activation_bytes(cfg, 4, 128, compute_bytes=4, checkpointing=False)
    assert estimate == pytest.approx(sum(saved.values()), rel=0.15)


def _model(home: Path, name: str, **overrides) -> LLM:
    """A randomly initialised model with non-trivial norms, published in `home` with its tokenizer."""
    tokenizer = home / "tokenizers" / "tok" / "tokenizer.model"
    cfg = LLMConfig(vocab_size=Tokenizer.load(tokenizer).vocab_size, n_layer=2, n_head=4, n_kv_head=2, n_embd=64,
                    max_seq_len=128, init_std=0.1, **overrides)
    torch.manual_seed(0)
    model = LLM(cfg)
    with torch.no_grad():
        for name_, p in model.named_parameters():
            if name_.endswith("layernorm.weight") or name_ == "norm.weight":
                p.uniform_(0.5, 1.5)
    save_model(home / "models" / name, model, tokenizer)
    return model.eval()


@pytest.mark.parametrize("tied", [True, False])
def test_hf_export_loads_in_transformers_with_the_same_logits_and_tokens(token_home: Path, quark, tmp_path: Path,
                                                                          tied: bool) -> None:
    transformers = pytest.importorskip("transformers")
    ours = _model(token_home, "m", tie_embeddings=tied, rope_theta=5e5, norm_eps=1e-6)
    out = tmp_path / "m-hf"
    quark("models", "export", "m", "--format", "hf", "--out", str(out))

    hf = transformers.LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert hf.config.tie_word_embeddings is tied and hf.config.num_key_value_heads == 2
    idx = torch.randint(0, ours.config.vocab_size, (2, 100), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (ours(idx) - hf(idx).logits).abs().max().item()
    assert diff <= 1e-4

    tokenizer = Tokenizer.load(out / "tokenizer.model")
    auto = transformers.AutoTokenizer.from_pretrained(out)
    ids = tokenizer.encode(CODE)
    assert auto.encode(CODE, add_special_tokens=False) == ids and auto.decode(ids) == CODE
    assert auto.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=True, add_generation_prompt=True,
                                    return_dict=False) == tokenizer.encode_chat([{"role": "user", "content": "hi"}])

    # And back: the export imports as a Quark model with the same logits.
    quark("models", "import", str(out), "--name", "m-again")
    again = load_model(token_home / "models" / "m-again")
    with torch.no_grad():
        assert torch.equal(again(idx), ours(idx))
    assert quark("models", "export", "m", "--out", str(out), expect=1).output.count("\n") == 1  # not over a folder


def test_import_a_sharded_llama_folder_with_a_home_tokenizer(token_home: Path, quark, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    ours = _model(token_home, "src", tie_embeddings=False)
    exported = tmp_path / "export"
    quark("models", "export", "src", "--out", str(exported))
    sharded = tmp_path / "sharded"
    transformers.LlamaForCausalLM.from_pretrained(exported).save_pretrained(sharded, max_shard_size="100KB")
    assert len(list(sharded.glob("model-*.safetensors"))) > 1 and (sharded / "model.safetensors.index.json").is_file()

    assert "tokenizer.model" in quark("models", "import", str(sharded), "--name", "mine", expect=1).output
    out = quark.json("models", "import", str(sharded), "--name", "mine", "--tokenizer", "tok")
    assert out["parameters"] == ours.num_parameters()
    idx = torch.randint(0, ours.config.vocab_size, (1, 50))
    with torch.no_grad():
        assert (load_model(token_home / "models" / "mine")(idx) - ours(idx)).abs().max() <= 1e-5
    listed = {m["name"]: m for m in quark.json("models", "list")["models"]}
    mine = listed["mine"]
    assert mine["source"] == f"import:{sharded.resolve()}" and mine["parameters"] == out["parameters"]


def test_truncated_safetensors_fail_in_one_line_naming_the_file(token_home: Path, quark, tmp_path: Path) -> None:
    _model(token_home, "m")
    out = tmp_path / "m-hf"
    quark("models", "export", "m", "--out", str(out))
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    result = quark("models", "import", str(out), "--name", "broken", expect=1)
    assert str(weights) in result.output and result.output.count("\n") == 1
    assert not (token_home / "models" / "broken").exists()

    own = token_home / "models" / "m" / "model.safetensors"
    own.write_bytes(own.read_bytes()[:100])
    result = quark("models", "export", "m", "--out", str(tmp_path / "again"), expect=1)
    assert str(own) in result.output and not (tmp_path / "again").exists()
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "hidden_act": "gelu"}))
    assert "hidden_act" in quark("models", "import", str(out), "--name", "x", expect=1).output


def test_library_never_imports_transformers() -> None:
    code = ("import sys, quark.modelfolder.hf_llama, quark.modelfolder.flops, quark.commands; "
            "assert 'transformers' not in sys.modules, 'transformers imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
