"""Packed causal-LM windows cut from a token stream, addressed by sample index.

Sample g of a run is a pure function of (stream, seq_len, seed, g): the trainer asks for samples
[start, start + count) and the data position it checkpoints is one integer. So a resumed run sees
exactly the windows an uninterrupted one would, and each process of a multi-process run reads its
own slice of a step's samples without any coordination.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from quark.errors import QuarkError


class TokenWindows:
    """Windows of seq_len + 1 tokens: inputs are the first seq_len, labels the last seq_len.

    With a seed (training), every epoch visits each window once, in an order drawn from (seed,
    epoch), after an offset drawn from the same generator so that window edges move between epochs.
    Without one (validation) the windows follow the stream from its start.
    """

    def __init__(self, shards: np.ndarray | Sequence[np.ndarray], seq_len: int, *, seed: int | None = None,
                 what: str = "tokens") -> None:
        # Shards stay separate memmaps (a corpus can outgrow memory); a window may span two.
        self.shards = [shards] if isinstance(shards, np.ndarray) else [s for s in shards if len(s)]
        self.ends = np.cumsum([len(s) for s in self.shards])
        self.seq_len, self.seed = seq_len, seed
        total = int(self.ends[-1]) if self.shards else 0
        # With a random offset below seq_len, this many windows always fit.
        usable = total - 1 - (seq_len - 1 if seed is not None else 0)
        self.windows_per_epoch = usable // seq_len
        if self.windows_per_epoch < 1:
            raise QuarkError(f"{what}: {total} tokens cannot fill one window of seq_len {seq_len} "
                             f"(needs at least {seq_len + 1 + (seq_len - 1 if seed is not None else 0)})")
        self._epoch: tuple[int, np.ndarray, int] | None = None

    def _order(self, epoch: int) -> tuple[np.ndarray, int]:
        if self._epoch is None or self._epoch[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._epoch = (epoch, rng.permutation(self.windows_per_epoch), int(rng.integers(self.seq_len)))
        return self._epoch[1], self._epoch[2]

    def start_of(self, index: int) -> int:
        """Stream offset of sample `index`."""
        if self.seed is None:
            return (index % self.windows_per_epoch) * self.seq_len
        epoch, i = divmod(index, self.windows_per_epoch)
        order, offset = self._order(epoch)
        return offset + int(order[i]) * self.seq_len

    def read(self, offset: int, length: int) -> np.ndarray:
        """Tokens [offset, offset + length) of the shards taken end to end."""
        shard = int(np.searchsorted(self.ends, offset, side="right"))
        begin = offset - (int(self.ends[shard - 1]) if shard else 0)
        parts = [self.shards[shard][begin:begin + length]]
        missing = length - len(parts[0])
        while missing > 0:
            shard += 1
            parts.append(self.shards[shard][:missing])
            missing -= len(parts[-1])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def take(self, start: int, count: int) -> dict[str, torch.Tensor]:
        """Samples [start, start + count) as {"input_ids", "labels"}: (count, seq_len) int64."""
        rows = np.stack([self.read(s, self.seq_len + 1) for s in map(self.start_of, range(start, start + count))])
        rows = torch.from_numpy(rows.astype(np.int64))
        return {"input_ids": rows[:, :-1], "labels": rows[:, 1:]}
