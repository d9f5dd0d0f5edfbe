"""A conversation as a file people or programs read: Markdown (the thread as it reads in the TUI)
or JSON (every message of the tree, with parent ids, so forks and regenerated replies survive)."""

from __future__ import annotations

import json
from pathlib import Path

from quark.atomic import write_text
from quark.chat.store import ChatStore, Conversation, Message
from quark.errors import QuarkError

FORMATS = ("md", "json")


def render(store: ChatStore, conversation_id: int, fmt: str) -> str:
    """The conversation in `fmt`: 'md' is the current thread (root to tip), 'json' the whole tree."""
    if fmt not in FORMATS:
        raise QuarkError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    conversation = store.conversation(conversation_id)
    if fmt == "md":
        return _markdown(conversation, store.thread(conversation.tip_id))
    rows = store.conn.execute("SELECT id FROM messages WHERE conversation_id = ? ORDER BY id",
                              (conversation_id,)).fetchall()
    messages = [store.message(row[0]) for row in rows]
    thread = {m.id for m in store.thread(conversation.tip_id)}
    return json.dumps({
        "id": conversation.id, "title": conversation.title, "model": conversation.model,
        "system_prompt": conversation.system_prompt, "created_at": conversation.created_at,
        "tip_id": conversation.tip_id,
        "messages": [{"id": m.id, "parent_id": m.parent_id, "role": m.role, "content": m.content,
                      "reply_to": m.reply_to, "on_thread": m.id in thread, "meta": m.meta,
                      "created_at": m.created_at} for m in messages],
    }, indent=2, ensure_ascii=False) + "\n"


def export(store: ChatStore, conversation_id: int, path: Path, fmt: str | None = None) -> dict:
    """Write the conversation to `path` (atomically); the format defaults to the file's suffix."""
    path = Path(path)
    fmt = fmt or ("json" if path.suffix.lower() == ".json" else "md")
    text = render(store, conversation_id, fmt)
    if not path.parent.is_dir():
        raise QuarkError(f"-o {path}: folder {path.parent} does not exist")
    write_text(path, text)
    return {"conversation_id": conversation_id, "path": str(path), "format": fmt, "bytes": len(text.encode())}


def _markdown(conversation: Conversation, thread: list[Message]) -> str:
    parts = [f"# {conversation.title}", ""]
    if conversation.model:
        parts += [f"model: {conversation.model}", ""]
    if conversation.system_prompt:
        parts += ["**system**", "", conversation.system_prompt, ""]
    for message in thread:
        note = message.meta.get("finish_reason")
        parts += [f"**{message.role}** (#{message.id}{', ' + note if note and note != 'stop' else ''})", "",
                  message.content, ""]
    return "\n".join(parts)
