"""The prompt builder: system prompt, profile, memories, summary, recent turns and the new message
→ chat-template ids that fit the model's context with room for the reply.

Budget, in order of priority (the reply's reserve comes off the context first):
1. the system prompt and the new user message — always whole; if they alone do not fit, that is
   an error naming the sizes, never a silent cut;
2. retrieved document sources (`quark chat --index`), numbered [1].., up to SOURCE_SHARE of what
   is left; the first that does not fit and every later one are reported as omitted, so the
   numbers in the prompt stay 1..n;
3. pinned and checkpoint-restored memories, from all that is left but room for the summary's
   newest line (they come before the rest of the summary and the window: the user asked for
   them); then retrieved memories by rank and the profile line, while all memories stay within
   MEMORY_SHARE of it; one that does not fit is reported as omitted;
4. the short-term window: the newest unsummarized turns, whole, up to `window_tokens` and what
   memories and the summary leave. Older turns are *folded*: each becomes one extractive summary
   line (quark.memory.summary) that the caller appends to the conversation's summary;
5. the summary: its newest lines that fit in the remainder; older lines left out of this prompt
   are counted in `omitted_summary_lines` (their messages stay searchable as memories).

Order in the prompt: what changes least comes first, so consecutive turns share a long prefix
and the engine's prefix cache (quark.inference.prefix_cache) prefills little more than the new
turn. The system message holds the system prompt, the checkpoint note, the profile, pinned and
checkpoint-restored memories and the summary; then the window, oldest first; then the memories
retrieved for this message (they change every turn) in a second system message, just before the
new user message. The window of turn N+1 starts with turn N's window, so everything up to there
is reused.

Tools count like the system prompt: when a conversation offers tools, their description (the
chat template's tools paragraph) is part of the system message and of the fixed cost, and the
window's assistant tool calls and `tool` results are measured as the template renders them (a
long tool result is a long turn: it folds into one summary line like any other).

The builder is pure (no database), so the same function serves the TUI, the scripted chat and
tests; the session persists the folding it reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from quark.chat.store import Message
from quark.errors import QuarkError
from quark.memory.store import Memory
from quark.memory.summary import summary_line
from quark.retrieval.grounding import SHORTER_CHARS, SOURCE_CHARS, Source, renumber, sources_block
from quark.text import truncate
from quark.tokenizer import Tokenizer
from quark.tokenizer.chat_template import tools_system_text

SOURCE_SHARE = 0.7  # of the tokens left after system prompt, message and reply reserve
MEMORY_SHARE = 0.4  # of the tokens left after system prompt, message, reply reserve and sources
SUMMARY_SHARE = 0.2  # reserved for the summary once turns have to be folded
MEMORY_CHARS = 200  # a memory longer than this is shown cut, with "…", and cited by id
MEMORY_HEADER = "Memories:"
ESSENTIAL = ("pinned", "checkpoint")  # memory sources that outrank the summary and the window
SUMMARY_HEADER = "Summary of earlier turns:"


@dataclass(frozen=True)
class PromptMemory:
    memory: Memory
    source: str  # checkpoint | pinned | retrieved

    def line(self) -> str:
        role = f"({self.memory.tag}) " if self.memory.kind == "chunk" and self.memory.tag else ""
        return f"[{self.memory.ref}] {role}{truncate(self.memory.text, MEMORY_CHARS)}"

    def as_dict(self) -> dict:
        return {"id": self.memory.ref, "kind": self.memory.kind, "tag": self.memory.tag, "text": self.memory.text,
                "source": self.source, "conversation_id": self.memory.conversation_id,
                "source_message_id": self.memory.source_message_id}


@dataclass
class PromptInputs:
    system_prompt: str
    user_message: str
    profile_line: str = ""
    memories: Sequence[PromptMemory] = ()  # in priority order
    summary: Sequence[str] = ()  # the conversation's summary lines, oldest first
    window: Sequence[Message] = ()  # unsummarized turns before the new message, oldest first
    checkpoint: str | None = None  # the checkpoint whose restore this prompt carries
    sources: Sequence[Source] = ()  # retrieved document chunks, best first
    tools: Sequence[dict] = ()  # OpenAI tool schemas offered this turn (described in the system message)


@dataclass
class BuiltPrompt:
    ids: list[int]
    messages: list[dict]
    memories: list[PromptMemory]
    omitted_memories: list[PromptMemory]
    summary: list[str]  # the summary lines in this prompt
    omitted_summary_lines: int
    window: list[Message]
    folded: list[Message]  # turns folded into the summary by this prompt
    folded_lines: list[str]
    checkpoint: str | None
    context_length: int
    reply_tokens: int
    sections: dict[str, int] = field(default_factory=dict)
    sources: list[Source] = field(default_factory=list)
    omitted_sources: list[Source] = field(default_factory=list)

    @property
    def system(self) -> str:
        """All the system text of the prompt (the leading system message and the retrieved memories')."""
        return "\n\n".join(m["content"] for m in self.messages if m["role"] == "system")

    @property
    def tokens(self) -> int:
        return len(self.ids)

    def summarized(self) -> list[dict]:
        return [{"message_id": m.id, "role": m.role, "line": line} for m, line in zip(self.folded, self.folded_lines)]

    def as_dict(self) -> dict:
        return {"tokens": self.tokens, "context_length": self.context_length, "reply_tokens": self.reply_tokens,
                "sections": self.sections, "checkpoint": self.checkpoint,
                "memories": [m.as_dict() for m in self.memories],
                "omitted_memories": [m.memory.ref for m in self.omitted_memories],
                "sources": [s.as_dict() for s in self.sources],
                "omitted_sources": [s.ref for s in self.omitted_sources],
                "summary": self.summary, "omitted_summary_lines": self.omitted_summary_lines,
                "window_message_ids": [m.id for m in self.window], "summarized": self.summarized(),
                "messages": self.messages}


def reply_reserve(context_length: int, max_tokens: int) -> int:
    """Tokens kept free for the reply: what was asked for, but at most a quarter of the context."""
    return max(1, min(max_tokens, max(16, context_length // 4)))


def build_prompt(tokenizer: Tokenizer, inputs: PromptInputs, *, context_length: int, reply_tokens: int,
                 window_tokens: int | None = None) -> BuiltPrompt:
    """Assemble the prompt under the budget described in the module docstring."""
    limit = context_length - reply_tokens
    measure = _Measure(tokenizer)
    tools_text = tools_system_text(inputs.tools) if inputs.tools else ""
    fixed = len(tokenizer.encode_chat([{"role": "system", "content": _join(inputs.system_prompt, tools_text)},
                                       {"role": "user", "content": inputs.user_message}]))
    if fixed > limit:
        raise QuarkError(f"the message and system prompt{' with the tools' if tools_text else ''} take {fixed} "
                         "tokens, but the model's context of "
                         f"{context_length} tokens leaves {limit} after reserving {reply_tokens} for the reply; "
                         "shorten the message (nothing was cut)")
    available = limit - fixed

    # 2. sources, in rank order, stopping at the first that does not fit (numbers stay 1..n); each
    # is cut shorter when not even the first fits whole (a small context still gets its best source)
    source_budget = int(available * SOURCE_SHARE)
    chosen_sources: list[Source] = []
    source_chars = SOURCE_CHARS
    for source_chars in (SOURCE_CHARS, *SHORTER_CHARS):
        chosen_sources = renumber(inputs.sources)
        while chosen_sources and measure.text(sources_block(chosen_sources, source_chars)) > source_budget:
            chosen_sources.pop()
        if chosen_sources or not inputs.sources:
            break
    omitted_sources = list(inputs.sources[len(chosen_sources):])
    available -= measure.text(sources_block(chosen_sources, source_chars))

    # 3. profile and memories; essential ones may take all that is left except the newest summary
    # line's room, so a restored conversation still carries a trace of its summary
    memory_budget = int(available * MEMORY_SHARE)
    existing = list(inputs.summary)
    newest = existing[-1:] or [summary_line(m.role, m.content) for m in inputs.window[:1]]
    summary_floor = min(available // 2, measure.summary(newest))
    lead = [f"Restored from checkpoint {inputs.checkpoint}."] if inputs.checkpoint else []
    chosen: list[PromptMemory] = []
    omitted: list[PromptMemory] = []
    for memory in inputs.memories:
        budget = available - summary_floor if memory.source in ESSENTIAL else memory_budget
        if measure.block(lead, [m.line() for m in [*chosen, memory]]) <= budget:
            chosen.append(memory)
        else:
            omitted.append(memory)
    # The profile comes last: it is rebuilt every turn, so leaving it out of a tight prompt loses nothing.
    if inputs.profile_line and measure.block([*lead, inputs.profile_line], [m.line() for m in chosen]) <= memory_budget:
        lead.append(inputs.profile_line)
    memory_cost = measure.block(lead, [m.line() for m in chosen])
    rest = available - memory_cost

    # 4. window, folding what does not fit
    costs = [len(tokenizer.encode_turn(m.as_chat())) for m in inputs.window]
    cap = window_tokens if window_tokens is not None else rest
    if sum(costs) <= min(cap, rest - measure.summary(existing)):
        keep_from = 0
    else:
        # Keep room for the summary's share, and at least for its newest line, so that folding
        # always leaves a trace in the prompt (up to half of what is left, or the floor kept above).
        reserve = min(max(rest // 2, summary_floor), max(int(available * SUMMARY_SHARE), measure.summary(newest)))
        budget = min(cap, rest - reserve)
        keep_from, used = len(costs), 0
        while keep_from > 0 and used + costs[keep_from - 1] <= budget:
            keep_from -= 1
            used += costs[keep_from]
    window, folded = list(inputs.window[keep_from:]), list(inputs.window[:keep_from])
    folded_lines = [summary_line(m.role, m.content) for m in folded]

    # 5. summary: newest lines that fit
    lines = existing + folded_lines
    room = rest - sum(costs[keep_from:])
    start = 0
    while start < len(lines) and measure.summary(lines[start:]) > room:
        start += 1

    # Assemble; section costs are additive in practice, the loop is a guard against a merge of
    # pieces across a section boundary costing a token more than measured.
    while True:
        system = _join(_system_text(inputs.system_prompt, sources_block(chosen_sources, source_chars), lead,
                                    [m for m in chosen if m.source != "retrieved"], lines[start:]), tools_text)
        retrieved = [m for m in chosen if m.source == "retrieved"]
        recalled = [{"role": "system", "content": _memory_text(retrieved)}] if retrieved else []
        messages = [{"role": "system", "content": system}, *(m.as_chat() for m in window), *recalled,
                    {"role": "user", "content": inputs.user_message}]
        ids = tokenizer.encode_chat(messages)
        if len(ids) <= limit:
            break
        if start < len(lines):
            start += 1
        elif any(m.source not in ESSENTIAL for m in chosen):
            last = max(i for i, m in enumerate(chosen) if m.source not in ESSENTIAL)
            omitted.insert(0, chosen.pop(last))
        elif chosen:
            omitted.insert(0, chosen.pop())
        elif chosen_sources:
            omitted_sources.insert(0, chosen_sources.pop())
        else:  # pragma: no cover - fixed part was checked to fit
            raise QuarkError(f"prompt of {len(ids)} tokens does not fit in {limit}")

    user_cost = len(tokenizer.encode_turn({"role": "user", "content": inputs.user_message}))
    tools_cost = measure._cost(tools_text)
    sections = {"system_prompt": fixed - user_cost - 2 - tools_cost,  # 2: BOS and the reply's <|assistant|>
                "tools": tools_cost,
                "memories": measure.block(lead, [m.line() for m in chosen]), "summary": measure.summary(lines[start:]),
                "window": sum(costs[keep_from:]), "user_message": user_cost, "reply_reserved": reply_tokens,
                "sources": measure.text(sources_block(chosen_sources, source_chars))}
    return BuiltPrompt(ids, messages, chosen, omitted, lines[start:], start, window, folded, folded_lines,
                       inputs.checkpoint, context_length, reply_tokens, sections, chosen_sources, omitted_sources)


def _join(system: str, tools_text: str) -> str:
    """The system message with the tools paragraph last (as chat_template.with_tools_prompt puts it)."""
    return f"{system}\n\n{tools_text}".lstrip() if tools_text else system


def _memory_text(memories: list[PromptMemory]) -> str:
    return "\n".join([MEMORY_HEADER, *(m.line() for m in memories)])


def _system_text(system_prompt: str, sources: str, lead: list[str], memories: list[PromptMemory],
                 summary: list[str]) -> str:
    parts = [system_prompt] if system_prompt else []
    if sources:
        parts.append(sources)
    parts += lead
    if memories:
        parts.append(_memory_text(memories))
    if summary:
        parts.append("\n".join([SUMMARY_HEADER, *summary]))
    return "\n\n".join(parts)


class _Measure:
    """Token costs of the system-prompt sections (each joined to the rest by a blank line)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def _cost(self, text: str) -> int:
        return len(self.tokenizer.encode("\n\n" + text)) if text else 0

    def text(self, text: str) -> int:
        return self._cost(text)

    def block(self, lead: list[str], memory_lines: list[str]) -> int:
        cost = sum(self._cost(line) for line in lead)
        if memory_lines:
            cost += self._cost("\n".join([MEMORY_HEADER, *memory_lines]))
        return cost

    def summary(self, lines: Sequence[str]) -> int:
        return self._cost("\n".join([SUMMARY_HEADER, *lines])) if lines else 0
