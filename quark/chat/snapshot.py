"""Chat snapshots: a conversation's memory state saved under a name (`quark checkpoint`, `/save`).

The CLI calls them checkpoints; in code they are snapshots, apart from training checkpoints
(quark.train.checkpoint).

A snapshot holds the summary, the entities (facts learnt in the conversation), pinned memories,
the documents retrieved into the latest prompt, tool outputs, the message tip, and the messages
from the root to the tip, so importing it into a fresh home reproduces it. Restoring copies the
messages (new ids, same tree), re-creates the memories that are missing, and marks the
conversation so the next prompt carries the restored memories (`restored`). Snapshots are
validated with pydantic on import: a malformed file is one line naming the field at fault.
"""

from __future__ import annotations

import difflib
import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from quark.atomic import write_text
from quark.chat.store import ChatStore
from quark.db import transaction
from quark.errors import QuarkError
from quark.home import validate_name
from quark.inputs import read_json_file
from quark.memory.extract import NewMemory
from quark.memory.profile import PROFILE_KEY
from quark.memory.store import Memory, MemoryStore
from quark.tools.audit import record_checkpoint

FORMAT = "quark-checkpoint"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SnapshotMessage(_Model):
    id: int
    parent_id: int | None
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    created_at: float


class SnapshotMemory(_Model):
    id: int | None = None
    kind: Literal["fact", "chunk", "pinned"]
    tag: str | None = None
    text: str


class ToolOutput(_Model):
    tool: str
    arguments: Any = None
    result: str | None = None
    ok: bool = True
    created_at: float = 0.0


class SnapshotConversation(_Model):
    id: int | None = None
    title: str
    model: str | None = None
    system_prompt: str = ""


class Snapshot(_Model):
    format: Literal["quark-checkpoint"] = FORMAT
    version: Literal[1] = 1
    name: str
    created_at: float
    conversation: SnapshotConversation
    summary: str = ""
    summarized_through: int | None = None
    entities: list[SnapshotMemory] = []
    pinned: list[SnapshotMemory] = []
    retrieved: list[SnapshotMemory] = []
    tool_outputs: list[ToolOutput] = []
    tip: int | None = None
    messages: list[SnapshotMessage] = []
    profile: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return validate_name(value, "checkpoint name")
        except QuarkError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _thread(self) -> Snapshot:
        """The messages must be one path root → tip, and the summary must end on one of them."""
        previous = None
        for index, message in enumerate(self.messages):
            if message.parent_id != previous:
                raise ValueError(f"messages[{index}].parent_id is {message.parent_id}, expected {previous} "
                                 "(messages run from the root to the tip)")
            previous = message.id
        if self.tip != previous:
            raise ValueError(f"tip is {self.tip} but the last message is {previous}")
        ids = {m.id for m in self.messages}
        if self.summarized_through is not None and self.summarized_through not in ids:
            raise ValueError(f"summarized_through {self.summarized_through} is not one of the messages")
        return self


# ---- building and restoring (inside the caller's transaction) --------------------------------
def take_snapshot(store: ChatStore, memories: MemoryStore, conversation_id: int, name: str) -> Snapshot:
    conversation = store.conversation(conversation_id)
    thread = store.thread(conversation.tip_id)
    thread_ids = [m.id for m in thread]
    placeholders = ",".join("?" * len(thread_ids)) or "NULL"
    fact_rows = memories.conn.execute(
        "SELECT id FROM memories WHERE kind = 'fact' AND (conversation_id = ? OR source_message_id IN "
        f"({placeholders})) "
        "ORDER BY id", (conversation_id, *thread_ids)).fetchall()
    last_reply = next((m for m in reversed(thread) if m.role == "assistant"), None)
    retrieved = [m for m in (last_reply.meta.get("memories", []) if last_reply else []) if m.get("source") != "pinned"]
    tools = memories.conn.execute("SELECT tool, arguments, result, ok, created_at FROM tool_calls "
                                  "WHERE conversation_id = ? AND kind = 'tool' ORDER BY id", (conversation_id,)).fetchall()
    return Snapshot(
        name=name, created_at=time.time(),
        conversation={"id": conversation.id, "title": conversation.title, "model": conversation.model,
                      "system_prompt": conversation.system_prompt},
        summary=conversation.summary,
        summarized_through=conversation.summarized_through if conversation.summarized_through in thread_ids else None,
        entities=[_memory(m) for m in memories.get_many(r[0] for r in fact_rows)],
        pinned=[_memory(m) for m in memories.pinned(conversation_id)],
        retrieved=[{"id": int(m["id"].lstrip("m")), "kind": m["kind"], "tag": m.get("tag"), "text": m["text"]}
                   for m in retrieved],
        tool_outputs=[{"tool": t[0], "arguments": _json_or_text(t[1]), "result": t[2], "ok": bool(t[3]),
                       "created_at": t[4]} for t in tools],
        tip=thread_ids[-1] if thread_ids else None,
        messages=[{"id": m.id, "parent_id": m.parent_id, "role": m.role, "content": m.content,
                   "created_at": m.created_at} for m in thread],
        profile=store.preference(PROFILE_KEY, {}) or {},
    )


def restore_snapshot(store: ChatStore, memories: MemoryStore, snapshot: Snapshot,
                     conversation_id: int | None = None) -> int:
    """Restore into a new conversation (None) or an existing one; returns the conversation id.

    The snapshot's thread is copied as a new branch and becomes the tip; the summary replaces the
    conversation's; entities, pinned memories, retrieved documents and tool outputs are re-created
    where this home lacks them and are carried into the next prompt."""
    meta = snapshot.conversation
    if conversation_id is None:
        conversation = store.create_conversation(title=meta.title, model=meta.model, system_prompt=meta.system_prompt)
    else:
        conversation = store.conversation(conversation_id)
        if not conversation.system_prompt and meta.system_prompt:
            store.update_conversation(conversation.id, system_prompt=meta.system_prompt)
    ids: dict[int, int] = {}
    for message in snapshot.messages:
        copy = store.insert_message(conversation.id, ids.get(message.parent_id), message.role, message.content,
                                    created_at=message.created_at)
        ids[message.id] = copy.id
    carried = []
    for item in [*snapshot.entities, *snapshot.retrieved]:
        carried += _ensure(memories, item, conversation.id)
    for tool in snapshot.tool_outputs:
        text = f"tool {tool.tool} output: {tool.result if tool.result is not None else '(none)'}"
        carried += memories.add([NewMemory("chunk", text, "tool")], conversation_id=conversation.id,
                                source_message_id=None)
    memories.add([NewMemory("pinned", p.text, p.tag) for p in snapshot.pinned], conversation_id=conversation.id,
                 source_message_id=None)
    fields: dict[str, Any] = {"summary": snapshot.summary, "summarized_through": ids.get(snapshot.summarized_through),
                              "restored": {"checkpoint": snapshot.name,
                                           "memory_ids": list(dict.fromkeys(m.id for m in carried))}}
    if snapshot.messages or conversation_id is None:
        fields["tip_id"] = ids.get(snapshot.tip) if snapshot.tip is not None else None
    store.update_conversation(conversation.id, **fields)
    return conversation.id


def _ensure(memories: MemoryStore, item: SnapshotMemory, conversation_id: int) -> list[Memory]:
    """The memory itself when this home still has it (same id and text), else a new copy."""
    if item.id is not None:
        existing = memories.get_many([item.id])
        if existing and existing[0].text == item.text:
            return existing
    return memories.add([NewMemory(item.kind, item.text, item.tag)], conversation_id=conversation_id,
                        source_message_id=None)


def _memory(memory: Memory) -> SnapshotMemory:
    return SnapshotMemory(id=memory.id, kind=memory.kind, tag=memory.tag, text=memory.text)


def _json_or_text(value: str | None) -> Any:
    try:
        return json.loads(value) if value is not None else None
    except ValueError:
        return value


# ---- the checkpoints table -------------------------------------------------------------------
def save_snapshot(conn, name: str, conversation_id: int, *, force: bool = False) -> Snapshot:
    validate_name(name, "checkpoint name")
    with transaction(conn):
        exists = conn.execute("SELECT 1 FROM checkpoints WHERE name = ?", (name,)).fetchone()
        if exists and not force:
            raise QuarkError(f"checkpoint {name!r} already exists (use --force to replace it, or pick another name)")
        snapshot = take_snapshot(ChatStore(conn), MemoryStore(conn), conversation_id, name)
        _store(conn, snapshot, conversation_id)
        record_checkpoint(conn, "save", name, conversation_id,
                          {"messages": len(snapshot.messages), "replaced": bool(exists)})
    return snapshot


def _store(conn, snapshot: Snapshot, conversation_id: int | None) -> None:
    conn.execute("INSERT INTO checkpoints(name, conversation_id, snapshot, created_at) VALUES (?,?,?,?) "
                 "ON CONFLICT(name) DO UPDATE SET conversation_id = excluded.conversation_id, "
                 "snapshot = excluded.snapshot, created_at = excluded.created_at",
                 (snapshot.name, conversation_id, snapshot.model_dump_json(), snapshot.created_at))


def get_snapshot(conn, name: str) -> Snapshot:
    validate_name(name, "checkpoint name")
    row = conn.execute("SELECT snapshot FROM checkpoints WHERE name = ?", (name,)).fetchone()
    if row is None:
        known = [r[0] for r in conn.execute("SELECT name FROM checkpoints ORDER BY name LIMIT 10")]
        raise QuarkError(f"no checkpoint {name!r}" + (f" (known: {', '.join(known)})" if known else " (none saved "
                                                                                                    "yet)"))
    return Snapshot.model_validate_json(row[0])


def load_snapshot(conn, name: str, conversation_id: int | None = None) -> int:
    """Restore checkpoint `name` into a new conversation (None) or `conversation_id`."""
    snapshot = get_snapshot(conn, name)
    with transaction(conn):
        restored = restore_snapshot(ChatStore(conn), MemoryStore(conn), snapshot, conversation_id)
        record_checkpoint(conn, "load", name, restored, {"into": "new" if conversation_id is None else "current"})
        return restored


def list_snapshots(conn) -> list[dict]:
    out = []
    for name, conversation_id, raw, created in conn.execute(
            "SELECT name, conversation_id, snapshot, created_at FROM checkpoints ORDER BY created_at DESC, name"):
        snapshot = Snapshot.model_validate_json(raw)
        out.append({"name": name, "created_at": created, "conversation_id": conversation_id,
                    "title": snapshot.conversation.title, "messages": len(snapshot.messages),
                    "entities": len(snapshot.entities), "pinned": len(snapshot.pinned),
                    "summary_lines": len([s for s in snapshot.summary.splitlines() if s.strip()])})
    return out


def delete_snapshot(conn, name: str) -> None:
    get_snapshot(conn, name)
    with transaction(conn):
        conn.execute("DELETE FROM checkpoints WHERE name = ?", (name,))


def export_snapshot(conn, name: str, path: Path) -> Path:
    snapshot = get_snapshot(conn, name)
    path = Path(path)
    if path.is_dir():
        raise QuarkError(f"{path} is a folder; give a file name such as {path / (name + '.json')}")
    write_text(path, snapshot.model_dump_json(indent=2) + "\n")
    return path


def read_snapshot_file(path: Path) -> Snapshot:
    """Parse and validate an exported checkpoint; any problem is one line naming file and field."""
    path = Path(path)
    if not path.exists():
        raise QuarkError(f"no such file {path}")
    data = read_json_file(path, "checkpoint file")
    try:
        return Snapshot.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        message = first["msg"].removeprefix("Value error, ")
        raise QuarkError(f"{path}: field {where}: {message}{more}") from None


def import_snapshot_file(conn, path: Path, *, name: str | None = None, force: bool = False) -> Snapshot:
    snapshot = read_snapshot_file(path)
    if name is not None:
        snapshot = snapshot.model_copy(update={"name": validate_name(name, "checkpoint name")})
    with transaction(conn):
        if conn.execute("SELECT 1 FROM checkpoints WHERE name = ?", (snapshot.name,)).fetchone() and not force:
            raise QuarkError(f"checkpoint {snapshot.name!r} already exists (use --name NEW or --force)")
        _store(conn, snapshot, None)
    return snapshot


def diff_snapshots(a: Snapshot, b: Snapshot) -> dict[str, Any]:
    """What changed from checkpoint a to checkpoint b, field by field; `same` when nothing did."""
    changes: dict[str, Any] = {}
    for field in ("title", "model", "system_prompt"):
        before, after = getattr(a.conversation, field), getattr(b.conversation, field)
        if before != after:
            changes[field] = {"a": before, "b": after}
    summary = [line for line in difflib.unified_diff(a.summary.splitlines(), b.summary.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    if summary:
        changes["summary"] = summary
    for field in ("entities", "pinned", "retrieved"):
        before = [m.text for m in getattr(a, field)]
        after = [m.text for m in getattr(b, field)]
        added, removed = [t for t in after if t not in before], [t for t in before if t not in after]
        if added or removed:
            changes[field] = {"added": added, "removed": removed}
    tools_a = [(t.tool, t.result) for t in a.tool_outputs]
    tools_b = [(t.tool, t.result) for t in b.tool_outputs]
    if tools_a != tools_b:
        changes["tool_outputs"] = {"added": [f"{t}: {r}" for t, r in tools_b if (t, r) not in tools_a],
                                   "removed": [f"{t}: {r}" for t, r in tools_a if (t, r) not in tools_b]}
    turns_a = [(m.role, m.content) for m in a.messages]
    turns_b = [(m.role, m.content) for m in b.messages]
    common = 0
    while common < min(len(turns_a), len(turns_b)) and turns_a[common] == turns_b[common]:
        common += 1
    if common != len(turns_a) or common != len(turns_b):
        changes["messages"] = {"common": common, "only_a": len(turns_a) - common, "only_b": len(turns_b) - common,
                               "a_after_common": [f"{r}: {c[:80]}" for r, c in turns_a[common:common + 5]],
                               "b_after_common": [f"{r}: {c[:80]}" for r, c in turns_b[common:common + 5]]}
    return {"a": a.name, "b": b.name, "same": not changes, "changes": changes}
