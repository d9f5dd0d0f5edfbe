"""Encode datasets into a packed token set, `tokens/<name>/`, as a datatrove pipeline.

One datatrove task per Parquet shard: task i reads shard i (datatrove's ParquetReader), encodes it
with Quark's tokenizer and writes its own `part-i/` with a TokenWriter. When every task is done,
the parts are renamed into one stream, `train-00000.bin …`, `val-00000.bin …`, in shard order, so
the output is the same whatever the executor or the number of workers. A document goes to `val`
when its text hashes under --val-fraction (`corpus_text.in_holdout`), so rebuilds put the same
documents in the same split. The whole build happens in a temporary folder renamed at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers import ParquetReader
from datatrove.utils.batching import batched

from quark.atomic import atomic_dir
from quark.data.executors import ExecutorOptions, StageRunner
from quark.errors import QuarkError
from quark.home import Home, validate_name
from quark.tokenizer import Tokenizer
from quark.tokenizer.corpus_text import TEXT_COLUMN, dataset_shards, in_holdout, provenance
from quark.tokenizer.token_shards import SPLITS, TokenWriter, shard_name, write_meta

DEFAULT_VAL_FRACTION = 0.01
_PROGRESS = ".progress"


class EncodeDocuments(PipelineStep):
    """datatrove step: each document's tokens followed by EOS, appended to this task's own shards."""

    name = "🔢 Quark encode"
    type = "🔢 - TOKENIZER"

    def __init__(self, model: bytes, output: str, val_fraction: float, *, batch_size: int = 256,
                 shard_tokens: int = 50_000_000) -> None:
        super().__init__()
        self.model, self.output, self.val_fraction = model, output, val_fraction
        self.batch_size, self.shard_tokens = batch_size, shard_tokens

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        tok = Tokenizer(self.model)
        writer = TokenWriter(Path(self.output) / part_name(rank), tok.vocab_size, self.shard_tokens)
        done, reported = 0, time.monotonic()
        for batch in batched(data, self.batch_size):
            texts = [doc.text for doc in batch]
            with self.track_time(unit="batch"):
                # One thread each: the executor already runs one task per core.
                for text, ids in zip(texts, tok.encode_batch(texts, num_threads=1)):
                    ids.append(tok.eos_id)
                    writer.add("val" if in_holdout(text, self.val_fraction) else "train", ids)
                    self.stat_update("tokens", value=len(ids))
            done += len(batch)
            if time.monotonic() - reported > 0.5:
                _report_progress(Path(self.output), rank, done)
                reported = time.monotonic()
            yield from batch
        writer.close(rank=rank)
        _report_progress(Path(self.output), rank, done)


def part_name(rank: int) -> str:
    return f"part-{rank:05d}"


def encode_datasets(home: Home, tokenizer: str, datasets: Sequence[str], name: str | None = None, *,
                    val_fraction: float = DEFAULT_VAL_FRACTION, options: ExecutorOptions | None = None,
                    on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Build `tokens/<name>/` (default `<dataset>-<tokenizer>`) and return its meta.json document.

    `on_progress(documents_done, total_rows)` is called about twice a second while workers run.
    """
    if not 0 <= val_fraction < 1:
        raise QuarkError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    options = options or ExecutorOptions()
    tok = Tokenizer.named(home, tokenizer)
    if name is None:
        if len(datasets) != 1:
            raise QuarkError("--name is required when encoding more than one dataset")
        name = f"{datasets[0]}-{tokenizer}"
    final = home.tokens_dir(validate_name(name, "token set name"))
    shards = dataset_shards(home, datasets)
    total = sum(s.rows for s in shards)
    started = time.time()
    with atomic_dir(final) as tmp:
        paths = tmp / ".shards.txt"
        paths.write_text("".join(f"{s.path.relative_to(home.root)}\n" for s in shards))
        pipeline = [
            ParquetReader(str(home.root), paths_file=str(paths), text_key=TEXT_COLUMN, read_metadata=False),
            EncodeDocuments(tok.model_bytes, str(tmp), val_fraction),
        ]
        poll = (lambda: on_progress(_progress_done(tmp), total)) if on_progress else None
        with StageRunner(options, tmp / ".logs") as runner:
            runner.run(f"{name}/encode", pipeline, len(shards), poll=poll)
        if on_progress:
            on_progress(total, total)
        entries, documents = _merge_parts(tmp, len(shards))
        paths.unlink()
        shutil.rmtree(tmp / ".logs")
        shutil.rmtree(tmp / _PROGRESS, ignore_errors=True)
        meta = write_meta(
            tmp, tok.vocab_size, entries, documents, name=name, eos_id=tok.eos_id, val_fraction=val_fraction,
            tokenizer={"name": tokenizer, "sha256": hashlib.sha256(tok.model_bytes).hexdigest()},
            datasets=provenance(shards, home.root), executor=options.kind,
            seconds=round(time.time() - started, 2),
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return meta


def _merge_parts(tmp: Path, tasks: int) -> tuple[list[dict], dict[str, int]]:
    """Rename every task's shards into one numbering per split, in task (= input shard) order."""
    entries: list[dict] = []
    documents = {split: 0 for split in SPLITS}
    numbered = {split: 0 for split in SPLITS}
    for rank in range(tasks):
        part = tmp / part_name(rank)
        meta = json.loads((part / "meta.json").read_text())
        for entry in meta["shards"]:
            target = shard_name(entry["split"], numbered[entry["split"]])
            numbered[entry["split"]] += 1
            (part / entry["file"]).rename(tmp / target)
            entries.append({**entry, "file": target})
        for split in SPLITS:
            documents[split] += meta["documents"][split]
        shutil.rmtree(part)
    return entries, documents


def _report_progress(output: Path, rank: int, done: int) -> None:
    """Leave this task's document count where the launching process can read it (atomically)."""
    folder = output / _PROGRESS
    folder.mkdir(exist_ok=True)
    tmp = folder / f".{rank:05d}.{os.getpid()}"
    tmp.write_text(str(done))
    os.replace(tmp, folder / f"{rank:05d}")


def _progress_done(output: Path) -> int:
    folder = output / _PROGRESS
    if not folder.is_dir():
        return 0
    total = 0
    for entry in folder.glob("[0-9]*"):
        try:
            total += int(entry.read_text() or 0)
        except (OSError, ValueError):  # being replaced right now: next poll gets it
            continue
    return total
