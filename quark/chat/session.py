"""The chat session: the one object the TUI and `quark chat --message` both drive.

A turn is three steps, so a front end can stream and stop in the middle:
- `begin(text)` — in one transaction: store the user message after the current tip, store the
  facts and chunks it yields (with their vectors), refresh the profile, retrieve memories,
  build the prompt and persist the turns it folded into the summary;
- `stream(turn)` — generate, yielding text; a set `cancel` event stops it between tokens
  (`events(turn)` yields the same text and, when tools are enabled, the tool calls as events);
- `finish(turn)` — in one transaction: store the reply (even a stopped one) and its chunks, and
  the turn's tool calls and results as assistant/`tool` messages of the message tree.
`send()` runs all three. `begin_edit` (edit and resend: a new sibling of an earlier user
message) and `begin_regenerate` (a new sibling of a reply) begin a turn on another branch of the
message tree, in the same transaction that moves the tip there; `switch_to`/`switch_sibling` show
another branch. The prompt is always built from the thread to the tip: its window, its summary,
and no memory learnt from a message on another branch. A conversation's own settings
(temperature, top_p, max_tokens, adapter, … — quark.chat.settings) come between config.toml and
a caller's explicit values; feedback on replies (quark.chat.feedback) becomes DPO pairs.

Generation happens outside any transaction, so two processes chatting in one home only wait for
each other's short writes, and each message attaches to the tip as it is when written: nothing
is lost, and the thread stays one path.

With tools enabled (`enable_tools`), a turn is an agent turn (quark.agent.loop): the model may
call the conversation's tools, under the tool-call grammar, before it answers.

Routing: without --adapter, the model's adapters are loaded side by side and each turn is routed
(quark.agent.routing: the home's router for the model, else the base); `set_route` pins one
(`/route code`), and the decision is stored in the reply's meta as `route`.

One session holds one database connection and one engine; a re-entrant lock makes it safe to
call from a UI thread and a generation worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quark.agent.choice import ToolChoices
from quark.agent.events import AgentEvent, ToolCallFinished
from quark.agent.loop import DEFAULT_MAX_STEPS, AgentLoop, AgentState
from quark.agent.routing import AUTO, AdapterRouter, Route, find_router, router_over
from quark.chat import snapshot
from quark.chat.config import ChatConfig, load_config
from quark.chat.feedback import Feedback, FeedbackStore
from quark.chat.prompt import BuiltPrompt, PromptInputs, PromptMemory, build_prompt, reply_reserve
from quark.chat.settings import ConversationSettings
from quark.chat.store import NEW_TITLE, ChatStore, Conversation, Message
from quark.db import connect, transaction
from quark.device import resolve_device
from quark.errors import QuarkError
from quark.home import Home
from quark.inference import Engine, PrefixCache, SamplingParams
from quark.inference.sampling import sampling_params
from quark.inference.tool_calls import read_tool_calls
from quark.memory.extract import NewMemory, chunk_message, extract_facts
from quark.memory.profile import PROFILE_KEY, describe, update_profile
from quark.memory.store import Hit, Memory, MemoryStore, parse_ref
from quark.memory.summary import summary_lines
from quark.modelfolder import list_models, load_model
from quark.modelfolder.adapters import existing_adapter, side_by_side_adapters
from quark.retrieval.embedder import Embedder, ModelEmbedder
from quark.retrieval.grounding import Source, citations, number_sources
from quark.text import truncate
from quark.tokenizer.chat_template import tool_call_text
from quark.tools.context import Confirm, ToolContext, ToolPolicy
from quark.tools.runner import registry

SEMANTIC_ONLY = 3  # vector-only /search hits shown when no memory shares a word with the query
BACKFILL = 64  # memories embedded per turn that the current embedder has not seen yet
MODEL_PREFERENCE = "model"


@dataclass
class Turn:
    """A turn in progress: the stored user message, the prompt built for it, and the reply so far."""

    conversation_id: int
    user_message: Message
    prompt: BuiltPrompt
    params: SamplingParams
    model: str
    reply: str = ""
    finish_reason: str | None = None
    completion_tokens: int = 0
    first_token_seconds: float | None = None  # since begin() was called
    started: float = field(default_factory=time.perf_counter)
    agent: AgentState | None = None  # an agent turn's state (tools enabled)
    tool_choice: ToolChoices = "auto"
    route: Route | None = None  # the adapter the turn runs with and why (None: a merged --adapter)


def tool_calls_in(reply: str) -> list[dict] | None:
    """The tool calls a reply consists of, or None when it is ordinary text.

    The chat template writes a call as <|tool_call|>{"name", "arguments"}<|end|>; the control
    token is not decoded, so a reply that is a call is one such JSON object per line, read by
    quark.inference.tool_calls. Until the agent loop runs calls, front ends report them as calls
    instead of printing them as the answer."""
    calls = read_tool_calls(reply) if reply.lstrip().startswith("{") else None
    return [{"name": call.name, "arguments": json.loads(call.arguments)} for call in calls] if calls else None


@dataclass
class TurnResult:
    reply: str
    conversation_id: int
    user_message_id: int
    assistant_message_id: int
    model: str
    finish_reason: str
    completion_tokens: int
    seconds: float
    first_token_seconds: float | None
    prompt: BuiltPrompt
    tool_calls: list[ToolCallFinished] = field(default_factory=list)
    model_calls: int = 1
    route: Route | None = None

    def citations(self) -> list[int]:
        """The source numbers the reply cites (see quark.retrieval.grounding)."""
        return citations(self.reply, len(self.prompt.sources))

    def sources(self) -> list[dict[str, Any]]:
        cited = set(self.citations())
        return [{**s.as_dict(), "cited": s.n in cited} for s in self.prompt.sources]

    @property
    def unrun_tool_calls(self) -> list[dict] | None:
        """Tool calls the reply is made of that nothing ran (the conversation offers no tools)."""
        return None if self.tool_calls else tool_calls_in(self.reply)

    def as_dict(self) -> dict[str, Any]:
        unrun = self.unrun_tool_calls
        return {"reply": self.reply, "tool_call": unrun[0] if unrun else None, "unrun_tool_calls": unrun or [],
                "conversation_id": self.conversation_id,
                "user_message_id": self.user_message_id, "assistant_message_id": self.assistant_message_id,
                "model": self.model, "finish_reason": self.finish_reason,
                "checkpoint": self.prompt.checkpoint,
                "memories": [m.as_dict() for m in self.prompt.memories],
                "omitted_memories": [m.memory.ref for m in self.prompt.omitted_memories],
                "sources": self.sources(), "citations": self.citations(),
                "omitted_sources": [s.ref for s in self.prompt.omitted_sources],
                "summarized": self.prompt.summarized(),
                "omitted_summary_lines": self.prompt.omitted_summary_lines,
                "usage": {"prompt_tokens": self.prompt.tokens, "completion_tokens": self.completion_tokens,
                          "context_length": self.prompt.context_length, "sections": self.prompt.sections},
                "tool_calls": [call.as_dict() for call in self.tool_calls], "model_calls": self.model_calls,
                "route": self.route.to_dict() if self.route else None,
                "seconds": round(self.seconds, 4),
                "first_token_seconds": None if self.first_token_seconds is None else round(self.first_token_seconds, 4)}


class ChatSession:
    """Chat in one home. `embedder` replaces the chat model's own hidden-state embeddings for
    memory (a trained embedding head, say); without it, memory embeds with the loaded model."""

    def __init__(self, home: Home, *, config: ChatConfig | None = None, conversation_id: int | None = None,
                 model: str | None = None, adapter: str | None = None, embedder: Embedder | None = None,
                 device: str = "auto", quantize: str | None = None, index: str | None = None,
                 reranker: str | None = None, prefix_cache_mb: float = 512.0, compile: str = "auto") -> None:
        self.home = home
        self.config = config or load_config(home.config_path)
        self.conn = connect(home.db_path)
        self.store = ChatStore(self.conn)
        self.memories = MemoryStore(self.conn)
        self.feedback = FeedbackStore(self.conn)
        self._lock = threading.RLock()
        self.engine: Engine | None = None
        self.embedder, self._own_embedder = embedder, embedder is not None
        self.model_name = model
        self._covered: str | None = None  # the embedder every memory has a vector from, once checked
        if adapter and not model:
            raise QuarkError("--adapter needs --model: an adapter belongs to one base model")
        self.adapter = adapter  # the LoRA adapter merged into the loaded engine
        self.default_adapter = adapter  # --adapter: used by conversations that set none of their own
        self.device = resolve_device(device)  # checked now: a bad --device fails before the first turn
        self.quantize = quantize
        # Consecutive turns re-send the conversation: its KV is kept across turns and model switches
        # (entries are keyed by model), so a turn prefills little more than its new message.
        self.prefix_cache = PrefixCache.from_megabytes(prefix_cache_mb)
        self.compile = compile  # see quark.inference.compiled
        self.conversation_id: int | None = None
        self.last_prompt: BuiltPrompt | None = None
        self.documents = None  # quark.retrieval.documents.DocumentIndex, opened by use_index
        self.index: str | None = None
        self.reranker = reranker
        if index:
            self.use_index(index)
        self.tools: ToolContext | None = None  # set by enable_tools: the turns are agent turns
        self.routing: AdapterRouter | None = None  # the loaded model's adapters and router (no --adapter)
        self.route_choice = AUTO  # what /route pinned: auto, a label or an adapter
        self.last_route: Route | None = None
        self.max_steps = DEFAULT_MAX_STEPS
        if conversation_id is not None:
            self.select(conversation_id)

    def close(self) -> None:
        self.conn.close()

    # ---- plumbing ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        with self._lock, transaction(self.conn):
            yield

    @contextlib.contextmanager
    def _read(self) -> Iterator[None]:
        with self._lock:
            yield

    # ---- model -------------------------------------------------------------------------------
    def available_models(self) -> list[str]:
        return [folder.name for folder in list_models(self.home)]

    def resolve_model(self) -> str:
        """The model to chat with: chosen explicitly, else the conversation's, else the last used,
        else the only model in the home."""
        if self.model_name:
            return self.model_name
        with self._read():
            conversation = self.store.conversation(self.conversation_id) if self.conversation_id else None
            remembered = self.store.preference(MODEL_PREFERENCE)
        models = self.available_models()
        for candidate in (conversation.model if conversation else None, remembered):
            if candidate and candidate in models:
                return candidate
        if len(models) == 1:
            return models[0]
        if not models:
            raise QuarkError(f"no models in {self.home.root / 'models'}; train one (quark pretrain) or pass --model")
        raise QuarkError(f"several models in {self.home.root / 'models'} ({', '.join(models)}): pass --model NAME")

    def use_model(self, name: str | None = None) -> Engine:
        """Load `name` (or the resolved model) unless it is already loaded; remember it."""
        name = name or self.resolve_model()
        if name != self.model_name:
            self.adapter = self.default_adapter = None  # adapters belong to one base model
            self.route_choice = AUTO  # and so do the routes pinned to them
        loaded = f"{name}+{self.adapter}" if self.adapter else name
        if self.engine is None or self.engine.name != loaded:
            folder = self.home.existing(self.home.model_dir(name), "model")
            side = [] if self.adapter else side_by_side_adapters(folder)[0]  # the ones that run unmerged
            self.engine = Engine.named(self.home, name, device=self.device, quantize=self.quantize,
                                       adapter=self.adapter, adapters=side, prefix_cache=self.prefix_cache,
                                       compile=self.compile)
            self.routing = None if self.adapter else self._routing(name)
            if not self._own_embedder:
                self.embedder = ModelEmbedder.for_model_folder(self.engine.model, self.engine.tokenizer, folder)
        self.model_name = name
        with self._write():
            self.store.set_preference(MODEL_PREFERENCE, name)
            if self.conversation_id is not None:
                self.store.update_conversation(self.conversation_id, model=name)
        return self.engine

    def _routing(self, name: str) -> AdapterRouter:
        """The adapters side by side and the home's newest router for model `name` (if any); the
        router reads the chat model's own embeddings unless it runs quantized."""
        router_name = find_router(self.home, name)
        router = None
        if router_name is not None:
            base = self.engine.model if self.engine.quantized == "full" else load_model(self.home.model_dir(name))
            router = router_over(self.home, router_name, base, self.engine.tokenizer, name)
        return AdapterRouter(router, self.engine.adapters, router_name)

    def set_route(self, choice: str) -> str:
        """Pin the route of the next turns (`/route code`), or `auto` to let the router decide;
        an unknown choice is a one-line error listing the choices."""
        choice = choice.strip() or AUTO
        if self.engine is None:
            raise QuarkError("no model is loaded yet: choose a route once it is")
        if self.routing is None:
            raise QuarkError(f"routing needs the adapters side by side: this chat merged adapter {self.adapter!r} "
                             "(start it without --adapter)")
        if choice != AUTO:
            self.routing.forced(choice)  # checked now, not at the next turn
        self.route_choice = choice
        return choice

    def route(self, text: str) -> Route | None:
        """The route of a turn saying `text`: pinned by /route, else the conversation's adapter
        setting, else the router's, else the base."""
        if self.routing is None:
            return None
        with self._lock:
            if self.route_choice != AUTO:
                return self.routing.forced(self.route_choice)
            setting = self.settings().adapter
            if setting and self._side_by_side(setting):
                return Route(setting, setting, "setting")
            return self.routing.route(text)

    def _side_by_side(self, adapter: str) -> bool:
        return self.routing is not None and self.engine is not None and adapter in self.engine.adapters

    # ---- conversations -----------------------------------------------------------------------
    def new_conversation(self, title: str = NEW_TITLE) -> Conversation:
        with self._write():
            conversation = self.store.create_conversation(title=title, model=self.model_name,
                                                          system_prompt=self.config.system_prompt)
        self.conversation_id = conversation.id
        return conversation

    def start_new(self) -> None:
        """Begin a new conversation lazily: it is stored with its first message (or /system,
        /pin), so opening and leaving a new chat leaves no empty row behind."""
        self.conversation_id = None
        self.last_prompt = None

    def select(self, conversation_id: int) -> Conversation:
        with self._read():
            conversation = self.store.conversation(conversation_id)
        self.conversation_id = conversation.id
        if conversation.model and not self.model_name:
            self.model_name = conversation.model if conversation.model in self.available_models() else None
        return conversation

    def conversation(self) -> Conversation | None:
        if self.conversation_id is None:
            return None
        with self._read():
            return self.store.conversation(self.conversation_id)

    def conversations(self, search: str | None = None) -> list[Conversation]:
        with self._read():
            return self.store.conversations(search=search)

    def rename(self, conversation_id: int, title: str) -> Conversation:
        title = " ".join(title.split())
        if not title:
            raise QuarkError("a conversation title cannot be empty")
        with self._write():
            return self.store.update_conversation(conversation_id, title=truncate(title, 120))

    def delete(self, conversation_id: int) -> None:
        with self._write():
            self.store.delete_conversation(conversation_id)
        if self.conversation_id == conversation_id:
            self.conversation_id = None

    def thread(self) -> list[Message]:
        """The current conversation's messages, root to tip (what a UI shows)."""
        conversation = self.conversation()
        with self._read():
            return self.store.thread(conversation.tip_id) if conversation else []

    def set_system(self, text: str) -> Conversation:
        if self.conversation_id is None:
            self.new_conversation()
        with self._write():
            return self.store.update_conversation(self.conversation_id, system_prompt=text.strip())

    def fork(self, message_id: int) -> Conversation:
        with self._write():
            return self.store.fork(self._require_conversation(), message_id)

    # ---- branches of the message tree -------------------------------------------------------
    def _message_here(self, message_id: int) -> Message:
        """Message `message_id` of the current conversation (with none open, its conversation opens)."""
        with self._read():
            message = self.store.message(message_id)
        if self.conversation_id is None:
            self.select(message.conversation_id)
        elif message.conversation_id != self.conversation_id:
            raise QuarkError(f"message {message_id} is in conversation {message.conversation_id}, not in the open "
                             f"conversation {self.conversation_id}")
        return message

    def siblings(self, message_id: int) -> tuple[list[Message], int]:
        """The alternatives message `message_id` is one of (edits of a question, regenerated
        replies), oldest first, and its index among them."""
        self._message_here(message_id)
        with self._read():
            return self.store.siblings(message_id)

    def branches(self, messages: list[Message]) -> dict[int, tuple[int, int]]:
        """For each of `messages` that has alternatives: (its 1-based place, how many) — the "2/3" a UI shows."""
        out = {}
        with self._read():
            for message in messages:
                if message.role in ("user", "assistant") and not message.meta.get("tool_calls"):
                    found, index = self.store.siblings(message.id)
                    if len(found) > 1:
                        out[message.id] = (index + 1, len(found))
        return out

    def switch_to(self, message_id: int) -> Conversation:
        """Show the branch through message `message_id`: the tip moves to the newest message under
        it, and the summary follows (the next prompt is built from that thread)."""
        self._message_here(message_id)
        with self._write():
            conversation = self.store.fork(self.conversation_id, self.store.newest_leaf(message_id))
        self.last_prompt = None
        return conversation

    def switch_sibling(self, message_id: int, step: int) -> Message:
        """Switch to the alternative `step` places from `message_id` (-1: the previous one), no
        further than the first or last; returns it."""
        found, index = self.siblings(message_id)
        target = found[max(0, min(len(found) - 1, index + step))]
        self.switch_to(target.id)
        return target

    # ---- feedback ------------------------------------------------------------------------------
    def rate(self, message_id: int, rating: int) -> Feedback:
        """Rate reply `message_id` +1 or -1 (0 clears): a + reply pairs with a - sibling for DPO."""
        with self._write():
            return self.feedback.rate(message_id, rating)

    def mark_best(self, message_id: int) -> Feedback:
        """Mark reply `message_id` better than its siblings (after regenerating)."""
        with self._write():
            return self.feedback.mark_best(message_id)

    def feedback_of(self, message_ids: list[int]) -> dict[int, Feedback]:
        with self._read():
            return self.feedback.of_messages(message_ids)

    def _require_conversation(self) -> int:
        if self.conversation_id is None:
            raise QuarkError("no conversation yet: send a message or pick one first")
        return self.conversation_id

    # ---- memory ------------------------------------------------------------------------------
    def forget(self, ref: str | int) -> Memory:
        """Delete a memory. Forgetting a fact also deletes the chunks of the message it came
        from: otherwise the same words would still come back from /search and retrieval."""
        with self._write():
            memory = self.memories.forget(parse_ref(ref))
            if memory.kind == "fact" and memory.source_message_id is not None:
                for chunk in self.memories.of_message(memory.source_message_id, kind="chunk"):
                    self.memories.forget(chunk.id)
            return memory

    def pin(self, text: str) -> Memory:
        text = " ".join(text.split())
        if not text:
            raise QuarkError("nothing to pin: give the text to keep in every prompt")
        if self.conversation_id is None:
            self.new_conversation()
        with self._write():
            return self.memories.add([NewMemory("pinned", text)], conversation_id=self.conversation_id,
                                     source_message_id=None)[0]

    def search(self, query: str, k: int = 10, *, everywhere: bool = False) -> list[Hit]:
        """Hybrid search over memories (facts, chunks and pinned) — what /search shows: this
        conversation's, or every conversation's with `everywhere`.

        Relevance cut-off: the vector side always returns its nearest neighbours, however far, so
        a hit must share a word with the query (BM25 found it); only when no memory does are the
        SEMANTIC_ONLY nearest by vector shown, as the best there is."""
        vector = self._embed([query])[0] if self.embedder is not None else None
        with self._read():
            hits = self.memories.search(query, vector, self.embedder.name if self.embedder else None, k=k * 5,
                                        kinds=("fact", "chunk", "pinned"))
        if not everywhere:
            hits = [h for h in hits if h.memory.conversation_id == self.conversation_id]
        worded = [h for h in hits if h.text_rank is not None]
        return worded[:k] if worded else [h for h in hits if (h.vector_rank or SEMANTIC_ONLY + 1) <= SEMANTIC_ONLY]

    def memory_list(self, limit: int = 50) -> list[Memory]:
        with self._read():
            return self.memories.list(conversation_id=self.conversation_id, limit=limit)

    def export(self, path, fmt: str | None = None) -> dict:
        """Write the current conversation to `path` (quark.chat.export)."""
        from quark.chat.export import export

        with self._read():
            return export(self.store, self._require_conversation(), path, fmt)

    def preference(self, key: str, default: Any = None) -> Any:
        with self._read():
            return self.store.preference(key, default)

    def set_preference(self, key: str, value: Any) -> None:
        with self._write():
            self.store.set_preference(key, value)

    def profile(self) -> dict:
        with self._read():
            return self.store.preference(PROFILE_KEY, {}) or {}

    # ---- document sources (grounded answers) ------------------------------------------------------------------
    def use_index(self, name: str | None) -> str | None:
        """Ground replies in document index `name` (None: stop); its top chunks become numbered sources."""
        if name:
            from quark.retrieval.documents import DocumentIndex

            self.documents = self.documents or DocumentIndex(self.home, conn=self.conn)
            with self._read():
                name = self.documents.info(name).name
        self.index = name or None
        return self.index

    def retrieve_sources(self, text: str) -> list[Source]:
        if not self.index or self.config.sources <= 0:
            return []
        with self._read():
            hits = self.documents.search(self.index, text, k=self.config.sources, reranker=self.reranker)
        return number_sources([h.chunk for h in hits])

    # ---- snapshots (`quark checkpoint`) ---------------------------------------------------------------------
    def save_snapshot(self, name: str, *, force: bool = False) -> snapshot.Snapshot:
        with self._lock:
            return snapshot.save_snapshot(self.conn, name, self._require_conversation(), force=force)

    def load_snapshot(self, name: str, *, into: str = "current") -> Conversation:
        """Restore into the current conversation (a new branch becomes its tip) or a new one."""
        if into not in ("current", "new"):
            raise QuarkError(f"--into must be 'current' or 'new', not {into!r}")
        with self._lock:
            target = self.conversation_id if into == "current" else None
            self.conversation_id = snapshot.load_snapshot(self.conn, name, target)
        self._covered = None  # restored memories have no vectors yet
        return self.select(self.conversation_id)

    def snapshots(self) -> list[dict]:
        with self._read():
            return snapshot.list_snapshots(self.conn)

    # ---- tools -------------------------------------------------------------------------------
    def enable_tools(self, spec: str, *, workspace: str | Path | None = None, allow_risky: bool = False,
                     confirm: Confirm | None = None, max_steps: int = DEFAULT_MAX_STEPS) -> list[str]:
        """Let the model call the tools `spec` names ("web,code,files", tool names, "all"); risky
        ones run with `allow_risky`, else when `confirm` says yes (the TUI asks), else never.
        Returns the enabled tool names."""
        allowed = registry().select(spec)
        if not allowed:
            raise QuarkError(f"--tools {spec!r} enables no tool")
        folder = None
        if workspace is not None:
            folder = Path(workspace).expanduser().resolve()
            if not folder.is_dir():
                raise QuarkError(f"--workspace {workspace}: not a folder")
        if max_steps < 1:
            raise QuarkError(f"max tool steps must be at least 1, not {max_steps}")
        self.tools = ToolContext.open(self.home, conversation_id=self.conversation_id, workspace=folder,
                                      policy=ToolPolicy(allowed=allowed, allow_risky=allow_risky, confirm=confirm),
                                      conn=self.conn, lock=self._lock)
        self.max_steps = max_steps
        return [tool.name for tool in registry().tools(allowed)]

    def tool_schemas(self) -> list[dict]:
        return registry().schemas(self.tools.policy.allowed) if self.tools is not None else []

    def run_tool(self, name: str, arguments: str | dict) -> ToolCallFinished:
        """Run one tool by the user's hand (the TUI's /search, /fetch, /run), audited like the
        model's calls; it needs no model and is not part of the message tree."""
        from quark.tools.runner import run_tool_call

        context = self.tools or ToolContext.open(self.home, conn=self.conn, lock=self._lock)
        context = dataclasses.replace(context, conversation_id=self.conversation_id, initiated_by="user",
                                      policy=ToolPolicy(allowed=None, allow_risky=context.policy.allow_risky,
                                                        confirm=context.policy.confirm))
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
        return ToolCallFinished(0, "user", name, raw, run_tool_call(name, raw, context))

    # ---- settings ------------------------------------------------------------------------------
    def settings(self) -> ConversationSettings:
        """The current conversation's own settings (none before its first message)."""
        conversation = self.conversation()
        return conversation.settings if conversation is not None else ConversationSettings()

    def set_setting(self, key: str, value: Any) -> ConversationSettings:
        """Set one of this conversation's settings from text or a value (None or "" resets it to
        the home's default); `system` sets the system prompt. Used by the next turn, and kept."""
        if key.strip().lower() in ("system", "system_prompt"):
            self.set_system("" if value is None else str(value))
            return self.settings()
        return self.update_settings(self.settings().with_value(key, value))

    def update_settings(self, settings: ConversationSettings, *,
                        system_prompt: str | None = None) -> ConversationSettings:
        """Replace this conversation's settings (and, given, its system prompt) in one write; an
        adapter must be one the model has."""
        if settings.adapter:
            existing_adapter(self.home.model_dir(self.resolve_model()), settings.adapter)
        if self.conversation_id is None:
            self.new_conversation()
        fields: dict[str, Any] = {"settings": settings}
        if system_prompt is not None:
            fields["system_prompt"] = system_prompt.strip()
        with self._write():
            return self.store.update_conversation(self.conversation_id, **fields).settings

    def params(self, *, max_tokens: int | None = None, temperature: float | None = None,
               seed: int | None = None) -> SamplingParams:
        """Sampling for the next turn: config.toml's [chat], then this conversation's settings,
        then the arguments (a script's --max-tokens, say), each over the one before."""
        c = self.config
        chosen = self.settings().sampling()
        defaults = {"max_new_tokens": chosen.get("max_tokens", c.max_tokens),
                    "temperature": chosen.get("temperature", c.temperature), "top_k": chosen.get("top_k", c.top_k),
                    "top_p": chosen.get("top_p", c.top_p), "seed": chosen.get("seed", c.seed)}
        return sampling_params(defaults, max_tokens=max_tokens, temperature=temperature, seed=seed)

    def _turn_engine(self) -> Engine:
        """The engine for this conversation's next turn: the model, with the conversation's
        adapter setting (else --adapter) merged in, loaded again only when that changes. An
        adapter the engine holds side by side needs no reload: the turn's route picks it."""
        wanted = self.settings().adapter or self.default_adapter
        if wanted and not self.adapter:  # the base, with its adapters side by side, may hold it
            loaded = self.engine is not None and self.engine.name == self.model_name
            engine = self.engine if loaded else self.use_model()
            if self._side_by_side(wanted):
                return engine
        if wanted and wanted != self.adapter:
            model = self.resolve_model()
            existing_adapter(self.home.model_dir(model), wanted)
            self.model_name = model
        self.adapter = wanted
        loaded = f"{self.model_name}+{self.adapter}" if self.adapter else self.model_name
        return self.engine if self.engine is not None and self.engine.name == loaded else self.use_model()

    # ---- a turn ------------------------------------------------------------------------------
    def begin(self, text: str, params: SamplingParams | None = None, *,
              tool_choice: ToolChoices = "auto") -> Turn:
        """Store the user's message after the tip and build the prompt. `tool_choice` (with tools
        enabled): OpenAI's auto/required/none/{"type": "function", …}, or one per step (see agent.choice)."""
        return self._begin_new(text, params, tool_choice, fork=False, fork_at=None)

    def begin_edit(self, message_id: int, text: str, params: SamplingParams | None = None, *,
                   tool_choice: ToolChoices = "auto") -> Turn:
        """Edit and resend user message `message_id`: `text` becomes a new sibling of it (under the
        same parent) and the tip, so the reply continues the new branch; the old branch is kept."""
        message = self._message_here(message_id)
        if message.role != "user":
            raise QuarkError(f"message {message_id} is a {message.role} message: only your own messages can be "
                             "edited and resent (regenerate a reply instead)")
        return self._begin_new(text, params, tool_choice, fork=True, fork_at=message.parent_id)

    def begin_regenerate(self, message_id: int, params: SamplingParams | None = None, *,
                         tool_choice: ToolChoices = "auto") -> Turn:
        """A new reply to the user message that reply `message_id` answered (or to user message
        `message_id`): the tip moves back to that user message, so the reply becomes a sibling
        of the old one; the old one and everything after it are kept. With a fixed seed the seed
        is offset by the number of replies already there: reproducible, and still a new draw."""
        started = time.perf_counter()
        message = self._message_here(message_id)
        user = message if message.role == "user" else None
        if message.role == "assistant" and message.reply_to is not None:
            with self._read():
                user = self.store.message(message.reply_to)
        if user is None:
            raise QuarkError(f"message {message_id} is a {message.role} message: regenerate a reply (or the reply "
                             "to one of your messages)")
        engine = self._turn_engine()
        params = params or self.params()
        route = self.route(user.content)
        if params.seed is not None:  # a fixed seed would draw the same reply again: offset it by the replies so far
            with self._read():
                replies = sum(m.role == "assistant" for m in self.store.children(user.conversation_id, user.id))
            params = dataclasses.replace(params, seed=params.seed + replies)
        vectors = self._embed([user.content])
        self._backfill()
        sources = self.retrieve_sources(user.content)
        with self._write():
            self.store.fork(self.conversation_id, user.id)
            prompt = self._build(user, user.content, vectors[0], self.store.preference(PROFILE_KEY) or {}, params,
                                 sources)
        return self._turn(user, prompt, params, engine, started, tool_choice, route)

    def _begin_new(self, text: str, params: SamplingParams | None, tool_choice: ToolChoices, *, fork: bool,
                   fork_at: int | None) -> Turn:
        started = time.perf_counter()
        if not text or not text.strip():
            raise QuarkError("the message is empty")
        engine = self._turn_engine()
        params = params or self.params()
        route = self.route(text)
        facts = extract_facts(text)
        chunks = [NewMemory("chunk", c, "user") for c in chunk_message(text)]
        vectors = self._embed([text, *(m.text for m in facts), *(m.text for m in chunks)])
        self._backfill()
        sources = self.retrieve_sources(text)
        before = self.conversation_id
        try:
            with self._write():
                if fork:  # in the same transaction as the message, so no other writer moves the tip between
                    self.store.fork(self.conversation_id, fork_at)
                user = self._store_user(text, engine, facts, chunks, vectors)
                profile = update_profile(self.store.preference(PROFILE_KEY), text)
                self.store.set_preference(PROFILE_KEY, profile)
                prompt = self._build(user, text, vectors[0], profile, params, sources)
        except BaseException:
            self.conversation_id = before  # a conversation created by the rolled-back transaction is gone
            raise
        return self._turn(user, prompt, params, engine, started, tool_choice, route)

    def _routed_engine(self, turn: Turn) -> Engine:
        """The engine with the turn's adapter (the same weights: choosing an adapter is no reload)."""
        return self.engine.for_adapter(turn.route.adapter) if turn.route is not None else self.engine

    def _store_user(self, text: str, engine: Engine, facts: list[NewMemory], chunks: list[NewMemory],
                    vectors) -> Message:
        """The user's message after the tip, with what memory learns from it (in the caller's transaction)."""
        if self.conversation_id is None:
            conversation = self.store.create_conversation(
                title=truncate(" ".join(text.split()), 60), model=engine.name, system_prompt=self.config.system_prompt)
            self.conversation_id = conversation.id
        elif self.store.conversation(self.conversation_id).title == NEW_TITLE:
            self.store.update_conversation(self.conversation_id, title=truncate(" ".join(text.split()), 60))
        user = self.store.append(self.conversation_id, "user", text)
        self.memories.add(facts, conversation_id=self.conversation_id, source_message_id=user.id,
                          vectors=vectors[1:1 + len(facts)], embedder=self.embedder.name)
        self.memories.add(chunks, conversation_id=self.conversation_id, source_message_id=user.id,
                          vectors=vectors[1 + len(facts):], embedder=self.embedder.name)
        return user

    def _turn(self, user: Message, prompt: BuiltPrompt, params: SamplingParams, engine: Engine, started: float,
              tool_choice: ToolChoices, route: Route | None) -> Turn:
        self.last_prompt, self.last_route = prompt, route
        model = f"{engine.name}+{route.adapter}" if route is not None and route.adapter else engine.name
        turn = Turn(self.conversation_id, user, prompt, params, model, started=started, tool_choice=tool_choice,
                    route=route)
        if self.tools is not None:
            self.tools.conversation_id, self.tools.embedder = self.conversation_id, self.embedder
            turn.agent = AgentState(messages=[dict(m) for m in prompt.messages], started=started)
        return turn

    def _build(self, user: Message, text: str, query_vector, profile: dict, params: SamplingParams,
               sources: list[Source] = ()) -> BuiltPrompt:
        """Retrieve and assemble the prompt for `user`, persisting what it folds (in the caller's
        transaction, so a concurrent writer never folds the same turns twice). Everything comes
        from the thread to `user`: the window and summary, and no memory learnt from a message
        on another branch of this conversation (an edited-away question, a rejected reply)."""
        conversation = self.store.conversation(self.conversation_id)
        window = self.store.thread(user.parent_id, after=conversation.summarized_through)
        other_branches = self.store.off_branch(conversation.id, user.id)
        hits = self.memories.search(text, query_vector, self.embedder.name, k=self.config.memories,
                                    exclude_sources={user.id, *(m.id for m in window), *other_branches})
        restored = conversation.restored or {}
        candidates = [PromptMemory(m, "pinned") for m in self.memories.pinned(conversation.id)]
        candidates += [PromptMemory(m, "checkpoint") for m in self.memories.get_many(restored.get("memory_ids", []))]
        # Facts before chunks (each group in fused-rank order): a fact is the distilled, shorter form.
        hits = sorted(hits, key=lambda h: h.memory.kind != "fact")
        candidates += [PromptMemory(hit.memory, "retrieved") for hit in hits]
        unique = list({m.memory.id: m for m in reversed(candidates)}.values())[::-1]  # first mention wins
        prompt = build_prompt(
            self.engine.tokenizer,
            PromptInputs(system_prompt=conversation.system_prompt, user_message=text, profile_line=describe(profile),
                         memories=unique, summary=summary_lines(conversation.summary), window=window,
                         checkpoint=restored.get("checkpoint"), sources=sources, tools=self.tool_schemas()),
            context_length=self.engine.context_length,
            reply_tokens=reply_reserve(self.engine.context_length, params.max_tokens),
            window_tokens=self.config.window_tokens)
        updates: dict[str, Any] = {}
        if prompt.folded:
            updates["summary"] = "\n".join([*summary_lines(conversation.summary), *prompt.folded_lines])
            updates["summarized_through"] = prompt.folded[-1].id
        if conversation.restored:
            updates["restored"] = None
        if updates:
            self.store.update_conversation(conversation.id, **updates)
        return prompt

    def events(self, turn: Turn, cancel: threading.Event | None = None) -> Iterator[str | AgentEvent]:
        """Yield the reply's text as it is generated and, in an agent turn, each tool call's
        start and finish; stop early when `cancel` is set."""
        if turn.agent is None:
            yield from self.stream(turn, cancel)
            return
        loop = AgentLoop(self._routed_engine(turn), self.tools, self.tool_schemas(), max_steps=self.max_steps,
                         tool_choice=turn.tool_choice, reply_reserve=turn.prompt.reply_tokens)
        state = turn.agent
        try:
            for event in loop.run(state, turn.params, cancel):
                if isinstance(event, str) and turn.first_token_seconds is None:
                    turn.first_token_seconds = time.perf_counter() - turn.started
                yield event
        finally:
            turn.reply, turn.finish_reason = state.reply, state.finish_reason
            turn.completion_tokens = state.completion_tokens

    def stream(self, turn: Turn, cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the reply's text as it is generated; stop early when `cancel` is set."""
        if turn.agent is not None:
            yield from (event for event in self.events(turn, cancel) if isinstance(event, str))
            return
        events = self._routed_engine(turn).stream([turn.prompt.ids], turn.params)
        with contextlib.closing(events):
            for event in events:
                if cancel is not None and cancel.is_set():
                    turn.finish_reason = "cancelled"
                    return
                if event.token_ids:
                    if turn.first_token_seconds is None:
                        turn.first_token_seconds = time.perf_counter() - turn.started
                    turn.completion_tokens += len(event.token_ids)
                if event.finish_reason:
                    turn.finish_reason = event.finish_reason
                if event.text:
                    turn.reply += event.text
                    yield event.text

    def finish(self, turn: Turn) -> TurnResult:
        """Store the reply (whatever was generated, with its finish reason) and its chunks."""
        chunks = [NewMemory("chunk", c, "assistant") for c in chunk_message(turn.reply)]
        vectors = self._embed([c.text for c in chunks])
        finish_reason = turn.finish_reason or "length"
        calls = turn.agent.calls if turn.agent is not None else []
        meta = {"model": turn.model, "finish_reason": finish_reason, "prompt_tokens": turn.prompt.tokens,
                "completion_tokens": turn.completion_tokens, "checkpoint": turn.prompt.checkpoint,
                "memories": [m.as_dict() for m in turn.prompt.memories],
                "summarized": [m.id for m in turn.prompt.folded],
                "sources": [{"n": s.n, "chunk_id": s.chunk_id, "ref": s.ref} for s in turn.prompt.sources]}
        if turn.agent is not None:
            meta["agent"] = {"model_calls": turn.agent.model_calls, "tool_calls": [c.as_dict() for c in calls]}
        if turn.route is not None:
            meta["route"] = turn.route.to_dict()
        with self._write():
            for message in turn.agent.added if turn.agent is not None else []:
                self._store_step(turn, message)
            reply = self.store.append(turn.conversation_id, "assistant", turn.reply, reply_to=turn.user_message.id,
                                      meta=meta)
            self.memories.add(chunks, conversation_id=turn.conversation_id, source_message_id=reply.id,
                              vectors=vectors, embedder=self.embedder.name)
        return TurnResult(turn.reply, turn.conversation_id, turn.user_message.id, reply.id, turn.model, finish_reason,
                          turn.completion_tokens, time.perf_counter() - turn.started, turn.first_token_seconds,
                          turn.prompt, list(calls), turn.agent.model_calls if turn.agent is not None else 1, turn.route)

    def _store_step(self, turn: Turn, message: dict) -> None:
        """An agent step's message in the tree: the assistant's tool calls (their JSON as the
        content, the OpenAI calls in meta) or a tool result (its tool and call id in meta)."""
        if message["role"] == "assistant":
            self.store.append(turn.conversation_id, "assistant", tool_call_text(message["tool_calls"]),
                              reply_to=turn.user_message.id, meta={"tool_calls": message["tool_calls"]})
        else:
            call = next((c for c in turn.agent.calls if c.call_id == message.get("tool_call_id")), None)
            meta = {"name": message.get("name"), "tool_call_id": message.get("tool_call_id")}
            if call is not None:
                meta.update(outcome=call.outcome, duration_s=round(call.duration_s, 4), audit_id=call.result.call_id)
            self.store.append(turn.conversation_id, "tool", message["content"], reply_to=turn.user_message.id,
                              meta=meta)

    def send(self, text: str, params: SamplingParams | None = None, *, on_text: Callable[[str], None] | None = None,
             on_event: Callable[[AgentEvent], None] | None = None, cancel: threading.Event | None = None,
             tool_choice: ToolChoices = "auto") -> TurnResult:
        return self.run(self.begin(text, params, tool_choice=tool_choice), on_text=on_text, on_event=on_event,
                        cancel=cancel)

    def edit_and_resend(self, message_id: int, text: str, params: SamplingParams | None = None, *,
                        on_text: Callable[[str], None] | None = None,
                        on_event: Callable[[AgentEvent], None] | None = None, cancel: threading.Event | None = None,
                        tool_choice: ToolChoices = "auto") -> TurnResult:
        """`begin_edit`, then the reply: a new branch beside the edited message."""
        return self.run(self.begin_edit(message_id, text, params, tool_choice=tool_choice), on_text=on_text,
                        on_event=on_event, cancel=cancel)

    def regenerate(self, message_id: int, params: SamplingParams | None = None, *,
                   on_text: Callable[[str], None] | None = None, on_event: Callable[[AgentEvent], None] | None = None,
                   cancel: threading.Event | None = None, tool_choice: ToolChoices = "auto") -> TurnResult:
        """`begin_regenerate`, then the reply: a sibling of reply `message_id`."""
        return self.run(self.begin_regenerate(message_id, params, tool_choice=tool_choice), on_text=on_text,
                        on_event=on_event, cancel=cancel)

    def run(self, turn: Turn, *, on_text: Callable[[str], None] | None = None,
            on_event: Callable[[AgentEvent], None] | None = None, cancel: threading.Event | None = None) -> TurnResult:
        """Generate a begun turn to the end (or until `cancel`), then store it."""
        for piece in self.events(turn, cancel):
            if isinstance(piece, str):
                if on_text is not None:
                    on_text(piece)
            elif on_event is not None:
                on_event(piece)
        return self.finish(turn)

    # ---- embeddings --------------------------------------------------------------------------
    def _embed(self, texts: list[str]):
        return self.embedder.embed(texts)

    def _backfill(self) -> None:
        """Embed a few memories this embedder has not seen (written under another model, or
        restored from a checkpoint), so vector search gradually covers everything. Once a pass
        finds the home covered, later turns skip the look-up until the model or a checkpoint
        load brings memories without vectors."""
        if self._covered == self.embedder.name:
            return
        with self._read():
            missing = self.memories.missing_vectors(self.embedder.name, BACKFILL)
        if len(missing) < BACKFILL:
            self._covered = self.embedder.name
        if not missing:
            return
        vectors = self._embed([m.text for m in missing])
        with self._write():
            present = {m.id for m in self.memories.get_many(m.id for m in missing)}
            keep = [i for i, m in enumerate(missing) if m.id in present]
            self.memories.attach_vectors([missing[i].id for i in keep], vectors[keep], self.embedder.name)
