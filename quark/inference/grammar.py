"""Grammar-constrained decoding: the one place that turns a JSON schema or the tool-call grammar
into per-token masks, so a row's output always parses — even from a small, barely trained model.

    grammar = json_schema_grammar({"type": "object", ...})          # or tool_call_grammar(tools, ...)
    engine.generate([prompt], SamplingParams(grammar=grammar))       # rows without one are untouched

A `Grammar` is tokenizer-independent text (llguidance's Lark dialect, JSON schemas embedded with
`%json`). A `GrammarCompiler` (one per Engine: `engine.grammars`) compiles it for the tokenizer
once and keeps the result keyed by the grammar text; each row gets a cheap copy of that compiled
matcher (`GrammarMatcher`). Per decoding step the engine asks `constrain(logits, rows)` to set
every token a row's grammar forbids to -inf, samples as usual, and feeds the token back with
`GrammarMatcher.accept`; a row whose grammar is complete stops.

Why llguidance (over xgrammar, both tried on Quark's vocabulary): it reads SentencePiece byte
fallback (`<0xNN>`) and `▁` correctly, keeps control symbols (<|end|>, <|tool_call|>) out of JSON
strings while letting a grammar name them (`<|tool_call|>` is a token in the grammar, not text),
never admits raw control characters inside JSON strings (xgrammar let `<0x19>`-style bytes into
them, and let control pieces stand for their names as text), compiles a schema in milliseconds,
and computes a mask in tens of microseconds on Quark's 4,096-piece vocabulary, in Rust without
the GIL (a batch's masks can fill in parallel while the accelerator works).
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from quark.errors import QuarkError
from quark.tokenizer import Tokenizer
from quark.tokenizer.chat_template import TOOL_CALL

# The tool-call JSON is written the way the chat template renders it (json.dumps defaults), so a
# model trained on rendered traces and the grammar agree on every separator.
_JSON_FORMAT = {"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": False}
_CACHE_SIZE = 256  # compiled grammars kept per tokenizer


@dataclass(frozen=True)
class Grammar:
    """A grammar in llguidance's Lark dialect; `what` names it in error messages."""

    lark: str
    what: str = "grammar"


def json_schema_grammar(schema: dict[str, Any] | bool | None = None, *, strict: bool = True,
                        what: str = "json schema") -> Grammar:
    """Any JSON value matching `schema` (None: any JSON object, OpenAI's `json_object`).

    `strict=False` ignores schema keywords the grammar cannot enforce instead of refusing them."""
    if schema is None or schema is True:
        schema = {"type": "object"} if schema is None else {}
    if schema is False or not isinstance(schema, dict):
        raise QuarkError(f"{what}: a JSON schema must be an object (or true), not {json.dumps(schema)[:40]}")
    return Grammar(f"start: %json {_with_format(schema, strict)}\n", what)


def tool_call_grammar(tools: Sequence[dict[str, Any]], *, required: bool = True, name: str | None = None,
                      parallel: bool = True, reply_schema: dict[str, Any] | None = None,
                      reply_strict: bool = True) -> Grammar:
    """The assistant's tool-call turn: `<|tool_call|>{"name": …, "arguments": {…}}` (one call per
    line when `parallel`), arguments matching that function's JSON schema.

    `tools` are OpenAI function tools, `{"type": "function", "function": {"name", "description",
    "parameters", "strict"?}}` (what the tool registry exports); a function's `strict` refuses schema
    keywords the grammar cannot enforce instead of ignoring them. `required`: the reply must be a
    tool call; otherwise it may also be a plain reply (OpenAI's tool_choice "auto"): any text, or
    JSON matching `reply_schema` when one is given. `name` forces that one function."""
    functions = [_function(tool, i) for i, tool in enumerate(tools)]
    if not functions:
        raise QuarkError("tools: at least one function is needed for a tool-call grammar")
    if name is not None:
        functions = [f for f in functions if f["name"] == name]
        if not functions:
            raise QuarkError(f"tool_choice: no function named {name!r} in tools")
    repeat = ' ("\\n" call)*' if parallel else ""
    lines = [f"start: {TOOL_CALL} call{repeat}" + ("" if required else " | reply"),
             "call: " + " | ".join(f"call_{i}" for i in range(len(functions)))]
    for i, f in enumerate(functions):
        call = {"type": "object", "properties": {"name": {"const": f["name"]}, "arguments": f["parameters"]},
                "required": ["name", "arguments"], "additionalProperties": False}
        lines.append(f"call_{i}: %json {_with_format(call, f['strict'])}")
    if not required:
        lines += ([f"reply: %json {_with_format(reply_schema, reply_strict)}"] if reply_schema is not None
                  else ["reply: TEXT", "TEXT: /(?s:.+)/"])
    return Grammar("\n".join(lines) + "\n", "tools")


def _function(tool: Any, index: int) -> dict[str, Any]:
    """An OpenAI tool's function, checked: a name and a JSON-schema object for its parameters."""
    at = f"tools[{index}]"
    if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(
            tool.get("function"), dict):
        raise QuarkError(f'{at}: expected {{"type": "function", "function": {{"name", "parameters"}}}}')
    function = tool["function"]
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise QuarkError(f"{at}.function.name: a non-empty string is required")
    parameters = function.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, dict):
        raise QuarkError(f"{at}.function.parameters: a JSON schema object is required")
    return {"name": name, "parameters": parameters, "strict": bool(function.get("strict", False))}


def _with_format(schema: dict[str, Any], strict: bool) -> str:
    """The schema as `%json` text, with the template's separators and the strictness attached."""
    options = {**_JSON_FORMAT, "lenient": not strict}
    return json.dumps({**schema, "x-guidance": {**schema.get("x-guidance", {}), **options}})


class GrammarMatcher:
    """One row's position in its grammar: which tokens may come next, and whether it is complete."""

    def __init__(self, matcher: Any, vocab_size: int, what: str) -> None:
        self._matcher, self.what = matcher, what
        self.words = (vocab_size + 31) // 32  # 32 tokens per int32 of the mask

    def accept(self, token: int) -> None:
        """Advance past a sampled token (one the mask allowed)."""
        if not self._matcher.consume_token(token):
            self._check()
            raise QuarkError(f"{self.what}: the grammar refused token {token}")

    @property
    def complete(self) -> bool:
        """Nothing more may follow: the row is done."""
        return self._matcher.is_stopped()

    def _check(self) -> None:
        if self._matcher.is_error():
            raise QuarkError(f"{self.what}: {self._matcher.get_error()}")


class GrammarCompiler:
    """Grammars compiled for one tokenizer, each once (kept by grammar text, least recently used
    dropped past 256). Thread-safe: the server compiles on its event loop to answer bad schemas
    with a 400 while the engine's thread copies matchers for the rows it admits."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        import llguidance

        self._llg, self.vocab_size = llguidance, tokenizer.vocab_size
        self.tokenizer = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_Vocabulary(tokenizer)),
                                                n_vocab=tokenizer.vocab_size,
                                                eos_token=[tokenizer.end_id, tokenizer.eos_id])
        self._compiled: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, grammar: Grammar) -> None:
        """Compile now (and cache) so a bad grammar fails here as a QuarkError naming it."""
        self._prototype(grammar)

    def matcher(self, grammar: Grammar) -> GrammarMatcher:
        """A fresh matcher at the start of `grammar`."""
        prototype = self._prototype(grammar)
        with self._lock:
            return GrammarMatcher(prototype.deep_copy(), self.vocab_size, grammar.what)

    def _prototype(self, grammar: Grammar) -> Any:
        with self._lock:
            if grammar.lark in self._compiled:
                self._compiled.move_to_end(grammar.lark)
                return self._compiled[grammar.lark]
        matcher = self._llg.LLMatcher(self.tokenizer, grammar.lark, log_level=0)  # compiles without the GIL
        if matcher.is_error():
            raise QuarkError(f"{grammar.what}: {_error_line(matcher.get_error())}")
        with self._lock:
            self._compiled[grammar.lark] = matcher
            while len(self._compiled) > _CACHE_SIZE:
                self._compiled.popitem(last=False)
        return matcher


def _error_line(message: str) -> str:
    """llguidance's message without the grammar listing it appends ("… 1 | start: %json {…} ^")."""
    message = re.split(r"\s+\d+ \| ", message, maxsplit=1)[0]
    return " ".join(re.sub(r"^at \d+\(\d+\): ", "", message.strip()).split())


class _Vocabulary:
    """Quark's SentencePiece vocabulary as llguidance reads it: each piece's bytes (`▁` is a space,
    `<0xNN>` is that byte), control symbols marked special so no text can produce them."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        sp = tokenizer.sp
        self.eos_token_id, self.bos_token_id = tokenizer.end_id, tokenizer.bos_id
        self.tokens: list[bytes] = []
        self.special_token_ids: list[int] = []
        for i in range(tokenizer.vocab_size):
            piece = sp.id_to_piece(i)
            if sp.is_byte(i):
                self.tokens.append(bytes([int(piece[3:5], 16)]))
            elif sp.is_control(i) or sp.is_unknown(i):
                self.tokens.append(piece.encode())
                self.special_token_ids.append(i)
            else:
                self.tokens.append(piece.replace("\u2581", " ").encode())
        self._tokenizer = tokenizer

    def __call__(self, text: str | bytes) -> list[int]:
        return self._tokenizer.encode(text if isinstance(text, str) else text.decode("utf-8", errors="replace"))


def constrain(logits: torch.Tensor, rows: Sequence[tuple[int, GrammarMatcher]], *,
              parallel: bool | None = None) -> None:
    """Set to -inf, in place, every token the grammar of each (line, matcher) forbids next.

    Lines not listed are left alone, so rows with and without a grammar share one batch. With the
    model on an accelerator the masks are filled by llguidance's thread pool (idle CPU cores, no
    GIL); on a CPU, whose cores are busy with the model, one after another costs less in all
    (`parallel` overrides the choice). They are applied in a handful of tensor operations, whose
    fixed cost matters at batch 1."""
    if not rows:
        return
    words = rows[0][1].words
    if any(matcher.words != words for _, matcher in rows):
        raise ValueError("constrain: every matcher of a batch comes from the same tokenizer")
    bitmask = np.zeros((len(rows), words), dtype=np.int32)
    if parallel is None:
        parallel = logits.device.type != "cpu"
    if parallel and len(rows) > 1:
        _executor().unsafe_compute_mask_ptr([(m._matcher, i) for i, (_, m) in enumerate(rows)], bitmask.ctypes.data,
                                            words * 4, len(rows))
    else:
        for i, (_, matcher) in enumerate(rows):
            matcher._matcher.unsafe_compute_mask_ptr(bitmask[i].ctypes.data, words * 4)
    for _, matcher in rows:
        matcher._check()
    # Bit t of the little-endian words is token t: unpack them in token order. Logit columns past the
    # tokenizer's vocabulary (a model may have spare rows) are ids no text has: forbidden.
    vocab = logits.shape[-1]
    forbidden = np.unpackbits(bitmask.view(np.uint8), axis=1, count=min(vocab, words * 32), bitorder="little") == 0
    if vocab > forbidden.shape[1]:
        forbidden = np.pad(forbidden, ((0, 0), (0, vocab - forbidden.shape[1])), constant_values=True)
    forbidden = torch.from_numpy(forbidden).to(logits.device, non_blocking=True)
    lines = [line for line, _ in rows]
    if lines == list(range(logits.shape[0])):
        logits.masked_fill_(forbidden, float("-inf"))
    else:
        for i, line in enumerate(lines):
            logits[line].masked_fill_(forbidden[i], float("-inf"))


_EXECUTOR: Any = None
_EXECUTOR_LOCK = threading.Lock()


def _executor() -> Any:
    """llguidance's pool for filling a batch's masks in parallel (its default size: most cores)."""
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            import llguidance

            _EXECUTOR = llguidance.LLExecutor()
        return _EXECUTOR
