"""A chat turn on the `small` preset (random weights) with and without the prefix cache, and
decode compiled vs eager.

A turn's prompt is the previous turn's prompt, the previous reply and a new user message: with
the cache, the previous turn has been answered (its prompt's blocks are held), so only the reply
and the new message are prefilled. Each configuration is timed interleaved with its baseline in
the same run (A, B, A, B, …) and the figures are medians, printed beside the load average: on a
shared machine only the ratios are comparable across runs.

    python benchmarks/prefix_cache.py                    # 256, 1k and 2k context, 3 rounds
    python benchmarks/prefix_cache.py --contexts 256 --rounds 2 --no-compile --write
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

import torch
from _common import machine, preset_engine
from _results import write_section

from quark.inference import Engine, PrefixCache, SamplingParams

NEW_MESSAGE = 24  # tokens of the new user message
LAST_REPLY = 24  # tokens of the previous reply, now part of the window
REPLY = 16  # tokens of the reply whose whole-turn latency is measured
PLAN_SECONDS = 2.0  # SPEC §10: under 2 s response latency


def load() -> str:
    return "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def turn(engine: Engine, context: int) -> tuple[list[int], list[int]]:
    """(previous turn's prompt, this turn's prompt of `context` tokens, less the reply's room
    where the model's context would not hold it) as token ids."""
    context = min(context, engine.context_length - REPLY)
    g = torch.Generator().manual_seed(context)
    ids = torch.randint(1000, engine.model.config.vocab_size, (context,), generator=g).tolist()
    ids[0] = engine.tokenizer.bos_id
    return ids[:context - NEW_MESSAGE - LAST_REPLY], ids


def first_token(engine: Engine, previous: list[int], prompt: list[int], cached: bool, tokens: int = 1) -> float:
    """Seconds to the first token of `prompt` (or to all `tokens`), the previous turn answered before."""
    engine.prefix_cache = PrefixCache(2**30) if cached else None
    if cached:
        engine.generate([previous], SamplingParams(max_tokens=1, temperature=0))
    start = time.perf_counter()
    completion = engine.generate([prompt], SamplingParams(max_tokens=tokens, temperature=0))[0]
    return completion.first_token_seconds if tokens == 1 else time.perf_counter() - start


def interleaved(a, b, rounds: int) -> tuple[float, float]:
    times_a, times_b = [], []
    for _ in range(rounds):
        times_a.append(a())
        times_b.append(b())
    return statistics.median(times_a), statistics.median(times_b)


def decode_rate(engine: Engine, batch: int, new: int, compile_mode: str) -> float:
    """Decode tokens/s at `batch` rows of 32-token prompts (prefill excluded)."""
    engine.prefix_cache = None
    engine.compile = compile_mode
    prompts = [[engine.tokenizer.bos_id, *range(1000 + i, 1031 + i)] for i in range(batch)]
    completion = engine.generate(prompts, SamplingParams(max_tokens=new, temperature=0))[0]
    return batch * (new - 1) / (completion.seconds - completion.first_token_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", default="256,1024,2048")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-compile", action="store_true", help="skip compiled vs eager decode")
    parser.add_argument("--write", action="store_true", help="rewrite this section of benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    engine = preset_engine("small")
    lines = [f"Machine: {machine()}; `small` preset, random weights, fp32, greedy. "
             f"Load average at start: {load()}.", "",
             "| context | TTFT without cache | TTFT with cache | speed-up | whole turn with cache "
             f"({REPLY} tokens) | vs {PLAN_SECONDS:.0f} s plan | load |", "|---:|---:|---:|---:|---:|---|---|"]
    for context in (int(c) for c in args.contexts.split(",") if c):
        previous, prompt = turn(engine, context)
        first_token(engine, previous, prompt, cached=True)  # warm-up: allocator, kernels
        ttft = functools.partial(first_token, engine, previous, prompt)
        plain, cached = interleaved(functools.partial(ttft, cached=False), functools.partial(ttft, cached=True),
                                    args.rounds)
        whole = first_token(engine, previous, prompt, cached=True, tokens=REPLY)
        verdict = "under" if whole < PLAN_SECONDS else "over"
        row = (f"| {len(prompt):,} | {plain:.3f} s | {cached:.3f} s | **{plain / cached:.1f}×** | {whole:.2f} s | "
               f"{verdict} | {load()} |")
        print(row, flush=True)
        lines.append(row)
    if not args.no_compile:
        lines += ["", "| decode | eager tokens/s | compiled tokens/s | compiled / eager | load |",
                  "|---|---:|---:|---:|---|"]
        for batch, new in ((1, 24), (16, 12)):
            decode_rate(engine, batch, 4, "on")  # compile (and warm) outside the timing
            rate = functools.partial(decode_rate, engine, batch, new)
            eager, compiled = interleaved(functools.partial(rate, "off"), functools.partial(rate, "on"), args.rounds)
            row = f"| batch {batch} | {eager:.1f} | {compiled:.1f} | **{compiled / eager:.2f}×** | {load()} |"
            print(row, flush=True)
            lines.append(row)
    if args.write:
        command = "python benchmarks/prefix_cache.py " + " ".join(
            a for a in (f"--contexts {args.contexts}", f"--rounds {args.rounds}", f"--threads {args.threads}",
                        "--no-compile" if args.no_compile else "") if a)
        write_section("## Prefix cache and compiled decode",
                      f"## Prefix cache and compiled decode\n\n`{command} --write` — 2026-12-01, 2-core CPU, "
                      "shared.\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
