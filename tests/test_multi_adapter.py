"""Adapters side by side on one base (quark.inference.multi_lora): rows of one batch naming
different adapters give the tokens each gives alone, and the tokens of that adapter merged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from adapter_fixtures import make_adapter
from quark.errors import QuarkError
from quark.inference import Engine, PrefixCache, SamplingParams
from quark.inference.multi_lora import LoRALinear
from quark.modelfolder.adapters import side_by_side_adapters

GREEDY = SamplingParams(max_tokens=20, temperature=0)


@pytest.fixture(scope="module")
def base(tiny_model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Model `tiny` with adapters `code` (rank 4, attention and MLP) and `mesh` (rank 2, MLP only)."""
    home = tmp_path_factory.mktemp("adapters") / "home"
    shutil.copytree(tiny_model_home, home)
    folder = home / "models" / "tiny"
    make_adapter(folder, "code", seed=1)
    make_adapter(folder, "mesh", seed=2, rank=2, targets=("gate_proj", "up_proj"))
    return folder


@pytest.fixture(scope="module")
def engine(base: Path) -> Engine:
    return Engine.load(base, adapters=["code", "mesh"])


@pytest.fixture(scope="module")
def prompts(engine: Engine) -> list[list[int]]:
    tok = engine.tokenizer
    return [tok.encode("def foo(x):"), tok.encode("import os\nimport sys\n\nclass Loader:\n    pass"),
            tok.encode("for i in range(10):")]


def _tokens(completions) -> list[list[int]]:
    return [c.token_ids for c in completions]


def test_rows_naming_different_adapters_in_one_batch_match_each_alone_and_merged(
        base: Path, engine: Engine, prompts: list[list[int]]) -> None:
    names = ["code", "mesh", None]
    together = _tokens(engine.generate(prompts, GREEDY, adapters=names))
    alone = [engine.generate([p], GREEDY, adapters=[n])[0].token_ids for p, n in zip(prompts, names)]
    assert together == alone
    merged = {n: Engine.load(base, adapter=n) for n in ("code", "mesh")}
    plain = Engine.load(base)
    assert together[0] == merged["code"].generate([prompts[0]], GREEDY)[0].token_ids
    assert together[1] == merged["mesh"].generate([prompts[1]], GREEDY)[0].token_ids
    assert together[2] == plain.generate([prompts[2]], GREEDY)[0].token_ids
    # The adapters do change the answer: the same prompt under each differs.
    one = [prompts[0]] * 3
    assert len({tuple(t) for t in _tokens(engine.generate(one, GREEDY, adapters=["code", "mesh", None]))}) == 3


def test_logits_equal_the_merged_models(base: Path, engine: Engine, prompts: list[list[int]]) -> None:
    ids = torch.tensor([prompts[0][:8]] * 2)
    merged = Engine.load(base, adapter="code").model
    with torch.inference_mode():
        with engine.selecting([1, 0]):
            mixed = engine.model(ids)
        base_logits = engine.model(ids)  # outside a selection the model is the base
        torch.testing.assert_close(mixed[0], merged(ids[:1])[0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(mixed[1], base_logits[1])
        torch.testing.assert_close(base_logits, Engine.load(base).model(ids))


def test_a_row_joining_a_running_batch_keeps_its_adapter(engine: Engine, prompts: list[list[int]]) -> None:
    batch = engine.live_batch()
    first = batch.add([prompts[0]], GREEDY, adapters=["code"])
    got: dict[int, list[int]] = {}
    for step in range(30):
        if step == 3:
            later = batch.add([prompts[1], prompts[2]], GREEDY, adapters=["mesh", "code"])
        events, _ = batch.step()
        for e in events:
            got.setdefault(e.index, []).extend(e.token_ids)
        if not batch:
            break
    expected = _tokens(engine.generate(prompts, GREEDY, adapters=["code", "mesh", "code"]))
    assert [got[k] for k in [*first, *later]] == expected


def test_views_prefix_cache_and_sampling_per_adapter(base: Path, prompts: list[list[int]]) -> None:
    cached = Engine.load(base, adapters=["code", "mesh"], prefix_cache=PrefixCache(64 << 20))
    code = cached.for_adapter("code")
    assert code.adapter == "code" and cached.adapter is None and code.model is cached.model
    # A prefix stored under one adapter is never served to another: the same prompt twice,
    # base then code, still gives the code adapter's tokens.
    long = prompts[1] * 2
    plain_first = cached.generate([long], GREEDY)[0].token_ids
    assert code.generate([long], GREEDY)[0].token_ids == Engine.load(base, adapter="code").generate(
        [long], GREEDY)[0].token_ids != plain_first
    assert cached.generate([long], GREEDY)[0].token_ids == plain_first  # and the base's own prefix still serves it
    seeded = SamplingParams(max_tokens=12, temperature=1.0, seed=5)
    assert (cached.generate([prompts[0], prompts[0]], seeded, adapters=["mesh", None])[0].token_ids
            == cached.generate([prompts[0]], seeded, adapters=["mesh"])[0].token_ids)


def test_only_targeted_layers_are_wrapped_and_bad_adapters_are_one_line(base: Path, engine: Engine) -> None:
    wrapped = {name for name, m in engine.model.named_modules() if isinstance(m, LoRALinear)}
    assert wrapped == {f"layers.{i}.{part}" for i in range(2) for part in
                       ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj", "mlp.gate_proj", "mlp.up_proj")}
    assert engine.adapters == ["code", "mesh"]
    for call, message in [
        (lambda: engine.generate([[5, 6]], GREEDY, adapters=["ghost"]),
         "no adapter 'ghost' is loaded (adapters: code, mesh)"),
        (lambda: engine.for_adapter("ghost"), "no adapter 'ghost'"),
        (lambda: Engine.load(base, adapters=["ghost"]), "model 'tiny' has no adapter 'ghost'"),
        (lambda: Engine.load(base, adapter="code", adapters=["mesh"]), "not both"),
        (lambda: Engine.load(base, adapters=["code"], compile="on"), "--compile on does not cover adapters"),
    ]:
        with pytest.raises(QuarkError, match=message.replace("(", r"\(").replace(")", r"\)")):
            call()
    odd = base / "adapters" / "dora"
    shutil.copytree(base / "adapters" / "code", odd)
    config = json.loads((odd / "adapter_config.json").read_text())
    (odd / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(QuarkError, match="adapter 'dora' uses use_dora, which only a merged adapter computes"):
        Engine.load(base, adapters=["dora"])
    usable, skipped = side_by_side_adapters(base)  # what serve --adapters all and chat load: the rest
    assert usable == ["code", "mesh"] and list(skipped) == ["dora"] and "use_dora" in skipped["dora"]
    shutil.rmtree(odd)


def test_adapters_ride_on_an_int8_base(base: Path, prompts: list[list[int]]) -> None:
    quantized = Engine.load(base, quantize="int8", adapters=["code", "mesh"])
    names = ["code", None]
    together = _tokens(quantized.generate(prompts[:2], GREEDY, adapters=names))
    assert together == [quantized.generate([p], GREEDY, adapters=[n])[0].token_ids
                        for p, n in zip(prompts[:2], names)]
    assert together[0] != quantized.generate([prompts[0]], GREEDY)[0].token_ids
