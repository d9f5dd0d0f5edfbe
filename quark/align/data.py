"""Alignment data on disk: chat JSONL (OpenAI `messages`) and preference pairs, checked line by line.

    {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": "..."}, ...]}
    {"prompt": "..." | [messages], "chosen": "...", "rejected": "..."}

`--data` names a JSONL file, a folder holding `train.jsonl` (and optionally `val.jsonl`, as
quark.data.synth and `quark data synth` write them), or a dataset folder under the home's `data/`.
Every row is validated before any training starts, and a bad one is refused with its file and
line number: a half-trained model on half-read data is worse than no model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from quark.errors import QuarkError
from quark.home import Home
from quark.jsonl import field, read_jsonl
from quark.tokenizer import ROLES


@dataclass(frozen=True)
class DataFiles:
    """Where a run's rows come from: the train file, and the held-out file if there is one."""

    train: Path
    val: Path | None

    def to_dict(self) -> dict:
        return {"train": str(self.train), "val": str(self.val) if self.val else None}


def resolve_data(home: Home, data: str, val: str | None = None) -> DataFiles:
    """`data` as a JSONL file, a folder with train.jsonl [+ val.jsonl], or a name under data/."""
    path = Path(data).expanduser()
    if not path.exists() and "/" not in data:
        candidate = home.dataset_dir(data)
        if candidate.exists():
            path = candidate
    if path.is_dir():
        train = path / "train.jsonl"
        if not train.is_file():
            raise QuarkError(f"--data {data!r}: folder {path} has no train.jsonl")
        held_out = path / "val.jsonl"
        found_val = held_out if held_out.is_file() else None
    elif path.is_file():
        train, found_val = path, None
    else:
        raise QuarkError(f"--data {data!r}: no such file or folder, and no dataset {data!r} under {home.root / 'data'}")
    if val is not None:
        found_val = Path(val).expanduser()
        if not found_val.is_file():
            raise QuarkError(f"--val {val!r}: no such file")
    return DataFiles(train.resolve(), found_val.resolve() if found_val else None)


def check_messages(messages: object, where: str) -> list[dict]:
    """A list of OpenAI-style messages with known roles and string contents (an assistant turn
    that calls tools may carry `tool_calls` instead of content)."""
    if not isinstance(messages, list) or not messages:
        raise QuarkError(f"{where}: 'messages' must be a non-empty list of messages")
    for index, message in enumerate(messages):
        at = f"{where}: message {index}"
        if not isinstance(message, dict):
            raise QuarkError(f"{at} is not an object")
        if "role" not in message:
            raise QuarkError(f"{at} has no 'role'")
        if message["role"] not in ROLES:
            raise QuarkError(f"{at} has unknown role {message['role']!r} (expected one of {', '.join(ROLES)})")
        calls = message.get("tool_calls")
        if calls is not None and (message["role"] != "assistant" or not isinstance(calls, list) or not calls):
            raise QuarkError(f"{at}: 'tool_calls' must be a non-empty list on an assistant message")
        if "content" not in message and not calls:
            raise QuarkError(f"{at} has no 'content'")
        content = message.get("content")
        if not isinstance(content, str) and not (content is None and calls):
            raise QuarkError(f"{at}: 'content' must be a string, got {type(content).__name__}")
    return messages


def read_chat(path: Path) -> list[list[dict]]:
    """Every conversation of a chat JSONL file; each must contain an assistant turn to learn from."""
    conversations = []
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        messages = check_messages(field(path, number, row, "messages", list), where)
        if not any(m["role"] == "assistant" for m in messages):
            raise QuarkError(f"{where}: no assistant message, so nothing to learn from")
        conversations.append(messages)
    if not conversations:
        raise QuarkError(f"{path}: no examples (the file is empty)")
    return conversations


@dataclass(frozen=True)
class Pair:
    """A preference: for `prompt` (the conversation so far), `chosen` is the better reply."""

    prompt: list[dict]
    chosen: str
    rejected: str


def read_pairs(path: Path) -> list[Pair]:
    """Every (prompt, chosen, rejected) row of a preference JSONL file. A string prompt is one
    user message; a list is a conversation in the chat format."""
    pairs = []
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        prompt = field(path, number, row, "prompt", (str, list))
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else check_messages(prompt, where)
        texts = []
        for name in ("chosen", "rejected"):
            text = field(path, number, row, name, str)
            if not text:
                raise QuarkError(f"{where}: field {name!r} is empty")
            texts.append(text)
        if texts[0] == texts[1]:
            raise QuarkError(f"{where}: 'chosen' and 'rejected' are the same text, so there is no preference")
        pairs.append(Pair(messages, *texts))
    if not pairs:
        raise QuarkError(f"{path}: no preference pairs (the file is empty)")
    return pairs


def prompts_of(conversations: Sequence[list[dict]]) -> list[list[dict]]:
    """Each conversation up to (not including) its first assistant turn: what a model is asked."""
    out = []
    for messages in conversations:
        first = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
        out.append(messages[:first])
    return out


def read_prompts(path: Path) -> list[list[dict]]:
    """The prompts of a JSONL file, whichever alignment format it is in: a `prompt` row (a string
    is one user message, a list a conversation; preference files qualify, their replies unread), or
    a chat `messages` row, asked up to its first assistant turn (so SFT data works too: its
    val.jsonl is a held-out prompt set). PPO samples its own replies to them."""
    prompts = []
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        if "prompt" in row:
            prompt = field(path, number, row, "prompt", (str, list))
            prompts.append([{"role": "user", "content": prompt}] if isinstance(prompt, str)
                           else check_messages(prompt, where))
        elif "messages" in row:
            messages = check_messages(field(path, number, row, "messages", list), where)
            first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), len(messages))
            if not first:
                raise QuarkError(f"{where}: the conversation starts with an assistant turn, so there is no prompt")
            prompts.append(messages[:first])
        else:
            raise QuarkError(f"{where}: expected a 'prompt' field (a string or messages) or a chat 'messages' list")
    if not prompts:
        raise QuarkError(f"{path}: no prompts (the file is empty)")
    return prompts
