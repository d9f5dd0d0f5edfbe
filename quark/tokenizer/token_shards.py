"""Packed token shards: `tokens/<name>/{train,val}-XXXXX.bin` (flat uint16/uint32) + meta.json.

Every document is its tokens followed by EOS, concatenated; training samples windows from the
stream. meta.json lists each shard with its token count so a reader can check a truncated file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quark.errors import QuarkError

SPLITS = ("train", "val")


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:05d}.bin"


@dataclass
class TokenSet:
    """A read-only view of a token folder: one memmap per shard, validated against meta.json."""

    folder: Path
    meta: dict
    shards: dict[str, list[np.memmap]]

    @classmethod
    def open(cls, folder: Path) -> TokenSet:
        folder = Path(folder)
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            raise QuarkError(f"no token set at {folder} (missing meta.json)")
        try:
            meta = json.loads(meta_path.read_text())
            dtype = np.dtype(meta["dtype"])
            listed = meta["shards"]
        except (ValueError, KeyError, TypeError) as exc:
            raise QuarkError(f"{meta_path}: malformed meta.json ({exc})") from None
        shards: dict[str, list[np.memmap]] = {s: [] for s in SPLITS}
        for entry in listed:
            path = folder / entry["file"]
            if not path.is_file():
                raise QuarkError(f"missing token shard {path}")
            expected = int(entry["tokens"]) * dtype.itemsize
            if path.stat().st_size != expected:
                raise QuarkError(f"token shard {path} is truncated or corrupt: {path.stat().st_size} bytes, "
                                 f"meta.json says {expected}")
            if entry["tokens"]:
                shards[entry["split"]].append(np.memmap(path, dtype=dtype, mode="r"))
        return cls(folder=folder, meta=meta, shards=shards)

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    def num_tokens(self, split: str) -> int:
        return sum(len(s) for s in self.shards[split])

    def stream(self, split: str) -> np.ndarray:
        """All tokens of a split as one array (memmap when there is a single shard)."""
        parts = self.shards[split]
        if not parts:
            raise QuarkError(f"token set {self.folder.name} has no {split!r} tokens")
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


class TokenWriter:
    """Appends documents to shards of at most `shard_tokens` tokens; `close()` writes meta.json.

    Write into a temporary folder (see quark.atomic.atomic_dir) so a crash leaves nothing behind.
    """

    def __init__(self, folder: Path, vocab_size: int, shard_tokens: int = 50_000_000) -> None:
        self.folder, self.vocab_size, self.shard_tokens = Path(folder), vocab_size, shard_tokens
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dtype = dtype_for(vocab_size)
        self.entries: list[dict] = []
        self._open: dict[str, tuple[object, dict]] = {}
        self.documents = {s: 0 for s in SPLITS}

    def add(self, split: str, ids: list[int] | np.ndarray) -> None:
        handle, entry = self._open.get(split) or self._new_shard(split)
        if entry["tokens"] >= self.shard_tokens:
            handle.close()
            handle, entry = self._new_shard(split)
        array = np.asarray(ids, dtype=self.dtype)
        handle.write(array.tobytes())
        entry["tokens"] += len(array)
        self.documents[split] += 1

    def _new_shard(self, split: str):
        index = sum(1 for e in self.entries if e["split"] == split)
        entry = {"split": split, "file": shard_name(split, index), "tokens": 0}
        handle = open(self.folder / entry["file"], "wb")
        self.entries.append(entry)
        self._open[split] = (handle, entry)
        return handle, entry

    def close(self, **meta: object) -> dict:
        for handle, _ in self._open.values():
            handle.close()
        return write_meta(self.folder, self.vocab_size, self.entries, self.documents, **meta)


def write_meta(folder: Path, vocab_size: int, entries: list[dict], documents: dict[str, int], **meta: object) -> dict:
    """Write the meta.json that TokenSet.open reads: dtype, shards in stream order, per-split counts."""
    document = {"dtype": dtype_for(vocab_size).name, "vocab_size": vocab_size, "shards": entries,
                "tokens": {s: sum(e["tokens"] for e in entries if e["split"] == s) for s in SPLITS},
                "documents": documents, **meta}
    (Path(folder) / "meta.json").write_text(json.dumps(document, indent=2))
    return document
