"""Conversations, messages and preferences in quark.db.

A conversation's messages form a tree through `parent_id`; the conversation's `tip_id` is the
message the next one continues, and the thread is the path from the root to the tip. Moving the
tip back to an earlier message (`fork`) starts a new branch there; nothing is deleted. A message's siblings (the
children of its parent) are its alternatives: an edited question beside the original, a
regenerated reply beside the first; `switch_to` in the session moves the tip to the newest leaf
under one of them. A conversation also carries its own settings (quark.chat.settings). Methods
here run plain statements: callers wrap writes in one transaction (quark.db.transaction) so a
turn commits whole or not at all.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from quark.chat.settings import ConversationSettings
from quark.errors import QuarkError
from quark.memory.summary import summary_line

ROLES = ("system", "user", "assistant", "tool")
NEW_TITLE = "New conversation"  # replaced by the first message's start
_CONVERSATION = ("id, title, model, system_prompt, summary, summarized_through, tip_id, restored, "
                 "created_at, updated_at, settings")
_MESSAGE = "id, conversation_id, parent_id, role, content, reply_to, meta, created_at"


@dataclass
class Conversation:
    id: int
    title: str
    model: str | None
    system_prompt: str
    summary: str
    summarized_through: int | None
    tip_id: int | None
    restored: dict | None
    created_at: float
    updated_at: float
    settings: ConversationSettings = field(default_factory=ConversationSettings)

    @classmethod
    def from_row(cls, row) -> Conversation:
        values = list(row)
        values[7] = json.loads(values[7]) if values[7] else None
        values[10] = ConversationSettings.from_json(values[10])
        return cls(*values)


@dataclass
class Message:
    id: int
    conversation_id: int
    parent_id: int | None
    role: str
    content: str
    reply_to: int | None
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0

    @classmethod
    def from_row(cls, row) -> Message:
        values = list(row)
        values[6] = json.loads(values[6] or "{}")
        return cls(*values)

    def as_chat(self) -> dict[str, Any]:
        """The message as the chat template reads it; an assistant's tool calls and a tool
        result's call id and tool name come from `meta` (where the agent loop stores them)."""
        chat: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.role == "assistant" and self.meta.get("tool_calls"):
            chat["tool_calls"] = self.meta["tool_calls"]
        elif self.role == "tool":
            chat.update({k: self.meta[k] for k in ("name", "tool_call_id") if k in self.meta})
        return chat


class ChatStore:
    def __init__(self, conn) -> None:
        self.conn = conn

    # ---- conversations -----------------------------------------------------------------------
    def create_conversation(self, *, title: str = NEW_TITLE, model: str | None = None,
                            system_prompt: str = "") -> Conversation:
        now = time.time()
        cursor = self.conn.execute(
            "INSERT INTO conversations(title, model, system_prompt, created_at, updated_at) VALUES (?,?,?,?,?)",
            (title, model, system_prompt, now, now))
        return self.conversation(cursor.lastrowid)

    def conversation(self, conversation_id: int) -> Conversation:
        row = self.conn.execute(f"SELECT {_CONVERSATION} FROM conversations WHERE id = ?", (conversation_id,
                                                                                            )).fetchone()
        if row is None:
            raise QuarkError(f"no conversation {conversation_id} (see the conversation list in `quark chat`)")
        return Conversation.from_row(row)

    def conversations(self, *, search: str | None = None, limit: int = 200) -> list[Conversation]:
        """Most recently updated first; `search` matches titles, any message's text (restored
        ones included, which have no memories) and, stemmed, the memories learnt from them."""
        if not search:
            rows = self.conn.execute(f"SELECT {_CONVERSATION} FROM conversations ORDER BY updated_at DESC, id DESC "
                                     "LIMIT ?", (limit,)).fetchall()
            return [Conversation.from_row(r) for r in rows]
        from quark.retrieval.hybrid import fts_query  # the same word rules as memory search

        match = fts_query(search)
        rows = self.conn.execute(
            f"SELECT {_CONVERSATION} FROM conversations WHERE title LIKE ?1 ESCAPE '\\' OR id IN ("
            "SELECT conversation_id FROM messages WHERE content LIKE ?1 ESCAPE '\\') OR id IN ("
            "SELECT m.conversation_id FROM memories_fts f JOIN memories m ON m.id = f.rowid "
            "WHERE memories_fts MATCH ?2) ORDER BY updated_at DESC, id DESC LIMIT ?3",
            (f"%{_like_escape(search)}%", match or '""', limit)).fetchall()
        return [Conversation.from_row(r) for r in rows]

    def latest_conversation(self) -> Conversation | None:
        found = self.conversations(limit=1)
        return found[0] if found else None

    def update_conversation(self, conversation_id: int, **fields: Any) -> Conversation:
        allowed = {"title", "model", "system_prompt", "summary", "summarized_through", "tip_id", "restored",
                   "settings"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown conversation fields {sorted(unknown)}")
        if "restored" in fields and fields["restored"] is not None:
            fields["restored"] = json.dumps(fields["restored"])
        if "settings" in fields:
            fields["settings"] = fields["settings"].to_json()
        assignments = ", ".join(f"{k} = ?" for k in fields)
        self.conversation(conversation_id)  # a clear error for an unknown id
        self.conn.execute(f"UPDATE conversations SET {assignments}, updated_at = ? WHERE id = ?",
                          (*fields.values(), time.time(), conversation_id))
        return self.conversation(conversation_id)

    def delete_conversation(self, conversation_id: int) -> None:
        """The conversation, its messages and what was learnt from it (memories, vectors)."""
        self.conversation(conversation_id)
        self.conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    # ---- messages ----------------------------------------------------------------------------
    def append(self, conversation_id: int, role: str, content: str, *, reply_to: int | None = None,
               meta: dict | None = None) -> Message:
        """Add a message after the conversation's current tip (read now, inside the caller's
        transaction, so two writers never attach to the same stale tip) and make it the tip."""
        if role not in ROLES:
            raise QuarkError(f"unknown chat role {role!r} (expected one of {', '.join(ROLES)})")
        conversation = self.conversation(conversation_id)
        message = self.insert_message(conversation_id, conversation.tip_id, role, content, reply_to=reply_to, meta=meta)
        self.conn.execute("UPDATE conversations SET tip_id = ?, updated_at = ? WHERE id = ?",
                          (message.id, message.created_at, conversation_id))
        return message

    def insert_message(self, conversation_id: int, parent_id: int | None, role: str, content: str, *,
                       reply_to: int | None = None, meta: dict | None = None,
                       created_at: float | None = None) -> Message:
        """A message under an explicit parent; the tip is not moved."""
        now = created_at if created_at is not None else time.time()
        cursor = self.conn.execute(
            "INSERT INTO messages(conversation_id, parent_id, role, content, reply_to, meta, created_at) "
            "VALUES (?,?,?,?,?,?,?)", (conversation_id, parent_id, role, content, reply_to, json.dumps(meta or {}),
                                       now))
        return Message(cursor.lastrowid, conversation_id, parent_id, role, content, reply_to, meta or {}, now)

    def update_meta(self, message_id: int, meta: dict) -> None:
        self.conn.execute("UPDATE messages SET meta = ? WHERE id = ?", (json.dumps(meta), message_id))

    def message(self, message_id: int) -> Message:
        row = self.conn.execute(f"SELECT {_MESSAGE} FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise QuarkError(f"no message {message_id}")
        return Message.from_row(row)

    def thread(self, tip_id: int | None, *, after: int | None = None) -> list[Message]:
        """Messages from the root (or from just after message `after`) down to `tip_id`, in order."""
        if tip_id is None:
            return []
        rows = self.conn.execute(
            f"WITH RECURSIVE up(id, depth) AS (SELECT ?, 0 UNION ALL "
            f"SELECT m.parent_id, up.depth + 1 FROM messages m JOIN up ON m.id = up.id "
            f"WHERE m.parent_id IS NOT NULL AND m.parent_id IS NOT ?) "
            f"SELECT {', '.join('m.' + c.strip() for c in _MESSAGE.split(','))} FROM up JOIN messages m ON m.id = "
            "up.id "
            f"ORDER BY up.depth DESC", (tip_id, after)).fetchall()
        messages = [Message.from_row(r) for r in rows]
        return [m for m in messages if m.id != after]

    def fork(self, conversation_id: int, message_id: int | None) -> Conversation:
        """Continue the conversation from `message_id` (None: from before its first message): it
        becomes the tip, and the summary is recomputed to cover only the folded messages that are
        on the new thread."""
        conversation = self.conversation(conversation_id)
        if message_id is not None:
            self.message_in(conversation_id, message_id)
        thread = self.thread(message_id)
        through = conversation.summarized_through
        folded = [m for m in thread if through is not None and m.id <= through]
        return self.update_conversation(
            conversation_id, tip_id=message_id, summarized_through=folded[-1].id if folded else None,
            summary="\n".join(summary_line(m.role, m.content) for m in folded))

    def message_in(self, conversation_id: int, message_id: int) -> Message:
        message = self.message(message_id)
        if message.conversation_id != conversation_id:
            raise QuarkError(f"message {message_id} is not in conversation {conversation_id}")
        return message

    # ---- branches ------------------------------------------------------------------------------
    def children(self, conversation_id: int, parent_id: int | None) -> list[Message]:
        """The messages directly under `parent_id` (None: the conversation's first messages), oldest first."""
        rows = self.conn.execute(f"SELECT {_MESSAGE} FROM messages WHERE conversation_id = ? AND parent_id IS ? "
                                 "ORDER BY id", (conversation_id, parent_id)).fetchall()
        return [Message.from_row(r) for r in rows]

    def branch_node(self, message: Message) -> Message:
        """The message whose siblings are `message`'s alternatives. For a reply that came after
        tool steps it is the turn's first step (the child of the user message), since a
        regenerated reply is a new child of that user message; for every other message, itself."""
        if message.role != "assistant" or message.reply_to is None or message.parent_id == message.reply_to:
            return message
        path = self.thread(message.id, after=message.reply_to)
        return path[0] if path and path[0].parent_id == message.reply_to else message

    def siblings(self, message_id: int) -> tuple[list[Message], int]:
        """`message_id`'s alternatives, oldest first (itself included: an edited question beside
        the original, regenerated replies beside the first), and its place among them."""
        node = self.branch_node(self.message(message_id))
        found = self.children(node.conversation_id, node.parent_id)
        return found, next(i for i, m in enumerate(found) if m.id == node.id)

    def newest_leaf(self, message_id: int) -> int:
        """The newest message at or under `message_id`. Ids only grow and a message is written
        after its parent, so the largest id under a message has no children: a leaf."""
        return self.conn.execute(
            "WITH RECURSIVE down(id) AS (SELECT ? UNION ALL SELECT m.id FROM messages m JOIN down ON m.parent_id = "
            "down.id) SELECT max(id) FROM down", (message_id,)).fetchone()[0]

    def off_branch(self, conversation_id: int, tip_id: int | None) -> set[int]:
        """The conversation's messages that are not on the thread to `tip_id`: other branches."""
        rows = self.conn.execute(
            "WITH RECURSIVE up(id) AS (SELECT ? UNION ALL SELECT m.parent_id FROM messages m JOIN up ON m.id = up.id "
            "WHERE m.parent_id IS NOT NULL) SELECT id FROM messages WHERE conversation_id = ? AND id NOT IN "
            "(SELECT id FROM up WHERE id IS NOT NULL)", (tip_id, conversation_id)).fetchall()
        return {r[0] for r in rows}

    def count_messages(self, conversation_id: int | None = None) -> int:
        if conversation_id is None:
            return self.conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        return self.conn.execute("SELECT count(*) FROM messages WHERE conversation_id = ?",
                                 (conversation_id,)).fetchone()[0]

    # ---- preferences -------------------------------------------------------------------------
    def preference(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM preferences WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_preference(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT INTO preferences(key, value, updated_at) VALUES (?,?,?) "
                          "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                          (key, json.dumps(value), time.time()))


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
