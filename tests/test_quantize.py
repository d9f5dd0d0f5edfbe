"""int8 weight-only quantization: accuracy against fp32, memory, saved folders, refusals."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from conftest import Quark
from quark.errors import QuarkError
from quark.inference import Engine, SamplingParams
from quark.modelfolder.quantized import Int8Linear, weight_bytes


@pytest.fixture(scope="module")
def engines(tiny_model_home: Path) -> tuple[Engine, Engine]:
    folder = tiny_model_home / "models" / "tiny"
    return Engine.load(folder), Engine.load(folder, quantize="int8")


def _prompts(engine: Engine) -> list[list[int]]:
    tok = engine.tokenizer
    return [[tok.bos_id, *tok.encode("def parse(line):\n    return line.split(',')")],
            [tok.bos_id, *tok.encode("import sys\nfor arg in sys.argv:")]]


def test_int8_logits_and_greedy_text_stay_close_to_fp32(engines: tuple[Engine, Engine]) -> None:
    full, int8 = engines
    for prompt in _prompts(full):
        ids = torch.tensor([prompt])
        with torch.no_grad():
            a, b = full.model(ids)[0], int8.model(ids)[0]
        assert (a - b).abs().max() < 0.1 * a.std()  # per-channel int8 error is a small fraction of the spread
        assert (a.argmax(-1) == b.argmax(-1)).float().mean() >= 0.9
    params = SamplingParams(max_tokens=8, temperature=0)
    for x, y in zip(full.generate(_prompts(full), params), int8.generate(_prompts(full), params)):
        assert x.token_ids[:4] == y.token_ids[:4]


def test_int8_weights_take_about_four_times_fewer_bytes(engines: tuple[Engine, Engine]) -> None:
    full, int8 = engines
    ratio = weight_bytes(full.model) / weight_bytes(int8.model)
    assert 3.5 < ratio <= 4.0  # fp32 -> int8 is 4x; per-row scales and fp32 norms cost a little


@pytest.mark.parametrize("in_features", [96, 60])  # the int8 kernel's shape, and the dequantizing fallback
def test_int8_linear_matches_its_dequantized_weights(in_features: int) -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(in_features, 40, bias=False)
    q = Int8Linear.from_float(linear)
    x = torch.randn(3, 5, in_features)
    reference = x @ (q.weight.float() * q.scale[:, None]).T
    assert torch.allclose(q(x), reference, rtol=0.02, atol=0.02 * reference.abs().max().item())
    assert (q(x) - linear(x)).abs().max() < 0.05 * linear(x).abs().max()


def test_quantize_command_saves_a_folder_that_loads_without_requantizing(tiny_model_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(tiny_model_home, home)
    quark = Quark(home)
    result = quark.json("models", "quantize", "tiny", "--mode", "int8", "--out", "tiny-q")
    assert result["model"] == "tiny-q" and result["ratio"] > 3.5

    folder = home / "models" / "tiny-q"
    config = json.loads((folder / "config.json").read_text())
    assert config["quantization"]["mode"] == "int8" and config["quantized_from"] == "tiny"
    with safe_open(folder / "model.safetensors", "pt") as f:
        assert f.get_tensor("layers.0.mlp.up_proj.weight").dtype == torch.int8
        assert "lm_head.weight" not in f.keys()  # tied: the head is the int8 embedding table
    full_size = (home / "models" / "tiny" / "model.safetensors").stat().st_size
    assert (folder / "model.safetensors").stat().st_size < full_size / 3

    saved = Engine.load(folder)
    fresh = Engine.load(home / "models" / "tiny", quantize="int8")
    for engine in (saved, fresh):  # one int8 table serves as embedding and head
        assert engine.model.lm_head.weight is engine.model.embed_tokens.weight
    params = SamplingParams(max_tokens=10, temperature=0)
    assert saved.generate(_prompts(saved), params)[0].token_ids == fresh.generate(_prompts(saved), params)[0].token_ids
    with pytest.raises(QuarkError, match="already quantized"):
        Engine.load(folder, quantize="nf4")

    again = quark("models", "quantize", "tiny", "--out", "tiny-q", expect=None)
    assert again.exit_code == 1 and "already exists" in again.output
    nf4 = quark("models", "quantize", "tiny", "--mode", "nf4", expect=None)
    assert nf4.exit_code == 1 and "only int8" in nf4.output

    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(QuarkError, match="safetensors"):
        Engine.load(folder)


def test_generate_with_quantize(tiny_model_home: Path) -> None:
    quark = Quark(tiny_model_home)
    full = quark.json("generate", "--model", "tiny", "--prompt", "def f(x):", "--max-tokens", "6", "--temperature", "0")
    int8 = quark.json("generate", "--model", "tiny", "--prompt", "def f(x):", "--max-tokens", "6", "--temperature", "0",
                      "--quantize", "int8")
    assert int8["quantize"] == "int8" and int8["completion_token_ids"][:3] == full["completion_token_ids"][:3]
    refused = quark("generate", "--model", "tiny", "--prompt", "x", "--quantize", "nf4", "--device", "cpu", expect=1)
    assert "nf4 runs on CUDA only" in refused.output and len(refused.output.strip().splitlines()) == 1
