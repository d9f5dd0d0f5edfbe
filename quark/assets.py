"""Generated assets (meshes and images) under the home's `assets/`, each recorded in quark.db.

One table for both kinds, so `what made this file?` has one answer: the prompt, negative prompt,
seed, model and the parameters that produced it. Files are written atomically by their makers;
`record_asset` adds the row in a transaction and hashes the file as it now is.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quark import db
from quark.home import Home

KINDS = ("mesh", "image")


@dataclass(frozen=True)
class AssetRow:
    id: int
    kind: str
    path: str
    sha256: str
    prompt: str | None
    negative_prompt: str | None
    seed: int | None
    model: str | None
    params: dict
    created_at: float


def asset_path(home: Home, kind: str, stem: str, ext: str) -> Path:
    """A fresh path `assets/<kind>-<UTC time>-<stem>.<ext>` (stem: a short content hash)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return home.assets_dir / f"{kind}-{stamp}-{stem}.{ext}"


def record_asset(conn, kind: str, path: Path, *, prompt: str | None = None, negative_prompt: str | None = None,
                 seed: int | None = None, model: str | None = None, params: dict[str, Any] | None = None) -> int:
    """Insert one assets row for the file at `path` (already written) and return its id."""
    path = Path(path).resolve()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with db.transaction(conn):
        return insert_asset(conn, kind, path, digest, prompt=prompt, negative_prompt=negative_prompt, seed=seed,
                            model=model, params=params)


def insert_asset(conn, kind: str, path: Path, sha256: str, *, prompt: str | None = None,
                 negative_prompt: str | None = None, seed: int | None = None, model: str | None = None,
                 params: dict[str, Any] | None = None) -> int:
    """The row alone, for a caller already inside `db.transaction` that records several files at once
    (an image request's n PNGs: all rows or none) and hashed their bytes as it wrote them."""
    if kind not in KINDS:
        raise ValueError(f"asset kind must be one of {KINDS}")
    cursor = conn.execute(
        "INSERT INTO assets(kind, path, sha256, prompt, negative_prompt, seed, model, params, created_at) "
        "VALUES (?,?,?,?,?,?,?,?,?)",
        (kind, str(path), sha256, prompt, negative_prompt, seed, model, json.dumps(params or {}, sort_keys=True),
         time.time()))
    return int(cursor.lastrowid)


def list_assets(conn, kind: str | None = None) -> list[AssetRow]:
    sql, args = "SELECT * FROM assets", []
    if kind:
        sql, args = sql + " WHERE kind = ?", [kind]
    rows = conn.execute(sql + " ORDER BY id", args).fetchall()
    return [AssetRow(r["id"], r["kind"], r["path"], r["sha256"], r["prompt"], r["negative_prompt"], r["seed"],
                     r["model"], json.loads(r["params"]), r["created_at"]) for r in rows]
