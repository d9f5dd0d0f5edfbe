"""API keys for `quark serve`: stored hashed in quark.db, checked per request, rate-limited per key.

A key is a random token shown once at creation; only its sha256 is stored, so a leaked database
does not leak usable keys. Revocation and new keys take effect on the next request of a running
server, because every request looks its key up in the database (one indexed read).

Once a home has ever had a key, requests need one until the user turns auth off explicitly
(`quark serve keys auth off`, kept in `serve_settings`): revoking the last key must not open the
server. A server bound beyond loopback needs a key whatever the setting (see quark.serving.app).
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


def parse_rate_limit(text: str, option: str = "--rate-limit", unit: str = "requests") -> int:
    """'60', '60/min' or '60/m' → `unit` per minute."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:/\s*(?:min|m|minute))?\s*", text)
    if not match or int(match.group(1)) < 1:
        raise QuarkError(f"{option} {text!r}: expected {unit} per minute, like 60 or 60/min")
    return int(match.group(1))


@dataclass(frozen=True)
class Caller:
    """Who made a request: a named database key (with its limits) or a key from --api-key-file."""

    name: str
    rate_limit: int | None  # requests per minute
    token_limit: int | None = None  # generated tokens per minute


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

    def create(self, name: str, rate_limit: int | None = None, token_limit: int | None = None) -> str:
        """Store a new key and return it in plain text (the only time it exists unhashed).
        A new key turns auth back on if it had been turned off."""
        validate_name(name, "key name")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._lock, db.transaction(self._db()) as conn:
            if conn.execute("SELECT 1 FROM api_keys WHERE name = ?", (name,)).fetchone():
                raise QuarkError(f"an API key named {name!r} already exists (names stay taken after revoke)")
            conn.execute("INSERT INTO api_keys(name, key_hash, rate_limit, token_limit, created_at) "
                         "VALUES (?, ?, ?, ?, ?)", (name, hash_key(key), rate_limit, token_limit, time.time()))
            conn.execute("DELETE FROM serve_settings WHERE key = 'auth'")
        return key

    def list(self) -> list[dict]:
        with self._lock:
            rows = self._db().execute("SELECT name, rate_limit, token_limit, created_at, revoked_at FROM api_keys "
                                      "ORDER BY created_at").fetchall()
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

    def auth_setting(self) -> str | None:
        """'off' once the user turned auth off (`quark serve keys auth off`), 'on', or None."""
        with self._lock:
            row = self._db().execute("SELECT value FROM serve_settings WHERE key = 'auth'").fetchone()
        return row["value"] if row else None

    def set_auth(self, enabled: bool) -> None:
        """Turn auth on or off for this home. Off is refused while a key is active: revoke them
        first, so that 'off' is always a deliberate choice about an open server."""
        with self._lock, db.transaction(self._db()) as conn:
            if not enabled:
                active = [r["name"] for r in conn.execute("SELECT name FROM api_keys WHERE revoked_at IS NULL")]
                if active:
                    raise QuarkError(f"cannot turn auth off while keys are active ({', '.join(active)}): "
                                     "revoke them first (quark serve keys revoke NAME)")
            conn.execute("INSERT INTO serve_settings(key, value, updated_at) VALUES ('auth', ?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                         ("on" if enabled else "off", time.time()))

    def required(self) -> bool:
        """Requests need a key when a key file was given, a key is active, auth was turned on, or
        the home ever had a key and auth was not turned off since."""
        if self._file_hashes or self.active_count() > 0:
            return True
        setting = self.auth_setting()
        if setting is not None:
            return setting == "on"
        with self._lock:
            return self._db().execute("SELECT count(*) FROM api_keys").fetchone()[0] > 0

    def lookup(self, key: str) -> Caller | None:
        digest = hash_key(key)
        if digest in self._file_hashes:
            return Caller("api-key-file", None)
        with self._lock:
            row = self._db().execute("SELECT name, rate_limit, token_limit FROM api_keys "
                                     "WHERE key_hash = ? AND revoked_at IS NULL", (digest,)).fetchone()
        return Caller(row["name"], row["rate_limit"], row["token_limit"]) if row else None


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
    """Sliding one-minute windows per caller, of requests and of generated tokens (as OpenAI's RPM
    and TPM). `check` answers which limit is reached and how long to wait, or None when allowed
    (and counts the request); `spend` records tokens as they are generated."""

    WINDOW = 60.0

    def __init__(self) -> None:
        self._calls: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._tokens: dict[str, collections.deque[tuple[float, int]]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def check(self, caller: Caller, now: float | None = None) -> tuple[str, float] | None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if caller.token_limit is not None:
                spent = self._window(self._tokens[caller.name], now)
                total = sum(n for _, n in spent)
                if total >= caller.token_limit:  # wait until enough tokens leave the window
                    for at, n in spent:
                        total -= n
                        if total < caller.token_limit:
                            return "tokens", at + self.WINDOW - now
            if caller.rate_limit is not None:
                calls = self._window(self._calls[caller.name], now)
                if len(calls) >= caller.rate_limit:
                    return "requests", calls[0] + self.WINDOW - now
                calls.append(now)
            return None

    def spend(self, caller: Caller | None, tokens: int, now: float | None = None) -> None:
        if caller is None or caller.token_limit is None or tokens <= 0:
            return
        with self._lock:
            self._tokens[caller.name].append((time.monotonic() if now is None else now, tokens))

    def _window(self, events: collections.deque, now: float) -> collections.deque:
        while events and (events[0][0] if isinstance(events[0], tuple) else events[0]) <= now - self.WINDOW:
            events.popleft()
        return events
