"""Feedback on chat replies, and the preference pairs it yields for DPO (the human-in-the-loop
correction loop: chat, judge, train on the judgements).

Two kinds of judgement, both on assistant replies and stored in quark.db's `feedback` table:
- a rating, +1 or -1 (0 clears it);
- `best`: after regenerating, the reply marked better than its siblings (one per user message).

A pair is (prompt, chosen, rejected) for two replies to the same user message:
- a reply marked best is chosen over every other reply to that message (the mark is the later,
  comparative judgement, so it decides between the best reply and each of its siblings);
- among the others, a +1 reply is chosen over a -1 reply to that message (a rating alone says
  nothing about a reply to another question).
The prompt is what the replies answered: the conversation's system prompt, then the thread from
its first message down to the user message, in the chat format `quark finetune dpo` reads
(quark.align.data.read_pairs). Pairs the trainer would refuse (an empty reply, two identical
replies) are left out and counted. Only direct replies pair: a reply written after tool steps answered tool results that
the prompt would not show.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quark.atomic import write_text
from quark.chat.store import ChatStore, Message
from quark.errors import QuarkError

NO_PAIRS = ("no preference pairs in this home's chat feedback: rate replies in `quark chat` (+ and -: a + reply "
            "pairs with a - reply to the same message), or regenerate a reply (r) and mark the better one (b)")


@dataclass(frozen=True)
class Feedback:
    message_id: int
    rating: int = 0  # +1, -1, or 0 (none)
    best: bool = False


@dataclass
class PairSet:
    """The pairs, and how many candidate pairs were left out, by reason."""

    pairs: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    rated: int = 0  # replies with any feedback


class FeedbackStore:
    """Reads and writes `feedback` rows; callers wrap writes in quark.db.transaction."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.chat = ChatStore(conn)

    def _reply(self, message_id: int) -> Message:
        message = self.chat.message(message_id)
        if message.role != "assistant":
            raise QuarkError(f"message {message_id} is a {message.role} message: only replies (assistant "
                             "messages) take feedback")
        return message

    def get(self, message_id: int) -> Feedback:
        row = self.conn.execute("SELECT rating, best FROM feedback WHERE message_id = ?", (message_id,)).fetchone()
        return Feedback(message_id, row[0], bool(row[1])) if row else Feedback(message_id)

    def of_messages(self, message_ids: list[int]) -> dict[int, Feedback]:
        if not message_ids:
            return {}
        marks = ",".join("?" * len(message_ids))
        rows = self.conn.execute(f"SELECT message_id, rating, best FROM feedback WHERE message_id IN ({marks})",
                                 list(message_ids)).fetchall()
        return {r[0]: Feedback(r[0], r[1], bool(r[2])) for r in rows}

    def rate(self, message_id: int, rating: int) -> Feedback:
        if rating not in (-1, 0, 1):
            raise QuarkError(f"a rating is +1, -1 or 0 (clear), not {rating!r}")
        self._reply(message_id)
        self.conn.execute("INSERT INTO feedback(message_id, rating, updated_at) VALUES (?,?,?) ON CONFLICT(message_id) "
                          "DO UPDATE SET rating = excluded.rating, updated_at = excluded.updated_at",
                          (message_id, rating, time.time()))
        return self.get(message_id)

    def mark_best(self, message_id: int) -> Feedback:
        """Mark `message_id` the better of its sibling replies (and no other sibling)."""
        reply = self._reply(message_id)
        others = [m for m in self.chat.siblings(message_id)[0]
                  if m.id != self.chat.branch_node(reply).id and m.role == "assistant"]
        if not others:
            raise QuarkError(f"message {message_id} is the only reply to its message, so it cannot be the better "
                             "one: regenerate it first (r in the TUI, ChatSession.regenerate)")
        now = time.time()
        for other in others:
            self.conn.execute("UPDATE feedback SET best = 0, updated_at = ? WHERE message_id = ?", (now, other.id))
        self.conn.execute("INSERT INTO feedback(message_id, best, updated_at) VALUES (?,1,?) ON CONFLICT(message_id) "
                          "DO UPDATE SET best = 1, updated_at = excluded.updated_at", (message_id, now))
        return self.get(message_id)

    # ---- preference pairs ------------------------------------------------------------------------
    def pairs(self) -> PairSet:
        found = PairSet()
        rows = self.conn.execute("SELECT m.reply_to, count(*) FROM feedback f JOIN messages m ON m.id = f.message_id "
                                 "WHERE f.rating != 0 OR f.best = 1 GROUP BY m.reply_to ORDER BY min(m.id)").fetchall()
        for user_id, rated in rows:
            found.rated += rated
            if user_id is None:
                found.skipped["reply to nothing"] += rated
                continue
            self._pairs_for(self.chat.message(user_id), found)
        return found

    def _pairs_for(self, user: Message, found: PairSet) -> None:
        replies = [m for m in self.chat.children(user.conversation_id, user.id)
                   if m.role == "assistant" and not m.meta.get("tool_calls")]
        marks = self.of_messages([m.id for m in replies])
        mark = {m.id: marks.get(m.id, Feedback(m.id)) for m in replies}
        best = [m for m in replies if mark[m.id].best]
        wanted = [(b, other) for b in best for other in replies if other.id != b.id]
        unmarked = [m for m in replies if not mark[m.id].best]
        wanted += [(good, bad) for good in unmarked if mark[good.id].rating > 0
                   for bad in unmarked if mark[bad.id].rating < 0]
        prompt = None
        for chosen, rejected in wanted:
            if not chosen.content.strip() or not rejected.content.strip():
                found.skipped["empty reply"] += 1
            elif chosen.content == rejected.content:
                found.skipped["identical replies"] += 1
            else:
                prompt = prompt or self.prompt_of(user)
                found.pairs.append({"prompt": prompt, "chosen": chosen.content, "rejected": rejected.content})

    def prompt_of(self, user: Message) -> list[dict[str, Any]]:
        """What a reply to `user` answered: the system prompt and the thread down to `user`."""
        system = self.chat.conversation(user.conversation_id).system_prompt
        head = [{"role": "system", "content": system}] if system.strip() else []
        return head + [m.as_chat() for m in self.chat.thread(user.id) if m.role != "system"]


def write_pairs(conn, path: Path) -> dict[str, Any]:
    """Write every preference pair in the home's feedback to `path` as JSONL (atomically); a home
    without pairs is an error, since an empty training file helps nobody."""
    found = FeedbackStore(conn).pairs()
    if not found.pairs:
        raise QuarkError(NO_PAIRS)
    path = Path(path)
    if path.is_dir():
        raise QuarkError(f"{path} is a folder; give a file name such as {path / 'pairs.jsonl'}")
    write_text(path, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in found.pairs))
    return {"path": str(path), "pairs": len(found.pairs), "rated_replies": found.rated,
            "skipped": dict(found.skipped)}
