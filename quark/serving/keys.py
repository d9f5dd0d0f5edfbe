"""API keys for `quark serve`: stored hashed in quark.db, checked per request, rate-limited per key.

A key is a random token shown once at creation; only its sha256 is stored, so a leaked database
does not leak usable keys. Revocation and new keys take effect on the next request of a running
server, because every request looks its key up in the database (one indexed read).
"""

from __future__ import annotations

import collections
import hashlib
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from quark import db
from quark.errors import QuarkError
from quark.home import validate_name

KEY_PREFIX = "qk-"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_rate_limit(text: str) -> int:
    """'60', '60/min' or '60/m' → requests per minute."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:/\s*(?:min|m|minute))?\s*", text)
    if not match or int(match.group(1)) < 1:
        raise QuarkError(f"--rate-limit {text!r}: expected requests per minute, like 60 or 60/min")
    return int(match.group(1))


@dataclass(frozen=True)
class Caller:
    """Who made a request: a named database key (with its limit) or a key from --api-key-file."""

    name: str
    rate_limit: int | None


class KeyStore:
    """The `api_keys` table of a home's quark.db, plus keys loaded from a file."""

    def __init__(self, db_path: Path, file_keys: Iterable[str] = ()) -> None:
        self.db_path = Path(db_path)
        self._conn = None
        self._lock = threading.Lock()
        self._file_hashes = {hash_key(k) for k in file_keys}

    def _db(self):
        if self._conn is None:
            self._conn = db.connect(self.db_path)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def create(self, name: str, rate_limit: int | None = None) -> str:
        """Store a new key and return it in plain text (the only time it exists unhashed)."""
        validate_name(name, "key name")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._lock, db.transaction(self._db()) as conn:
            if conn.execute("SELECT 1 FROM api_keys WHERE name = ?", (name,)).fetchone():
                raise QuarkError(f"an API key named {name!r} already exists (names stay taken after revoke)")
            conn.execute("INSERT INTO api_keys(name, key_hash, rate_limit, created_at) VALUES (?, ?, ?, ?)",
                         (name, hash_key(key), rate_limit, time.time()))
        return key

    def list(self) -> list[dict]:
        with self._lock:
            rows = self._db().execute(
                "SELECT name, rate_limit, created_at, revoked_at FROM api_keys ORDER BY created_at").fetchall()
        return [dict(row) for row in rows]

    def revoke(self, name: str) -> None:
        with self._lock, db.transaction(self._db()) as conn:
            row = conn.execute("SELECT revoked_at FROM api_keys WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise QuarkError(f"no API key named {name!r} (see: quark serve keys list)")
            if row["revoked_at"] is None:
                conn.execute("UPDATE api_keys SET revoked_at = ? WHERE name = ?", (time.time(), name))

    def active_count(self) -> int:
        with self._lock:
            return self._db().execute("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL").fetchone()[0]

    def required(self) -> bool:
        """Requests need a key once any key exists (database or file)."""
        return bool(self._file_hashes) or self.active_count() > 0

    def lookup(self, key: str) -> Caller | None:
        digest = hash_key(key)
        if digest in self._file_hashes:
            return Caller("api-key-file", None)
        with self._lock:
            row = self._db().execute("SELECT name, rate_limit FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL",
                                     (digest,)).fetchone()
        return Caller(row["name"], row["rate_limit"]) if row else None


def read_key_file(path: Path) -> list[str]:
    """Keys from a file, one per line; blank lines and '#' comments are skipped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise QuarkError(f"--api-key-file {path}: {exc.strerror or exc}") from None
    keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise QuarkError(f"--api-key-file {path}: no keys in it (one key per line)")
    return keys


class RateLimiter:
    """Sliding one-minute window per caller; `check` answers how long to wait, 0 when allowed."""

    WINDOW = 60.0

    def __init__(self) -> None:
        self._calls: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def check(self, caller: Caller, now: float | None = None) -> float:
        if caller.rate_limit is None:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            calls = self._calls[caller.name]
            while calls and calls[0] <= now - self.WINDOW:
                calls.popleft()
            if len(calls) >= caller.rate_limit:
                return calls[0] + self.WINDOW - now
            calls.append(now)
            return 0.0
