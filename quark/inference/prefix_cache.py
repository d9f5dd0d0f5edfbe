"""Prefix cache: the keys and values of prompt prefixes already computed, reused by later prompts.

A chat turn re-sends its whole conversation and a server sees the same system prompt on every
request; without this cache each of them is prefilled from the first token. As vLLM and SGLang
do, prompts are cut into fixed blocks of `block` tokens and a block's KV is stored under (the
namespace, its parent block, its own tokens): a block is reusable only after exactly the same
tokens, so a match is always an exact prefix, never a hash that might collide. A new prompt
walks its blocks from the start and takes the longest chain held; only the rest is prefilled.

The namespace is the engine's identity (model, adapter, quantization, dtype, device): KV from
one set of weights never serves another. Memory is bounded in bytes and evicted least recently
used first; a block is touched after its descendants whenever a chain is used or stored, so a
parent is always newer than its children and eviction only ever removes leaves.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

BLOCK_TOKENS = 16


@dataclass
class PrefixStats:
    """Counters since the cache was made: what `quark serve` exposes on /metrics."""

    lookups: int = 0
    hits: int = 0  # lookups that reused at least one block
    tokens_saved: int = 0  # prompt tokens not prefilled thanks to the cache
    evictions: int = 0  # blocks dropped to stay under the budget


@dataclass
class _Block:
    id: int
    key: tuple
    kv: torch.Tensor  # (n_layer, 2, n_kv_head, block, head_dim)

    @property
    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()


class PrefixCache:
    """KV blocks of prompt prefixes under a byte budget (LRU). Thread-safe."""

    def __init__(self, budget_bytes: int, block: int = BLOCK_TOKENS) -> None:
        if budget_bytes <= 0:
            raise ValueError("a prefix cache needs a positive budget")
        self.budget_bytes, self.block = budget_bytes, block
        self.stats = PrefixStats()
        self._blocks: OrderedDict[tuple, _Block] = OrderedDict()  # least recently used first
        self._bytes = 0
        self._next_id = 1
        self._lock = threading.Lock()

    @classmethod
    def from_megabytes(cls, megabytes: float, block: int = BLOCK_TOKENS) -> PrefixCache | None:
        """The cache for a `--prefix-cache-mb` option: None (no cache) for 0."""
        return cls(int(megabytes * 2**20), block) if megabytes > 0 else None

    @property
    def nbytes(self) -> int:
        return self._bytes

    @property
    def blocks(self) -> int:
        return len(self._blocks)

    def _chain(self, namespace: str, tokens: Sequence[int], limit: int) -> list[_Block]:
        """The held blocks that start `tokens`, at most `limit` tokens' worth (lock held)."""
        chain: list[_Block] = []
        parent = 0
        for start in range(0, limit - self.block + 1, self.block):
            found = self._blocks.get((namespace, parent, tuple(tokens[start:start + self.block])))
            if found is None:
                break
            chain.append(found)
            parent = found.id
        return chain

    def _touch(self, chain: list[_Block]) -> None:
        for block in reversed(chain):  # children first: the root ends up the most recent
            self._blocks.move_to_end(block.key)

    def lookup(self, namespace: str, tokens: Sequence[int]) -> tuple[int, torch.Tensor | None]:
        """The longest cached prefix of `tokens` that still leaves one token to prefill (its logits
        are the next token's): (length, KV of shape (n_layer, 2, n_kv_head, length, head_dim))."""
        with self._lock:
            chain = self._chain(namespace, tokens, len(tokens) - 1)
            self.stats.lookups += 1
            if not chain:
                return 0, None
            self._touch(chain)
            self.stats.hits += 1
            length = len(chain) * self.block
            self.stats.tokens_saved += length
            return length, torch.cat([b.kv for b in chain], dim=3)

    def store(self, namespace: str, tokens: Sequence[int], kv: torch.Tensor) -> None:
        """Keep the whole blocks of `tokens` whose KV is `kv` (n_layer, 2, n_kv_head, ≥len, head_dim)."""
        with self._lock:
            whole = len(tokens) - len(tokens) % self.block
            chain = self._chain(namespace, tokens, whole)
            parent = chain[-1].id if chain else 0
            for start in range(len(chain) * self.block, whole, self.block):
                key = (namespace, parent, tuple(tokens[start:start + self.block]))
                block = _Block(self._next_id, key, kv[:, :, :, start:start + self.block].clone())
                if block.nbytes > self.budget_bytes:
                    break
                self._next_id += 1
                self._blocks[key] = block
                self._bytes += block.nbytes
                chain.append(block)
                parent = block.id
            self._touch(chain)
            while self._bytes > self.budget_bytes:
                _, evicted = self._blocks.popitem(last=False)
                self._bytes -= evicted.nbytes
                self.stats.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._bytes = 0
