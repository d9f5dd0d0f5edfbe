"""The context every tool call receives: where it runs (home, database, conversation, workspace),
under which settings, and who decides what may run (the policy).

One object rather than many arguments, so a tool that needs the conversation or the workspace
asks for it and gets a clear tool error when the caller has none. The agent loop builds one per
conversation; `quark tools run` builds one per invocation.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from quark.db import connect
from quark.home import Home
from quark.tools.errors import ToolError
from quark.tools.settings import ToolSettings, load_settings

if TYPE_CHECKING:
    from quark.tools.web.addresses import Resolver

# confirm(tool_name, validated_arguments) -> True to run it. The TUI asks the user; scripted mode has none.
Confirm = Callable[[str, Any], bool]


@dataclass
class ToolPolicy:
    """Which tools may run for this conversation, and how risky ones get permission.

    allowed: tool names this conversation may call (None: every registered tool).
    allow_risky: run risky tools without asking (a flag the user passed, e.g. --allow-risky).
    confirm: otherwise ask this callback; with neither, risky tools are refused.
    """

    allowed: frozenset[str] | None = None
    allow_risky: bool = False
    confirm: Confirm | None = None


@dataclass
class ToolContext:
    home: Home
    conversation_id: int | None = None
    workspace: Path | None = None
    settings: ToolSettings = field(default_factory=ToolSettings)
    policy: ToolPolicy = field(default_factory=ToolPolicy)
    initiated_by: Literal["model", "user"] = "model"  # robots.txt binds model-initiated fetches
    resolver: Resolver | None = None  # DNS for fetch_url; None: the system resolver
    embedder: Any = None  # a quark.retrieval.embedder.Embedder for memory_search's vector side; None: text only
    conn: Any = None  # an open quark.db connection to share (the chat session's); None: opened lazily
    lock: Any = field(default_factory=threading.RLock)  # guards `conn` (the session's lock when shared)
    _owned: bool = field(default=False, repr=False)

    @classmethod
    def open(cls, home: Home, **kwargs: Any) -> ToolContext:
        """A context with the home's config.toml settings (unless `settings` is given)."""
        kwargs.setdefault("settings", load_settings(home.config_path))
        return cls(home=home, **kwargs)

    @contextlib.contextmanager
    def db(self) -> Iterator[Any]:
        """The quark.db connection, held under the lock for the block."""
        with self.lock:
            if self.conn is None:
                self.conn, self._owned = connect(self.home.db_path), True
            yield self.conn

    def close(self) -> None:
        if self._owned and self.conn is not None:
            self.conn.close()
            self.conn, self._owned = None, False

    def require_workspace(self) -> Path:
        if self.workspace is None:
            raise ToolError("no workspace folder is set for this conversation (give one with --workspace)")
        return Path(self.workspace)

    def require_conversation(self) -> int:
        if self.conversation_id is None:
            raise ToolError("this tool needs a conversation, and the call has none")
        return self.conversation_id
