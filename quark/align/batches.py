"""Token batches for alignment, addressed by sample index like pretraining's TokenWindows.

SFT: each conversation is encoded in the chat template with a loss mask (assistant content and
its closing <|end|> only), shifted into (inputs, labels), and packed first-come into windows of
seq_len; labels are IGNORE_INDEX (-100) everywhere else, padding included. Packing fixes the windows once;
every epoch visits them in an order drawn from (seed, epoch). Each window also carries `segments`, the
example every token belongs to (1, 2, … in the window; 0 for padding), so attention stays inside one
example: at inference a reply never sees another conversation, and in training an earlier example's
program must not be a place to copy a colour or a shape from (quark eval mesh, benchmarks/RESULTS.md).

Preferences: sample i is pair i (in a seeded order per epoch) as two rows, chosen then rejected,
each the prompt in the chat template and the reply with its <|end|>, padded on the right to the
longest row of the batch; labels cover the reply only (DPO's log-probabilities), and `last` is
each row's <|end|>, where a reward model reads its score.

Examples that cannot fit seq_len are left out and counted (never cut: a reply cut short would
teach the model to stop mid-sentence, or a preference to prefer half an answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from quark.align.data import Pair
from quark.errors import QuarkError
from quark.models.llm import IGNORE_INDEX
from quark.tokenizer import Tokenizer


def encode_example(tokenizer: Tokenizer, messages: Sequence[dict]) -> tuple[list[int], list[bool]]:
    """The chat template's ids for a conversation and, per id, whether the loss applies to it:
    True on an assistant turn's content (a tool call's <|tool_call|> and JSON included) and its
    <|end|>, False on BOS, role tokens and system/user/tool turns."""
    ids, mask = [tokenizer.bos_id], [False]
    for message in messages:
        turn = tokenizer.encode_turn(message)
        ids += turn
        mask += [False] + [message["role"] == "assistant"] * (len(turn) - 1)
    return ids, mask


def shift(ids: Sequence[int], mask: Sequence[bool]) -> tuple[list[int], list[int]]:
    """Causal LM (inputs, labels): position t predicts token t+1, labelled only where it is trained."""
    return list(ids[:-1]), [token if train else IGNORE_INDEX for token, train in zip(ids[1:], mask[1:])]


@dataclass
class Packed:
    inputs: np.ndarray  # (windows, seq_len) int64
    labels: np.ndarray
    segments: np.ndarray  # (windows, seq_len) the example each token is of, 1-based in its window; 0: padding
    examples: int  # examples packed
    skipped: int  # examples longer than seq_len, left out

    @property
    def trained_tokens(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())


def pack(tokenizer: Tokenizer, conversations: Sequence[list[dict]], seq_len: int, *, seed: int | None) -> Packed:
    """Pack conversations (shuffled by `seed` when given) into windows of `seq_len`."""
    count = len(conversations)
    order = np.random.default_rng(seed).permutation(count) if seed is not None else range(count)
    windows: list[tuple[list[int], list[int], list[int]]] = []
    current: tuple[list[int], list[int], list[int]] = ([], [], [])
    examples = skipped = 0
    for i in order:
        inputs, labels = shift(*encode_example(tokenizer, conversations[i]))
        if len(inputs) > seq_len:
            skipped += 1
            continue
        if len(current[0]) + len(inputs) > seq_len:
            windows.append(current)
            current = ([], [], [])
        current[2].extend([(current[2][-1] if current[2] else 0) + 1] * len(inputs))
        current[0].extend(inputs)
        current[1].extend(labels)
        examples += 1
    if current[0]:
        windows.append(current)
    out_inputs = np.full((len(windows), seq_len), tokenizer.pad_id, dtype=np.int64)
    out_labels = np.full((len(windows), seq_len), IGNORE_INDEX, dtype=np.int64)
    out_segments = np.zeros((len(windows), seq_len), dtype=np.int64)
    for row, (inputs, labels, segments) in enumerate(windows):
        out_inputs[row, :len(inputs)] = inputs
        out_labels[row, :len(labels)] = labels
        out_segments[row, :len(segments)] = segments
    return Packed(out_inputs, out_labels, out_segments, examples, skipped)


def _epoch_order(count: int, seed: int | None, index: int, cache: dict) -> int:
    """Sample `index` → item, visiting all `count` items once per epoch in a (seed, epoch) order."""
    if seed is None:
        return index % count
    epoch, i = divmod(index, count)
    if cache.get("epoch") != epoch:
        cache.update(epoch=epoch, order=np.random.default_rng([seed, epoch]).permutation(count))
    return int(cache["order"][i])


class ChatWindows:
    """Packed SFT windows as a Trainer data source: take(start, count) -> {input_ids, labels, segments}."""

    def __init__(self, packed: Packed, *, seed: int | None, what: str) -> None:
        if not len(packed.inputs):
            raise QuarkError(f"{what}: no example fits train.seq_len ({packed.skipped} longer ones left out)")
        self.packed, self.seed, self._cache = packed, seed, {}

    def __len__(self) -> int:
        return len(self.packed.inputs)

    def take(self, start: int, count: int) -> dict[str, torch.Tensor]:
        rows = [_epoch_order(len(self), self.seed, i, self._cache) for i in range(start, start + count)]
        return {"input_ids": torch.from_numpy(self.packed.inputs[rows]),
                "labels": torch.from_numpy(self.packed.labels[rows]),
                "segments": torch.from_numpy(self.packed.segments[rows])}


def encode_reply(tokenizer: Tokenizer, prompt: Sequence[dict], reply: str) -> tuple[list[int], int]:
    """The prompt in the chat template up to <|assistant|>, then the reply and <|end|>; and the
    prompt's length."""
    ids = tokenizer.encode_chat(prompt, add_generation_prompt=True)
    return ids + tokenizer.encode(reply) + [tokenizer.end_id], len(ids)


def pad_rows(sequences: Sequence[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    """(sequence, prompt length) rows, right-padded: input_ids, labels (the reply's tokens only,
    shifted), last (each row's final position)."""
    width = max(len(seq) for seq, _ in sequences)
    inputs = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    labels = torch.full((len(sequences), width), IGNORE_INDEX, dtype=torch.long)
    last = torch.empty(len(sequences), dtype=torch.long)
    for row, (seq, prompt_len) in enumerate(sequences):
        # The whole sequence is the input (a reward model reads the hidden state at its <|end|>);
        # position t is labelled with token t+1 when that token belongs to the reply.
        tokens = torch.tensor(seq)
        inputs[row, :len(seq)] = tokens
        labels[row, prompt_len - 1:len(seq) - 1] = tokens[prompt_len:]
        last[row] = len(seq) - 1
    return {"input_ids": inputs, "labels": labels, "last": last}


class PairBatches:
    """Preference pairs as a Trainer data source.

    take(start, count) -> input_ids / labels (2·count, T): rows 2i and 2i+1 are pair i's chosen and
    rejected sequence, whole; labels[t] is token t+1 where that token is the reply's (or its
    <|end|>), else IGNORE_INDEX; `last` (2·count,) is the position of each row's final token
    (<|end|>); `pair` (count,) the pairs' indices, for per-pair extras such as the reference
    log-probabilities DPO stores in `extra`.
    """

    def __init__(self, tokenizer: Tokenizer, pairs: Sequence[Pair], seq_len: int, *, seed: int | None,
                 what: str) -> None:
        self.pad_id, self.seed, self._cache = tokenizer.pad_id, seed, {}
        encoded = [(encode_reply(tokenizer, p.prompt, p.chosen), encode_reply(tokenizer, p.prompt, p.rejected))
                   for p in pairs]
        self.pairs = [e for e in encoded if max(len(e[0][0]), len(e[1][0])) <= seq_len]
        self.skipped = len(encoded) - len(self.pairs)
        if not self.pairs:
            raise QuarkError(f"{what}: no preference pair fits train.seq_len {seq_len} "
                             f"({self.skipped} longer ones left out)")
        self.extra: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def take(self, start: int, count: int) -> dict[str, torch.Tensor]:
        index = [_epoch_order(len(self), self.seed, i, self._cache) for i in range(start, start + count)]
        return self.rows(index)

    def rows(self, index: Sequence[int]) -> dict[str, torch.Tensor]:
        """The batch of the given pairs, in order."""
        index = list(index)
        batch = pad_rows([row for i in index for row in self.pairs[i]], self.pad_id)
        batch["pair"] = torch.tensor(index)
        batch.update({key: value[index] for key, value in self.extra.items()})
        return batch
