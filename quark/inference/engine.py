"""Batched generation with a KV cache: left-padded prefill, then one decode step for all rows.

Text is streamed incrementally: each step decodes a row's completion so far and emits only the
new suffix, holding back an incomplete UTF-8 character (byte-fallback pieces) and any tail that
could still become a stop string (quark.inference.streaming). Generation ends for a row on EOS or
<|end|>, a stop string, a complete grammar (rows with `SamplingParams.grammar` are masked to it
each step), or max_tokens; a prompt that cannot fit the context is an error, never silently cut.

A `LiveBatch` holds the rows generating together. New rows may join it between steps
(continuous batching: the server admits requests as they arrive instead of making them wait for
the running batch to end): each joins after its own prefill, copied into the cache right-aligned.
Per-step cost is kept to the model's forward: prefills project only the last position onto the
vocabulary, greedy rows share one argmax, and once half the rows have finished the cache is
compacted (finished rows and columns no live row uses are dropped) so they stop costing compute.

An engine loaded with `adapters=` holds its base once with those LoRA adapters beside it
(quark.inference.multi_lora): every row names its adapter (or none, the base), rows naming
different adapters share one batch, and switching adapters costs no reload.
`engine.for_adapter(name)` is the same engine whose rows default to `name`.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from quark.device import default_dtype, resolve_device
from quark.errors import QuarkError
from quark.home import Home
from quark.inference.compiled import CompiledDecode, compile_enabled, round_capacity, static_step
from quark.inference.grammar import GrammarCompiler, GrammarMatcher, constrain
from quark.inference.multi_lora import BASE_SLOT, MultiLoRA
from quark.inference.prefix_cache import PrefixCache
from quark.inference.quantize import load_for_inference
from quark.inference.sampling import RowSampler, SamplingParams
from quark.inference.streaming import TextStream
from quark.modelfolder import load_tokenizer
from quark.modelfolder.adapters import load_merged, read_lora
from quark.models.llm import LLM, KVCache
from quark.tokenizer import Tokenizer

_ENGINE_SERIAL = itertools.count(1)


@dataclass
class StreamEvent:
    """New text for one row; `finish_reason` is set on its last event ("stop" or "length")."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None = None


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    prompt_token_ids: list[int]
    finish_reason: str
    seconds: float = 0.0
    first_token_seconds: float = 0.0
    max_tokens_clamped: bool = False  # max_tokens reduced to what the context had left


@dataclass
class Row:
    """One sequence being generated: its prompt, sampler, budget, tokens so far and shown text."""

    key: int  # the StreamEvent.index of this row's events
    prompt: list[int]
    sampler: RowSampler
    max_tokens: int
    grammar: GrammarMatcher | None = None
    adapter: int = BASE_SLOT  # its adapter's slot in the engine's MultiLoRA (0: the base)
    tokens: list[int] = field(default_factory=list)
    stream: TextStream = field(default_factory=TextStream)  # what of its text has been shown
    finish_reason: str | None = None

    def advance(self, token: int, tokenizer: Tokenizer, stop_ids: set[int]) -> StreamEvent:
        """Record `token` and return the text it makes safe to show (see quark.inference.streaming)."""
        if self.grammar is not None:
            self.grammar.accept(token)
        if token in stop_ids:
            self.finish_reason = "stop"
            return StreamEvent(self.key, self.stream.flush(tokenizer.decode(self.tokens), final=True), [], "stop")
        self.tokens.append(token)
        text = tokenizer.decode(self.tokens)
        before_stop = self.stream.cut_at_stop(text)
        if before_stop is not None:
            self.finish_reason = "stop"
            return StreamEvent(self.key, before_stop, [token], "stop")
        complete = self.grammar is not None and self.grammar.complete
        if complete or len(self.tokens) >= self.max_tokens:
            self.finish_reason = "stop" if complete else "length"
            return StreamEvent(self.key, self.stream.flush(text, final=True), [token], self.finish_reason)
        return StreamEvent(self.key, self.stream.flush(text, final=False), [token])


class Engine:
    """A model and its tokenizer, ready to generate. Not thread-safe: one batch at a time."""

    def __init__(self, model: LLM, tokenizer: Tokenizer, name: str = "model", *, quantize: str | None = None,
                 prefix_cache: PrefixCache | None = None, compile: str = "auto", lora: MultiLoRA | None = None) -> None:
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.lora = lora  # adapters side by side (quark.inference.multi_lora), or None
        self.adapter: str | None = None  # the adapter of rows that name none (see for_adapter)
        self.device = model.norm.weight.device
        self.dtype = model.norm.weight.dtype  # activations' dtype: norms are never quantized
        # What a prefix cache keys this engine's KV by: the same prompt under other weights
        # (another model or adapter, another quantization, dtype or device) has other keys and
        # values. The serial number keeps two loads apart (weights may differ under one name).
        quantized = quantize or str(getattr(model, "quantization", None) or "full")
        self.quantized = quantized  # "full", or the quantization the weights run in
        self.identity = f"{name}|{quantized}|{self.dtype}|{self.device}|{next(_ENGINE_SERIAL)}"
        self.prefix_cache = prefix_cache
        compile_enabled(compile, self.device)  # a bad mode fails at load, not at the first step
        if lora is not None and compile == "on":
            raise QuarkError("--compile on does not cover adapters side by side (the compiled decode step has no "
                             "per-row adapters): use --compile off, or merge one adapter (--adapter)")
        self.compile = compile  # "auto" | "on" | "off": see quark.inference.compiled
        self.compiled_decode: CompiledDecode | None = None  # built at the first compiled step
        self.stop_ids = {tokenizer.eos_id, tokenizer.end_id}
        self._grammars: dict[str, GrammarCompiler] = {}  # shared with the for_adapter views (a copy)
        self._grammars_lock = threading.Lock()

    @classmethod
    def load(cls, folder: Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
             quantize: str | None = None, adapter: str | None = None, adapters: Sequence[str] = (),
             prefix_cache: PrefixCache | None = None, compile: str = "auto") -> Engine:
        """Load a model folder on `device` ("auto" | "cpu" | "cuda[:N]", see quark.device), in
        `dtype` (default: bf16 on CUDA, fp32 on CPU). `quantize` ("int8" | "nf4") quantizes on
        load (see quark.inference.quantize; a folder saved quantized loads as it was saved).
        `adapter` names one of its LoRA adapters (models/<m>/adapters/<name>), merged into the
        weights on load so generation costs what the base costs. `adapters` names several, loaded
        side by side on the one base (quantized or not): each row then names its own, see
        quark.inference.multi_lora. `prefix_cache` (see
        quark.inference.prefix_cache) lets prompts reuse the KV of prefixes already computed;
        `compile` ("auto" | "on" | "off") compiles the decode step (quark.inference.compiled)."""
        folder = Path(folder)
        device = resolve_device(device)
        dtype = dtype or default_dtype(device)
        if adapter and adapters:
            raise QuarkError("choose one merged --adapter or adapters side by side, not both")
        if adapter:
            if quantize:
                raise QuarkError("an adapter cannot be quantized on load: fold it in with `quark models merge`, "
                                 "then quantize the merged model")
            return cls(load_merged(folder, adapter, device=device, dtype=dtype), load_tokenizer(folder),
                       f"{folder.name}+{adapter}", prefix_cache=prefix_cache, compile=compile)
        loras = [read_lora(folder, name) for name in adapters]  # every adapter checked before the base loads
        model = load_for_inference(folder, device=device, dtype=dtype, mode=quantize)
        lora = MultiLoRA.attach(model, loras) if loras else None
        return cls(model, load_tokenizer(folder), folder.name, quantize=quantize, prefix_cache=prefix_cache,
                   compile=compile, lora=lora)

    @classmethod
    def named(cls, home: Home, name: str, *, device: str | torch.device = "auto", quantize: str | None = None,
              adapter: str | None = None, adapters: Sequence[str] = (), prefix_cache: PrefixCache | None = None,
              compile: str = "auto") -> Engine:
        """The model `name` of a home (models/<name>/), loaded as `load` does; an unknown model or
        adapter is a one-line error naming what the home has."""
        folder = home.existing(home.model_dir(name), "model")
        return cls.load(folder, device=device, quantize=quantize, adapter=adapter, adapters=adapters,
                        prefix_cache=prefix_cache, compile=compile)

    @property
    def adapters(self) -> list[str]:
        """The adapters loaded side by side (none for a plain or merged model)."""
        return list(self.lora.names) if self.lora is not None else []

    def for_adapter(self, name: str | None) -> Engine:
        """This engine (the same weights, cache and compiled grammars) with rows defaulting to
        adapter `name` (None: the base): how a caller that knows nothing of adapters, such as
        the agent loop, runs a chosen one."""
        if name is not None and self.lora is None:
            raise QuarkError(f"no adapter {name!r} is loaded (adapters: none)")
        if self.lora is not None:
            self.lora.slot(name)  # an unknown name fails here, listing the loaded ones
        view = copy.copy(self)
        view.adapter = name
        return view

    @property
    def grammars(self) -> GrammarCompiler:
        """Grammars compiled for this tokenizer, each once (built on first use)."""
        with self._grammars_lock:
            if "compiler" not in self._grammars:
                self._grammars["compiler"] = GrammarCompiler(self.tokenizer)
            return self._grammars["compiler"]

    @property
    def context_length(self) -> int:
        return self.model.config.max_seq_len

    def check_prompt(self, prompt: Sequence[int]) -> None:
        if not prompt:
            raise QuarkError("the prompt is empty")
        if len(prompt) >= self.context_length:
            raise QuarkError(f"the prompt is {len(prompt)} tokens but the model's context is {self.context_length} "
                             "tokens; shorten it (nothing was cut silently)")

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams | Sequence[SamplingParams],
                 adapters: Sequence[str | None] | None = None) -> list[Completion]:
        """Generate for every prompt at once; returns one Completion per prompt, in order.
        `adapters` names each prompt's adapter (None: the base; default: this engine's)."""
        start = time.perf_counter()
        parts: list[list[int]] = [[] for _ in prompts]
        texts = ["" for _ in prompts]
        first: list[float] = [0.0 for _ in prompts]
        finish: list[str] = ["length" for _ in prompts]
        rows = self.rows(prompts, params, adapters=adapters)
        for event in self._run(rows):
            if not parts[event.index] and event.token_ids:
                first[event.index] = time.perf_counter() - start
            parts[event.index] += event.token_ids
            texts[event.index] += event.text
            if event.finish_reason:
                finish[event.index] = event.finish_reason
        elapsed = time.perf_counter() - start
        return [Completion(texts[i], rows[i].tokens, list(prompts[i]), finish[i], elapsed, first[i],
                           rows[i].max_tokens < self._requested(params, i)) for i in range(len(prompts))]

    def stream(self, prompts: Sequence[Sequence[int]], params: SamplingParams | Sequence[SamplingParams], *,
               cancelled: Callable[[int], bool] | None = None,
               adapters: Sequence[str | None] | None = None) -> Iterator[StreamEvent]:
        """Yield StreamEvents as tokens are produced, for all prompts batched together.

        `cancelled(index)` is asked before each step: a row whose reader has gone away (a closed
        HTTP stream) stops there, without a final event, and stops costing compute."""
        yield from self._run(self.rows(prompts, params, adapters=adapters), cancelled)

    def complete_text(self, prompt: str, params: SamplingParams) -> Completion:
        return self.generate([[self.tokenizer.bos_id, *self.tokenizer.encode(prompt)]], params)[0]

    def chat_prompt(self, messages: Sequence[dict]) -> list[int]:
        return self.tokenizer.encode_chat(messages, add_generation_prompt=True)

    @staticmethod
    def _requested(params: SamplingParams | Sequence[SamplingParams], i: int) -> int:
        return (params if isinstance(params, SamplingParams) else params[i]).max_tokens

    def live_batch(self, cancelled: Callable[[int], bool] | None = None) -> LiveBatch:
        """An empty batch that rows can join between steps (what the server runs)."""
        return LiveBatch(self, cancelled)

    # ---- the step API LiveBatch drives ----------------------------------------------------------
    def rows(self, prompts: Sequence[Sequence[int]], params: SamplingParams | Sequence[SamplingParams],
             first_key: int = 0, adapters: Sequence[str | None] | None = None) -> list[Row]:
        """One checked Row per prompt (keys from `first_key`), its budget clamped to the context,
        each with its adapter (`adapters[i]`; None: the base; default: this engine's)."""
        if isinstance(params, SamplingParams):
            params = [params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError("one SamplingParams per prompt")
        if adapters is None:
            adapters = [self.adapter] * len(prompts)
        if len(adapters) != len(prompts):
            raise ValueError("one adapter (or None) per prompt")
        slots = [self.adapter_slot(name) for name in adapters]
        rows = []
        for key, (prompt, p, slot) in enumerate(zip(prompts, params, slots), start=first_key):
            prompt = list(prompt)
            self.check_prompt(prompt)
            budget = min(p.max_tokens, self.context_length - len(prompt))
            grammar = self.grammars.matcher(p.grammar) if p.grammar is not None else None
            rows.append(Row(key, prompt, RowSampler.create(p, prompt, self.device), budget, grammar, slot,
                            stream=TextStream(p.stop)))
        return rows

    def adapter_slot(self, name: str | None) -> int:
        """The slot rows of adapter `name` carry; an adapter this engine does not hold is an error."""
        if self.lora is None:
            if name is not None:
                raise QuarkError(f"no adapter {name!r} is loaded (adapters: none)")
            return BASE_SLOT
        return self.lora.slot(name)

    def cache_identity(self, slot: int) -> str:
        """What the prefix cache keys KV by for rows of adapter `slot`: another adapter's keys and
        values of one prompt differ."""
        return self.identity if slot == BASE_SLOT else f"{self.identity}+{self.lora.name(slot)}"

    def selecting(self, slots: Sequence[int] | None) -> contextlib.AbstractContextManager:
        """The forwards inside run each row with its adapter (nothing to select without adapters)."""
        if self.lora is None or slots is None:
            return contextlib.nullcontext()
        return self.lora.select(slots, self.device)

    def _run(self, rows: list[Row], cancelled: Callable[[int], bool] | None = None) -> Iterator[StreamEvent]:
        batch = LiveBatch(self, cancelled)
        batch.admit(rows)
        while batch:
            events, _ = batch.step()
            yield from events

    def prefill(self, rows: Sequence[Row], room: int = 0) -> tuple[KVCache, torch.Tensor]:
        """Prefill `rows` into one left-padded cache (every prompt ends in its last filled column,
        `room` free columns after it) and return it with each row's next-token logits.

        With a prefix cache each row is prefilled on its own from the longest cached prefix of its
        prompt (so a row sharing a prefix with an earlier row of the same batch reuses it too) and
        its whole blocks are stored back; without one the rows go through one batched forward."""
        config, width = self.model.config, max(len(r.prompt) for r in rows)
        cache = KVCache.empty(config, len(rows), self.capacity(width + room), self.device, self.dtype)
        if self.prefix_cache is None:
            idx = torch.full((len(rows), width), self.tokenizer.pad_id, dtype=torch.long, device=self.device)
            mask = torch.zeros(len(rows), width, dtype=torch.bool, device=self.device)
            for i, row in enumerate(rows):  # left padding: every row's last prompt token is in the last column
                idx[i, width - len(row.prompt):] = torch.tensor(row.prompt, device=self.device)
                mask[i, width - len(row.prompt):] = True
            return cache, self.last_logits(idx, cache, None if bool(mask.all()) else mask, [r.adapter for r in rows])
        logits = []
        for i, row in enumerate(rows):
            own = KVCache.empty(config, 1, len(row.prompt), self.device, self.dtype)
            identity = self.cache_identity(row.adapter)
            cached, kv = self.prefix_cache.lookup(identity, row.prompt)
            if kv is not None:
                for layer in range(config.n_layer):
                    own.k[layer][0, :, :cached] = kv[layer, 0]
                    own.v[layer][0, :, :cached] = kv[layer, 1]
                own.key_mask[:, :cached] = True
                own.length = cached
            suffix = torch.tensor([row.prompt[cached:]], dtype=torch.long, device=self.device)
            logits.append(self.last_logits(suffix, own, None, [row.adapter]))
            layers = [torch.stack([own.k[n][0], own.v[n][0]]) for n in range(config.n_layer)]
            self.prefix_cache.store(identity, row.prompt, torch.stack(layers))
            start = width - len(row.prompt)
            for layer in range(config.n_layer):
                cache.k[layer][i, :, start:width] = own.k[layer][0]
                cache.v[layer][i, :, start:width] = own.v[layer][0]
            cache.key_mask[i, start:width] = True
        cache.length, cache.padded = width, any(len(r.prompt) < width for r in rows)
        return cache, torch.cat(logits)

    def remember(self, row: Row, cache: KVCache, line: int) -> None:
        """Keep a finished row's prompt and reply in the prefix cache: a chat's next turn re-sends
        both. The row's real columns are its prompt and every generated token fed back so far."""
        if self.prefix_cache is None:
            return
        columns = cache.key_mask[line, :cache.length].nonzero().squeeze(1)
        tokens = [*row.prompt, *row.tokens][:len(columns)]  # the last sampled token was never fed back
        layers = [torch.stack([k[line].index_select(1, columns), v[line].index_select(1, columns)])
                  for k, v in zip(cache.k, cache.v)]
        self.prefix_cache.store(self.cache_identity(row.adapter), tokens, torch.stack(layers))

    @property
    def compiled(self) -> bool:
        return self.lora is None and compile_enabled(self.compile, self.device)

    def capacity(self, columns: int) -> int:
        """KV columns to allocate for `columns`: rounded up when decoding is compiled, so batches
        of nearby lengths share one compiled shape."""
        return round_capacity(columns, self.context_length) if self.compiled else columns

    def decode(self, idx: torch.Tensor, cache: KVCache, live: list[bool],
               slots: Sequence[int] | None = None) -> torch.Tensor:
        """Next-token logits after one decode step of `idx` (B, 1); `live` marks real rows,
        `slots` gives each row's adapter (see multi_lora)."""
        if self.compiled:
            if self.compiled_decode is None:
                self.compiled_decode = CompiledDecode(self.model)
            return static_step(self.compiled_decode, idx, cache, live)
        mask = None if all(live) else torch.tensor(live, device=self.device)[:, None]
        return self.last_logits(idx, cache, mask, slots)

    def last_logits(self, idx: torch.Tensor, cache: KVCache, mask: torch.Tensor | None,
                    slots: Sequence[int] | None = None) -> torch.Tensor:
        """Float32 logits of the last position only: at prefill, projecting every prompt position
        onto the vocabulary would cost prompt-length times the lm_head for nothing. `slots`:
        each row's adapter."""
        with self.selecting(slots):
            hidden = self.model(idx, cache=cache, attention_mask=mask, return_hidden=True)
            return self.model.lm_head(hidden[:, -1]).float()


class LiveBatch:
    """Rows generating together in one left-padded KV cache, which new rows may join between steps.

    Every row's newest token sits in the last filled column. `admit` prefills joining rows on their
    own and copies them in right-aligned; `step` samples one token for every live row, runs the
    next forward and returns the events (and the keys of rows that ended). It drives the engine
    through its public step API only (`rows`, `last_logits`, `Row.advance`). Not thread-safe.
    """

    def __init__(self, engine: Engine, cancelled: Callable[[int], bool] | None = None) -> None:
        self.engine, self.cancelled = engine, cancelled
        self.rows: list[Row] = []  # one per cache line, finished rows included until compaction
        self.cache: KVCache | None = None
        self.logits: torch.Tensor | None = None  # (lines, vocab): the next token's, per line
        self._next_key = 0

    def __len__(self) -> int:
        """Rows still generating."""
        return sum(1 for row in self.rows if not row.finish_reason)

    def add(self, prompts: Sequence[Sequence[int]], params: SamplingParams | Sequence[SamplingParams],
            adapters: Sequence[str | None] | None = None) -> list[int]:
        """Join prompts to the batch, each with its adapter (see Engine.rows); returns the keys
        their StreamEvents will carry."""
        rows = self.engine.rows(prompts, params, first_key=self._next_key, adapters=adapters)
        self._next_key += len(rows)
        self.admit(rows)
        return [row.key for row in rows]

    @torch.inference_mode()
    def admit(self, rows: list[Row]) -> None:
        if not rows:
            return
        engine, config = self.engine, self.engine.model.config
        width = max(len(r.prompt) for r in rows)
        alive = [line for line, row in enumerate(self.rows) if not row.finish_reason]
        if not alive:  # nothing running: prefill straight into a cache with room for every budget
            self.cache, self.logits = engine.prefill(rows, max(r.max_tokens for r in rows))
            self.rows = list(rows)
            return
        joining, logits = engine.prefill(rows)
        old, keep = self.cache, torch.tensor(alive, dtype=torch.long, device=engine.device)
        start = self._first_used_column(old.key_mask.index_select(0, keep)[:, :old.length])
        used = old.length - start
        length = max(used, width)
        budget = max(r.max_tokens - len(r.tokens) for r in [*(self.rows[i] for i in alive), *rows])
        merged = KVCache.empty(config, len(alive) + len(rows), engine.capacity(length + budget), engine.device,
                               engine.dtype)
        n = len(alive)
        for layer in range(config.n_layer):
            for new, before, fresh in ((merged.k, old.k, joining.k), (merged.v, old.v, joining.v)):
                new[layer][:n, :, length - used:length] = before[layer][:, :, start:old.length].index_select(0, keep)
                new[layer][n:, :, length - width:length] = fresh[layer][:, :, :width]
        merged.key_mask[:n, length - used:length] = old.key_mask[:, start:old.length].index_select(0, keep)
        merged.key_mask[n:, length - width:length] = joining.key_mask[:, :width]
        merged.length, merged.padded = length, True
        self.cache = merged
        self.logits = torch.cat([self.logits.index_select(0, keep), logits])
        self.rows = [self.rows[i] for i in alive] + list(rows)

    @torch.inference_mode()
    def step(self) -> tuple[list[StreamEvent], list[int]]:
        """Sample every live row's next token; then run the forward that makes the following logits."""
        engine = self.engine
        events: list[StreamEvent] = []
        ended: list[int] = []
        next_ids = [engine.tokenizer.pad_id] * len(self.rows)
        live = [False] * len(self.rows)
        greedy: list[int] | None = None
        constrain(self.logits, [(line, row.grammar) for line, row in enumerate(self.rows)
                                if row.grammar is not None and not row.finish_reason])
        for line, row in enumerate(self.rows):
            if row.finish_reason:
                continue
            if self.cancelled is not None and self.cancelled(row.key):
                row.finish_reason = "cancelled"
                ended.append(row.key)
                continue
            if row.sampler.plain_greedy:
                greedy = greedy if greedy is not None else self.logits.argmax(-1).tolist()
                token = greedy[line]
            else:
                token = row.sampler.next_token(self.logits[line])
            row.sampler.observe(token)
            events.append(row.advance(token, engine.tokenizer, engine.stop_ids))
            if row.finish_reason:
                ended.append(row.key)
                engine.remember(row, self.cache, line)
            else:
                next_ids[line], live[line] = token, True
        if not any(live):
            self.rows, self.cache, self.logits = [], None, None
            return events, ended
        if 2 * sum(live) <= len(live):  # half the lines are finished: drop them from the cache
            keep = [line for line, alive in enumerate(live) if alive]
            self._compact(keep)
            next_ids, live = [next_ids[k] for k in keep], [True] * len(keep)
        step = torch.tensor(next_ids, dtype=torch.long, device=engine.device)[:, None]
        # A finished line's output is thrown away: it takes a live row's adapter, so a batch left
        # with one adapter's rows runs without the per-row gather (see multi_lora).
        anyone = next(row.adapter for row, alive in zip(self.rows, live) if alive)
        slots = [row.adapter if alive else anyone for row, alive in zip(self.rows, live)]
        self.logits = engine.decode(step, self.cache, live, slots)
        return events, ended

    def fail(self) -> list[int]:
        """Drop every row (after an error); returns the keys that were still generating."""
        keys = [row.key for row in self.rows if not row.finish_reason]
        self.rows, self.cache, self.logits = [], None, None
        return keys

    @staticmethod
    def _first_used_column(key_mask: torch.Tensor) -> int:
        return int(key_mask.any(0).to(torch.int8).argmax())

    def _compact(self, keep: list[int]) -> None:
        """Keep only the lines in `keep`, and only the columns from the first one they use."""
        cache = self.cache
        index = torch.tensor(keep, dtype=torch.long, device=cache.key_mask.device)
        key_mask = cache.key_mask.index_select(0, index)
        start = self._first_used_column(key_mask[:, :cache.length])
        cache.k = [k.index_select(0, index)[:, :, start:] for k in cache.k]
        cache.v = [v.index_select(0, index)[:, :, start:] for v in cache.v]
        cache.key_mask = key_mask[:, start:]
        cache.length -= start
        self.rows = [self.rows[k] for k in keep]
