"""Tokenizer speed and compression on the running Python's standard library source.

Trains the demo tokenizer on a sample of the stdlib (through `quark tokenize train`'s library
path), then measures encode throughput three ways — one thread per call, SentencePiece's batched
multi-threaded encode, and the full `quark tokenize encode` datatrove pipeline — and chars/token
on the whole stdlib and on the held-out documents. Prints a Markdown table for RESULTS.md.

    .venv/bin/python benchmarks/tokenizer.py [--vocab-size 8000] [--max-chars 4000000]
"""

from __future__ import annotations

import argparse
import os
import platform
import sysconfig
import tempfile
import time
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from quark.home import Home
from quark.tokenizer import Tokenizer
from quark.tokenizer.encode import encode_datasets
from quark.tokenizer.training import train_named_tokenizer

DEMO_VOCAB = 8000


def stdlib_texts() -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] == "site-packages":
            continue
        try:
            texts.append(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return texts


def timed(fn, repeat: int = 1):
    """(result, fastest seconds of `repeat` runs): the fastest run is the least disturbed by other load."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=DEMO_VOCAB)
    parser.add_argument("--max-chars", type=int, default=4_000_000, help="training sample size")
    parser.add_argument("--shards", type=int, default=8, help="Parquet shards of the stdlib dataset")
    parser.add_argument("--repeat", type=int, default=3, help="runs per throughput figure; the fastest is kept")
    args = parser.parse_args()

    texts = stdlib_texts()
    chars = sum(map(len, texts))
    with tempfile.TemporaryDirectory() as tmp:
        home = Home.open(tmp)
        size = -(-len(texts) // args.shards)
        for i in range(args.shards):
            path = home.dataset_dir("stdlib") / "train" / f"shard-{i:05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table({"text": texts[i * size:(i + 1) * size]}), path)

        meta, train_s = timed(lambda: train_named_tokenizer(home, "demo", ["stdlib"], args.vocab_size,
                                                            max_chars=args.max_chars))
        tok = Tokenizer.named(home, "demo")
        serial, serial_s = timed(lambda: [tok.encode(t) for t in texts], args.repeat)
        _, batch_s = timed(lambda: tok.encode_batch(texts), args.repeat)
        _, decode_s = timed(lambda: [tok.decode(ids) for ids in serial], args.repeat)
        tokens = sum(map(len, serial))
        exact = all(tok.decode(ids) == text for ids, text in zip(serial, texts))
        encoded, pipeline_s = timed(lambda: encode_datasets(home, "demo", ["stdlib"], val_fraction=0.01), args.repeat)

    rows = [
        ("corpus", f"{len(texts):,} stdlib .py files, {chars / 1e6:.1f} M chars"),
        ("train (SentencePiece unigram)",
         f"vocab {args.vocab_size:,} on {meta['training']['chars'] / 1e6:.1f} M chars: "
                                          f"{train_s:.1f} s"),
        ("chars/token, whole stdlib", f"{chars / tokens:.3f} ({tokens:,} tokens)"),
        ("chars/token, held-out docs", f"{meta['held_out']['chars_per_token']} ({meta['held_out']['documents']} docs)"),
        ("round trip, every file", "exact" if exact else "NOT exact"),
        ("encode, 1 thread", f"{chars / serial_s / 1e6:.2f} M chars/s, {tokens / serial_s / 1e6:.2f} M tokens/s"),
        (f"encode_batch, {os.cpu_count()} threads", f"{chars / batch_s / 1e6:.2f} M chars/s, "
                                                   f"{tokens / batch_s / 1e6:.2f} M tokens/s"),
        ("decode, 1 thread", f"{chars / decode_s / 1e6:.2f} M chars/s"),
        (f"`quark tokenize encode` ({args.shards} shards, local executor)",
         f"{chars / pipeline_s / 1e6:.2f} M chars/s, {sum(encoded['tokens'].values()) / pipeline_s / 1e6:.2f} M "
         "tokens/s "
         f"end to end ({pipeline_s:.1f} s)"),
    ]
    print(f"Command: `.venv/bin/python benchmarks/tokenizer.py --vocab-size {args.vocab_size} "
          f"--max-chars {args.max_chars} --repeat {args.repeat}` — {date.today()}, {os.cpu_count()}-core CPU "
          f"({platform.processor() or platform.machine()}), "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| measure | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
