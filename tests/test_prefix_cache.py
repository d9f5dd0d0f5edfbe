"""The prefix cache: greedy output with it is the output without it, whatever the batch, the
eviction, the adapter or the quantization; and the cache really skips the prefix it holds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from quark.inference import Engine, PrefixCache, SamplingParams

GREEDY = SamplingParams(max_tokens=12, temperature=0)
MB = 2**20


@pytest.fixture(scope="module")
def folder(tiny_model_home: Path) -> Path:
    return tiny_model_home / "models" / "tiny"


@pytest.fixture(scope="module")
def plain(folder: Path) -> Engine:
    return Engine.load(folder)


def _system(engine: Engine, n: int = 0) -> list[int]:
    """A long shared prefix (~80 tokens), different for each n."""
    text = f"You are assistant number {n}. " + "Answer briefly and cite the file you read. " * 6
    return [engine.tokenizer.bos_id, *engine.tokenizer.encode(text)]


def _turns(engine: Engine) -> list[list[int]]:
    tok, system = engine.tokenizer, _system(engine)
    return [system + tok.encode(q) for q in ("def foo(x):", "import os\nimport sys", "class Loader:\n    pass")]


def _tokens(engine: Engine, prompts, params=GREEDY) -> list[list[int]]:
    return [c.token_ids for c in engine.generate(prompts, params)]


def test_single_requests_reuse_the_prefix_and_give_the_same_tokens(folder: Path, plain: Engine) -> None:
    cached = Engine.load(folder, prefix_cache=PrefixCache(64 * MB))
    turns = _turns(plain)
    for prompt in turns:
        assert _tokens(cached, [prompt]) == _tokens(plain, [prompt])
    stats = cached.prefix_cache.stats
    shared = len(_system(plain)) // 16 * 16
    assert stats.lookups == 3 and stats.hits == 2 and stats.tokens_saved >= 2 * shared
    # The same prompt again reuses all its whole blocks, leaving at least one token to prefill.
    before = stats.tokens_saved
    assert _tokens(cached, [turns[0]]) == _tokens(plain, [turns[0]])
    assert stats.tokens_saved - before == (len(turns[0]) - 1) // 16 * 16
    assert cached.prefix_cache.nbytes > 0


def test_a_batch_sharing_a_prefix_and_a_batch_of_distinct_prefixes(folder: Path, plain: Engine) -> None:
    cached = Engine.load(folder, prefix_cache=PrefixCache(64 * MB))
    shared = _turns(plain)
    assert _tokens(cached, shared) == _tokens(plain, shared)
    assert cached.prefix_cache.stats.hits == 2  # the batch's later rows reuse the first row's prefix
    tok = plain.tokenizer
    distinct = [_system(plain, n) + tok.encode(f"print({n})") for n in range(3)] + [tok.encode("x = 1")]
    assert _tokens(cached, distinct) == _tokens(plain, distinct)
    mixed = [*shared[:2], *distinct[:2]]  # some rows hit, some miss, lengths differ
    sampled = SamplingParams(max_tokens=12, temperature=1.0, top_k=40, seed=5)
    assert _tokens(cached, mixed) == _tokens(plain, mixed)
    assert _tokens(cached, mixed, sampled) == _tokens(plain, mixed, sampled)


def test_after_eviction_under_a_tiny_budget(folder: Path, plain: Engine) -> None:
    config = plain.model.config
    block_bytes = config.n_layer * 2 * config.n_kv_head * 16 * config.head_dim * 4
    cache = PrefixCache(3 * block_bytes)  # three blocks: less than one system prompt
    cached = Engine.load(folder, prefix_cache=cache)
    tok = plain.tokenizer
    prompts = [_system(plain, n) + tok.encode("def f():") for n in range(3)] + _turns(plain)
    for prompt in prompts:
        assert _tokens(cached, [prompt]) == _tokens(plain, [prompt])
        assert cache.nbytes <= cache.budget_bytes
    assert cache.stats.evictions > 0 and cache.blocks == 3
    assert _tokens(cached, prompts[:3]) == _tokens(plain, prompts[:3])


def test_an_adapter_has_its_own_entries_and_int8_matches_int8(folder: Path, plain: Engine, tmp_path: Path) -> None:
    from quark.align.lora import add_lora, save_adapter
    from quark.align.recipe import LoraSettings

    base = tmp_path / "tiny"
    shutil.copytree(folder, base)
    peft = add_lora(Engine.load(base).model.train(), LoraSettings(enabled=True, rank=4, alpha=8), "tiny")
    torch.manual_seed(1)
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)  # a trained adapter: its outputs differ from the base's
    save_adapter(peft, base / "adapters" / "moved")

    shared = PrefixCache(64 * MB)  # one cache for both engines: entries are keyed by identity
    base_engine = Engine.load(base, prefix_cache=shared)
    tuned = Engine.load(base, adapter="moved", prefix_cache=shared)
    tuned_alone = Engine.load(base, adapter="moved")
    turns = _turns(plain)
    assert _tokens(base_engine, turns) == _tokens(plain, turns)
    assert shared.stats.hits == 2
    assert _tokens(tuned, turns) == _tokens(tuned_alone, turns) != _tokens(plain, turns)
    assert shared.stats.hits == 4  # the adapter's first row missed: base entries are not its own

    int8_cached = Engine.load(base, quantize="int8", prefix_cache=shared)
    int8_plain = Engine.load(base, quantize="int8")
    assert _tokens(int8_cached, turns) == _tokens(int8_plain, turns)
    assert _tokens(int8_cached, turns[::-1]) == _tokens(int8_plain, turns[::-1])


def test_live_batch_admits_a_row_with_a_cached_prefix_mid_batch(folder: Path, plain: Engine) -> None:
    cached = Engine.load(folder, prefix_cache=PrefixCache(64 * MB))
    turns = _turns(plain)
    params = SamplingParams(max_tokens=10, temperature=0)
    expected = _tokens(plain, turns, params)
    cached.generate([turns[0]], SamplingParams(max_tokens=1, temperature=0))  # the prefix is now cached
    batch = cached.live_batch()
    got: dict[int, list[int]] = {}
    first = batch.add([turns[1]], params)[0]
    for _ in range(3):
        for event in batch.step()[0]:
            got.setdefault(event.index, []).extend(event.token_ids)
    saved = cached.prefix_cache.stats.tokens_saved
    joined = batch.add([turns[0], turns[2]], params)
    assert cached.prefix_cache.stats.tokens_saved > saved
    while batch:
        for event in batch.step()[0]:
            got.setdefault(event.index, []).extend(event.token_ids)
    assert [got[first], got[joined[0]], got[joined[1]]] == [expected[1], expected[0], expected[2]]


def test_cache_lookup_never_claims_the_whole_prompt() -> None:
    cache = PrefixCache(MB, block=4)
    kv = torch.randn(2, 2, 1, 8, 4)
    cache.store("m", list(range(8)), kv)
    assert cache.blocks == 2
    length, got = cache.lookup("m", list(range(8)))  # the last token must still be prefilled
    assert length == 4 and torch.equal(got, kv[:, :, :, :4])
    length, got = cache.lookup("m", [*range(8), 9])
    assert length == 8 and torch.equal(got, kv)
    assert cache.lookup("other", list(range(9)))[0] == 0
    assert cache.lookup("m", [0, 1, 2, 4, 4, 5, 6, 7, 8])[0] == 0  # one token differs in the first block
    assert PrefixCache.from_megabytes(0) is None


def test_consecutive_chat_turns_share_everything_up_to_the_last_window(plain: Engine) -> None:
    from quark.chat.prompt import PromptInputs, PromptMemory, build_prompt
    from quark.chat.store import Message
    from quark.memory.store import Memory

    def memory(i: int, source: str) -> PromptMemory:
        return PromptMemory(Memory(i, "fact", "note", f"fact number {i} about the project", None, 1, 0.0), source)

    turns = [Message(i + 1, 1, i or None, ("user", "assistant")[i % 2], f"Turn {i}: we discussed topic {i}.", None)
             for i in range(6)]

    def prompt(n: int, retrieved: int):
        inputs = PromptInputs(system_prompt="You are Quark.", user_message=turns[n].content,
                              profile_line="User profile: tone neutral.",
                              memories=[memory(1, "pinned"), memory(retrieved, "retrieved")], window=turns[:n])
        return build_prompt(plain.tokenizer, inputs, context_length=256, reply_tokens=16)

    first, second = prompt(2, retrieved=7), prompt(4, retrieved=8)  # other memories are retrieved each turn
    assert "fact number 1" in first.messages[0]["content"] and "fact number 7" not in first.messages[0]["content"]
    assert "fact number 7" in first.system and first.messages[-2]["role"] == "system"
    shared = next(i for i, (a, b) in enumerate(zip(first.ids, second.ids)) if a != b)
    window_end = len(plain.tokenizer.encode_chat(first.messages[:-2], add_generation_prompt=False))
    assert shared >= window_end > 0.6 * len(first.ids)  # system, pinned and the whole window are reused


def test_static_shape_decode_gives_the_eager_tokens(folder: Path, plain: Engine) -> None:
    """The compiled path's static cache (traced by dynamo; backend "eager" keeps the test fast:
    inductor's code generation takes minutes on this CPU) decodes exactly what the eager path does,
    padded batches, rows joining mid-batch and prefix-cache hits included."""
    from quark.inference.compiled import CAPACITY_STEP, CompiledDecode

    static = Engine.load(folder, compile="on", prefix_cache=PrefixCache(64 * MB))
    static.compiled_decode = CompiledDecode(static.model, backend="eager")
    turns = _turns(plain)
    mixed = [turns[0], plain.tokenizer.encode("x = 1"), turns[2]]
    assert _tokens(static, mixed) == _tokens(plain, mixed)
    batch = static.live_batch()
    got: dict[int, list[int]] = {}
    first = batch.add([turns[1]], GREEDY)[0]
    for _ in range(3):
        for event in batch.step()[0]:
            got.setdefault(event.index, []).extend(event.token_ids)
    assert batch.cache.capacity % CAPACITY_STEP == 0  # shapes shared across nearby lengths
    joined = batch.add([turns[0]], GREEDY)[0]
    while batch:
        for event in batch.step()[0]:
            got.setdefault(event.index, []).extend(event.token_ids)
    assert [got[first], got[joined]] == _tokens(plain, [turns[1], turns[0]])
    with pytest.raises(Exception, match="--compile must be one of"):
        Engine.load(folder, compile="maybe")


def test_the_next_turn_reuses_the_previous_reply_too(folder: Path, plain: Engine) -> None:
    cached = Engine.load(folder, prefix_cache=PrefixCache(64 * MB))
    first = _turns(plain)[0]
    params = SamplingParams(max_tokens=40, temperature=0)
    reply = _tokens(cached, [first], params)[0]
    assert reply == _tokens(plain, [first], params)[0]
    follow_up = [*first, *reply, *plain.tokenizer.encode("and then?")]
    saved = cached.prefix_cache.stats.tokens_saved
    assert _tokens(cached, [follow_up]) == _tokens(plain, [follow_up])
    assert cached.prefix_cache.stats.tokens_saved - saved == (len(first) + len(reply) - 1) // 16 * 16
