"""`quark finetune sft --lora`: a PEFT-layout adapter beside a base that stays untouched, loaded by
the engine (merged on load) and folded into a model of its own by `quark models merge`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from _align import align_home, corpus_home, one_thread, synth_data  # noqa: F401
from conftest import Quark
from quark.align.data import prompts_of, read_chat
from quark.errors import QuarkError
from quark.inference import Engine, SamplingParams
from quark.modelfolder import load_model


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_lora_adapter_trains_alone_and_loads_merged(align_home: Path, quark: Quark) -> None:
    base = align_home / "models" / "rand"
    before = _digest(base / "model.safetensors")
    out = quark.json("finetune", "sft", "--model", "rand", "--data", "chat", "--name", "chat-lora", "--lora",
                     "--rank", "4", "--alpha", "8", "--targets", "q_proj,v_proj,down_proj",
                     "--set", "optim.lr=1e-2", "--set", "train.seq_len=128", "--set", "train.sample_tokens=0",
                     "--max-steps", "25", "--eval-every", "25")
    adapter = base / "adapters" / "chat-lora"
    assert out["output"] == str(adapter) and out["adapter"] is True
    assert not (align_home / "models" / "chat-lora").exists()
    assert {p.name for p in adapter.iterdir()} == {"adapter_config.json", "adapter_model.safetensors", "card.md"}

    # PEFT layout: the config names the base and targets; the weights are the adapter matrices only.
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
    assert sorted(config["target_modules"]) == ["down_proj", "q_proj", "v_proj"]
    assert config["base_model_name_or_path"] == "rand"
    weights = load_file(adapter / "adapter_model.safetensors")
    assert len(weights) == 2 * 3 * 2  # lora_A and lora_B × 3 targets × 2 layers
    assert all(".lora_A." in k or ".lora_B." in k for k in weights)
    assert all(v.shape[0] == 4 or v.shape[1] == 4 for v in weights.values())
    assert any(k.endswith("lora_B.weight") and v.abs().max() > 0 for k, v in weights.items())  # B left zero
    assert _digest(base / "model.safetensors") == before  # the base was never written to
    assert "LoRA adapter" in (adapter / "card.md").read_text()

    held_out = prompts_of(read_chat(align_home / "data" / "chat" / "val.jsonl"))[:6]
    prompts = [Engine.load(base).chat_prompt(p) for p in held_out]
    prompts = [p for p in prompts if len(p) < 200]
    greedy = SamplingParams(max_tokens=24, temperature=0.0)
    plain = [c.token_ids for c in Engine.load(base).generate(prompts, greedy)]
    tuned_engine = Engine.load(base, adapter="chat-lora")
    tuned = [c.token_ids for c in tuned_engine.generate(prompts, greedy)]
    assert tuned_engine.name == "rand+chat-lora" and tuned != plain

    quark("models", "merge", "rand", "--adapter", "chat-lora", "--name", "rand-chat")
    merged = Engine.load(align_home / "models" / "rand-chat")
    assert [c.token_ids for c in merged.generate(prompts, greedy)] == tuned
    x = torch.tensor([prompts[0]])
    assert torch.allclose(merged.model(x), tuned_engine.model(x), atol=1e-5)
    assert not torch.allclose(load_model(base)(x), merged.model(x), atol=1e-3)
    listed = {m["name"]: m for m in quark.json("models", "list")["models"]}
    assert listed["rand"]["adapters"] == ["chat-lora"] and listed["rand-chat"]["source"] == "merge:rand+chat-lora"


def test_adapter_errors_are_one_line(align_home: Path, quark: Quark) -> None:
    result = quark("models", "merge", "rand", "--adapter", "ghost", "--name", "x", expect=1)
    assert "model 'rand' has no adapter 'ghost'" in result.output and "adapters: none" in result.output
    try:
        Engine.load(align_home / "models" / "rand", adapter="ghost")
    except QuarkError as exc:
        assert "no adapter 'ghost'" in str(exc)
    else:
        raise AssertionError("an unknown adapter loaded")
    # An adapter made for another architecture is refused, not half-applied.
    other = align_home / "models" / "rand" / "adapters" / "alien"
    other.mkdir(parents=True)
    (other / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
                                                           "target_modules": ["c_attn"]}))
    result = quark("models", "merge", "rand", "--adapter", "alien", "--name", "x", expect=1)
    assert "does not fit model 'rand'" in result.output.strip().splitlines()[-1]
    assert not (align_home / "models" / "x").exists()
