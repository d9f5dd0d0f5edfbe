"""The audit log: every tool call, and every checkpoint save and restore, as a `tool_calls` row.

Columns: created_at, conversation_id, kind ('tool' for a tool call, 'checkpoint' for a save or
restore done outside a tool), tool, arguments (the JSON as the model wrote it, so a replay runs
exactly that), ok, outcome, error, result (the `tool` message content), result_digest (its
sha256), duration_s. Rows are written in their own transaction, or inside the caller's.
"""

from __future__ import annotations

import json
import time
from typing import Any

from quark.db import transaction
from quark.errors import QuarkError

_COLUMNS = ("id, created_at, conversation_id, kind, tool, arguments, ok, outcome, error, result, result_digest, "
            "duration_s")


def record(conn, *, tool: str, arguments: str, outcome: str, result: str | None, digest: str | None,
           duration_s: float, conversation_id: int | None = None, error: str | None = None, kind: str = "tool",
           in_transaction: bool = False) -> int:
    """Append one row; returns its id. `in_transaction`: the caller holds a transaction already."""
    values = (conversation_id, kind, tool, arguments, result, int(outcome == "ok"), outcome, error, digest,
              duration_s, time.time())
    sql = ("INSERT INTO tool_calls(conversation_id, kind, tool, arguments, result, ok, outcome, error, "
           "result_digest, duration_s, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)")
    if in_transaction:
        return conn.execute(sql, values).lastrowid
    with transaction(conn):
        return conn.execute(sql, values).lastrowid


def record_checkpoint(conn, action: str, name: str, conversation_id: int | None, detail: dict[str, Any]) -> int:
    """A checkpoint save or restore (`action` 'save' | 'load'), inside the caller's transaction."""
    payload = json.dumps({"name": name, **detail}, sort_keys=True)
    return record(conn, tool=f"checkpoint_{action}", arguments=json.dumps({"name": name}), outcome="ok",
                  result=payload, digest=None, duration_s=0.0, conversation_id=conversation_id,
                  kind="checkpoint", in_transaction=True)


def _row(row) -> dict[str, Any]:
    keys = [c.strip() for c in _COLUMNS.split(",")]
    out = dict(zip(keys, tuple(row)))
    out["ok"] = bool(out["ok"])
    return out


def rows(conn, *, conversation_id: int | None = None, tool: str | None = None, limit: int = 50) -> list[dict]:
    """The latest `limit` rows (newest first), optionally of one conversation or tool."""
    where, params = [], []
    if conversation_id is not None:
        where.append("conversation_id = ?")
        params.append(conversation_id)
    if tool is not None:
        where.append("tool = ?")
        params.append(tool)
    sql = f"SELECT {_COLUMNS} FROM tool_calls" + (f" WHERE {' AND '.join(where)}" if where else "")
    return [_row(r) for r in conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))]


def get(conn, call_id: int) -> dict[str, Any]:
    row = conn.execute(f"SELECT {_COLUMNS} FROM tool_calls WHERE id = ?", (call_id,)).fetchone()
    if row is None:
        raise QuarkError(f"no tool call {call_id} in the audit log (see `quark tools log`)")
    return _row(row)
