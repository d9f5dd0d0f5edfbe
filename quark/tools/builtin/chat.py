"""checkpoint_save, checkpoint_load and memory_search: the chat's own state as tools.

They work on the context's conversation in quark.db (quark.chat.snapshot, quark.memory.store);
saves and restores are also written to the audit log by quark.chat.snapshot itself.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from quark.chat.snapshot import get_snapshot, load_snapshot, save_snapshot
from quark.errors import QuarkError
from quark.memory.store import MemoryStore
from quark.tools.base import Risk, Tool, ToolInput, ToolOutput
from quark.tools.context import ToolContext
from quark.tools.errors import ToolError


class CheckpointSaveInput(ToolInput):
    name: str = Field(description="Checkpoint name: letters, digits, '.', '_' or '-'; must be new.")


class CheckpointSaveOutput(ToolOutput):
    name: str
    conversation_id: int
    messages: int
    entities: int
    pinned: int


def checkpoint_save(args: CheckpointSaveInput, ctx: ToolContext) -> CheckpointSaveOutput:
    conversation = ctx.require_conversation()
    with ctx.db() as conn:
        try:
            snapshot = save_snapshot(conn, args.name, conversation)
        except QuarkError as exc:
            raise ToolError(str(exc)) from None
    return CheckpointSaveOutput(name=args.name, conversation_id=conversation, messages=len(snapshot.messages),
                                entities=len(snapshot.entities), pinned=len(snapshot.pinned))


class CheckpointLoadInput(ToolInput):
    name: str = Field(description="The checkpoint to restore.")
    into: Literal["current", "new"] = Field("current", description="Restore into this conversation or a new one.")


class CheckpointLoadOutput(ToolOutput):
    name: str
    conversation_id: int  # where it was restored (a new conversation when into = "new")
    messages: int


def checkpoint_load(args: CheckpointLoadInput, ctx: ToolContext) -> CheckpointLoadOutput:
    target = ctx.require_conversation() if args.into == "current" else None
    with ctx.db() as conn:
        try:
            snapshot = get_snapshot(conn, args.name)
            conversation = load_snapshot(conn, args.name, target)
        except QuarkError as exc:
            raise ToolError(str(exc)) from None
    return CheckpointLoadOutput(name=args.name, conversation_id=conversation, messages=len(snapshot.messages))


class MemorySearchInput(ToolInput):
    query: str = Field(min_length=1, max_length=400)
    k: int = Field(6, ge=1, le=50)


class MemoryHit(ToolOutput):
    ref: str
    kind: str
    text: str
    conversation_id: int | None
    score: float


class MemorySearchOutput(ToolOutput):
    query: str
    hits: list[MemoryHit]


def memory_search(args: MemorySearchInput, ctx: ToolContext) -> MemorySearchOutput:
    vector = ctx.embedder.embed([args.query])[0] if ctx.embedder is not None else None
    with ctx.db() as conn:
        hits = MemoryStore(conn).search(args.query, vector, ctx.embedder.name if ctx.embedder else None, k=args.k,
                                        kinds=("fact", "chunk", "pinned"))
    return MemorySearchOutput(query=args.query, hits=[
        MemoryHit(ref=h.memory.ref, kind=h.memory.kind, text=h.memory.text, conversation_id=h.memory.conversation_id,
                  score=round(h.score, 6)) for h in hits])


TOOLS = [
    Tool("checkpoint_save", "Save this conversation's memory state as a named checkpoint.", CheckpointSaveInput,
         CheckpointSaveOutput, checkpoint_save, timeout_s=20),
    Tool("checkpoint_load", "Restore a named checkpoint into this conversation or a new one.", CheckpointLoadInput,
         CheckpointLoadOutput, checkpoint_load, risk=Risk.RISKY, timeout_s=20),
    Tool("memory_search", "Search long-term memories (facts, message chunks, pinned notes).", MemorySearchInput,
         MemorySearchOutput, memory_search, timeout_s=20),
]
