"""The prompt builder: system prompt, profile, memories, summary, recent turns and the new message
→ chat-template ids that fit the model's context with room for the reply.

Budget, in order of priority (the reply's reserve comes off the context first):
1. the system prompt and the new user message — always whole; if they alone do not fit, that is
   an error naming the sizes, never a silent cut;
2. the profile line and memories (pinned, then checkpoint-restored, then retrieved by rank), up
   to MEMORY_SHARE of what is left; a memory that does not fit is reported as omitted;
3. the short-term window: the newest unsummarized turns, whole, up to `window_tokens` and what
   memories and the summary leave. Older turns are *folded*: each becomes one extractive summary
   line (quark.memory.summary) that the caller appends to the conversation's summary;
4. the summary: its newest lines that fit in the remainder; older lines left out of this prompt
   are counted in `omitted_summary_lines` (their messages stay searchable as memories).

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
from quark.text import truncate
from quark.tokenizer import Tokenizer

MEMORY_SHARE = 0.4  # of the tokens left after system prompt, message and reply reserve
SUMMARY_SHARE = 0.2  # reserved for the summary once turns have to be folded
MEMORY_CHARS = 200  # a memory longer than this is shown cut, with "…", and cited by id
MEMORY_HEADER = "Memories:"
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

    @property
    def system(self) -> str:
        return self.messages[0]["content"]

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
    fixed = len(tokenizer.encode_chat([{"role": "system", "content": inputs.system_prompt},
                                       {"role": "user", "content": inputs.user_message}]))
    if fixed > limit:
        raise QuarkError(f"the message and system prompt take {fixed} tokens, but the model's context of "
                         f"{context_length} tokens leaves {limit} after reserving {reply_tokens} for the reply; "
                         "shorten the message (nothing was cut)")
    available = limit - fixed

    # 2. profile and memories
    memory_budget = int(available * MEMORY_SHARE)
    lead = [f"Restored from checkpoint {inputs.checkpoint}."] if inputs.checkpoint else []
    chosen: list[PromptMemory] = []
    omitted: list[PromptMemory] = []
    for memory in inputs.memories:
        if measure.block(lead, [m.line() for m in [*chosen, memory]]) <= memory_budget:
            chosen.append(memory)
        else:
            omitted.append(memory)
    # The profile comes last: it is rebuilt every turn, so leaving it out of a tight prompt loses nothing.
    if inputs.profile_line and measure.block([*lead, inputs.profile_line], [m.line() for m in chosen]) <= memory_budget:
        lead.append(inputs.profile_line)
    memory_cost = measure.block(lead, [m.line() for m in chosen])
    rest = available - memory_cost

    # 3. window, folding what does not fit
    costs = [len(tokenizer.encode_turn(m.as_chat())) for m in inputs.window]
    cap = window_tokens if window_tokens is not None else rest
    existing = list(inputs.summary)
    if sum(costs) <= min(cap, rest - measure.summary(existing)):
        keep_from = 0
    else:
        # Keep room for the summary's share, and at least for its newest line, so that folding
        # always leaves a trace in the prompt (up to half of what is left).
        newest = existing[-1:] or [summary_line(m.role, m.content) for m in inputs.window[:1]]
        reserve = min(rest // 2, max(int(available * SUMMARY_SHARE), measure.summary(newest)))
        budget = min(cap, rest - reserve)
        keep_from, used = len(costs), 0
        while keep_from > 0 and used + costs[keep_from - 1] <= budget:
            keep_from -= 1
            used += costs[keep_from]
    window, folded = list(inputs.window[keep_from:]), list(inputs.window[:keep_from])
    folded_lines = [summary_line(m.role, m.content) for m in folded]

    # 4. summary: newest lines that fit
    lines = existing + folded_lines
    room = rest - sum(costs[keep_from:])
    start = 0
    while start < len(lines) and measure.summary(lines[start:]) > room:
        start += 1

    # Assemble; section costs are additive in practice, the loop is a guard against a merge of
    # pieces across a section boundary costing a token more than measured.
    while True:
        system = _system_text(inputs.system_prompt, lead, chosen, lines[start:])
        messages = [{"role": "system", "content": system}, *(m.as_chat() for m in window),
                    {"role": "user", "content": inputs.user_message}]
        ids = tokenizer.encode_chat(messages)
        if len(ids) <= limit:
            break
        if start < len(lines):
            start += 1
        elif chosen:
            omitted.insert(0, chosen.pop())
        else:  # pragma: no cover - fixed part was checked to fit
            raise QuarkError(f"prompt of {len(ids)} tokens does not fit in {limit}")

    user_cost = len(tokenizer.encode_turn({"role": "user", "content": inputs.user_message}))
    sections = {"system_prompt": fixed - user_cost - 2,  # 2: BOS and the <|assistant|> that opens the reply
                "memories": measure.block(lead, [m.line() for m in chosen]), "summary": measure.summary(lines[start:]),
                "window": sum(costs[keep_from:]), "user_message": user_cost, "reply_reserved": reply_tokens}
    return BuiltPrompt(ids, messages, chosen, omitted, lines[start:], start, window, folded, folded_lines,
                       inputs.checkpoint, context_length, reply_tokens, sections)


def _system_text(system_prompt: str, lead: list[str], memories: list[PromptMemory], summary: list[str]) -> str:
    parts = [system_prompt] if system_prompt else []
    parts += lead
    if memories:
        parts.append("\n".join([MEMORY_HEADER, *(m.line() for m in memories)]))
    if summary:
        parts.append("\n".join([SUMMARY_HEADER, *summary]))
    return "\n\n".join(parts)


class _Measure:
    """Token costs of the system-prompt sections (each joined to the rest by a blank line)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def _cost(self, text: str) -> int:
        return len(self.tokenizer.encode("\n\n" + text)) if text else 0

    def block(self, lead: list[str], memory_lines: list[str]) -> int:
        cost = sum(self._cost(line) for line in lead)
        if memory_lines:
            cost += self._cost("\n".join([MEMORY_HEADER, *memory_lines]))
        return cost

    def summary(self, lines: Sequence[str]) -> int:
        return self._cost("\n".join([SUMMARY_HEADER, *lines])) if lines else 0
