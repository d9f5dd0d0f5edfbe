"""Chat settings from the home's config.toml: a `[chat]` table and a `[keys]` table.

    [chat]
    system_prompt = "You are Quark, a concise local assistant."
    max_tokens = 256          # reply length
    temperature = 0.8
    top_k = 50
    top_p = 0.95
    window_tokens = 512       # short-term window budget (default: whatever the context leaves)
    memories = 6              # memories retrieved per turn
    sources = 4               # document chunks retrieved per turn with --index / /index
    seed = 0                  # fixed sampling seed, for reproducible replies (default: random)

    [keys]                    # TUI key bindings: binding id = "key" (see `quark chat --help`)
    stop = "escape"
    new_conversation = "ctrl+n"

A wrong key or type is a one-line error naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import tomllib

from quark.errors import QuarkError

DEFAULT_SYSTEM_PROMPT = "You are Quark, a helpful assistant that runs locally."


@dataclass
class ChatConfig:
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_tokens: int = 256
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    window_tokens: int | None = None
    memories: int = 6
    sources: int = 4
    seed: int | None = None
    keys: dict[str, str] = field(default_factory=dict)


_TYPES = {"system_prompt": (str,), "max_tokens": (int,), "temperature": (int, float), "top_k": (int,),
          "top_p": (int, float), "window_tokens": (int,), "memories": (int,), "sources": (int,), "seed": (int,)}


def load_config(path: Path) -> ChatConfig:
    """Read [chat] and [keys] from `path`; a missing file means the defaults."""
    path = Path(path)
    if not path.is_file():
        return ChatConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise QuarkError(f"{path}: {exc}") from None
    chat, keys = data.get("chat", {}), data.get("keys", {})
    if not isinstance(chat, dict) or not isinstance(keys, dict):
        raise QuarkError(f"{path}: [chat] and [keys] must be tables")
    config = ChatConfig()
    known = {f.name for f in fields(ChatConfig)} - {"keys"}
    for key, value in chat.items():
        if key not in known:
            raise QuarkError(f"{path}: unknown key chat.{key} (known: {', '.join(sorted(known))})")
        if not isinstance(value, _TYPES[key]) or isinstance(value, bool):
            raise QuarkError(f"{path}: chat.{key} = {value!r} should be {_TYPES[key][0].__name__}")
        setattr(config, key, value)
    for binding, key in keys.items():
        if not isinstance(key, str) or not key.strip():
            raise QuarkError(f"{path}: keys.{binding} = {key!r} should be a key name such as \"ctrl+s\"")
    config.keys = dict(keys)
    return config
