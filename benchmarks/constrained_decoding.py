"""What grammar-constrained decoding costs per token: the same model, prompts, seeds and token
counts decoded with and without a JSON-schema grammar, at batch 1 and batch 16.

The model is the `tiny` preset (4 layers, hidden 128) with random weights, and the tokenizer a real
SentencePiece unigram model of the preset's 4,096 pieces trained with Quark's own settings (byte
fallback, chat specials) on standard-library source. The grammar is an array of tool-call-shaped
objects with at least 64 items, so no row completes early: every configuration decodes exactly
`--tokens` tokens per row and the ratio compares like with like. The per-token figure is decode
time only (after the first token), best of `--repeat` interleaved runs, on the wall clock and on
this thread's CPU clock (less sensitive to other jobs on a shared machine; llguidance's masks are
computed on this thread).

    .venv/bin/python benchmarks/constrained_decoding.py            # writes its section of RESULTS.md
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

import torch
from _results import write_section

from quark.inference import Engine, SamplingParams, json_schema_grammar
from quark.inference.grammar import constrain
from quark.models.llm import LLM, PRESETS
from quark.tokenizer import Tokenizer, train_tokenizer

QUESTIONS = ["What is the weather in Paris?", "Search the web for SQLite WAL mode.", "Run print(2 ** 10).",
             "List the files in the workspace.", "Fetch https://example.org and summarise it.",
             "What does shutil.copytree do?", "How many lines are in setup.py?", "Save a checkpoint called demo."]
CALL = {"type": "object", "additionalProperties": False, "required": ["name", "arguments"], "properties": {
    "name": {"enum": ["web_search", "fetch_url", "run_code", "read_file", "list_dir"]},
    "arguments": {"type": "object", "additionalProperties": False, "required": ["query", "limit", "safe"],
                  "properties": {"query": {"type": "string", "maxLength": 40},
                                 "limit": {"type": "integer", "minimum": 1, "maximum": 50},
                                 "safe": {"type": "boolean"}}}}}
SCHEMA = {"type": "array", "items": CALL, "minItems": 64}


def trained_tokenizer(vocab_size: int, folder: Path) -> Tokenizer:
    texts = [p.read_text(errors="replace") for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:60]]
    train_tokenizer(texts, folder / "tokenizer", vocab_size)
    return Tokenizer.load(folder / "tokenizer.model")


def decode_seconds(engine: Engine, prompts: list[list[int]],
                   params: list[SamplingParams]) -> tuple[float, float, list[list[int]]]:
    """Wall and CPU seconds from the first token to the last, and each row's tokens."""
    first, tokens = None, [[] for _ in prompts]
    for event in engine.stream(prompts, params):
        first = first or (time.perf_counter(), time.thread_time())
        tokens[event.index] += event.token_ids
    return time.perf_counter() - first[0], time.thread_time() - first[1], tokens


def grammar_seconds(engine: Engine, grammar, paths: list[list[int]]) -> float:
    """CPU seconds the grammar alone costs for these rows: each step's masks (`constrain`, on
    logits shaped like the batch's) and accepting each row's token, replayed on fresh matchers."""
    matchers = [engine.grammars.matcher(grammar) for _ in paths]
    logits = torch.zeros(len(paths), engine.model.config.vocab_size)
    start = time.thread_time()
    for step in range(len(paths[0])):
        constrain(logits, list(enumerate(matchers)))
        for matcher, path in zip(matchers, paths):
            matcher.accept(path[step])
    return time.thread_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64, help="tokens decoded per row")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved runs per figure; the fastest is kept")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    torch.set_num_threads(1)

    config = PRESETS["tiny"]
    with tempfile.TemporaryDirectory() as tmp:
        tok = trained_tokenizer(config.vocab_size, Path(tmp))
    torch.manual_seed(0)
    engine = Engine(LLM(config).eval(), tok, "tiny")
    engine.stop_ids = set()  # random weights: never stop early, so both sides decode the same count
    grammar = json_schema_grammar(SCHEMA)
    start = time.perf_counter()
    engine.grammars  # noqa: B018 - reads the vocabulary into llguidance once per engine
    vocab_s, start = time.perf_counter() - start, time.perf_counter()
    engine.grammars.check(grammar)
    compile_s = time.perf_counter() - start

    parameters = sum(p.numel() for p in engine.model.parameters())
    rows = []
    for batch in (1, 16):
        questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(batch)]
        prompts = [engine.chat_prompt([{"role": "user", "content": q}]) for q in questions]
        best = {False: [float("inf")] * 2, True: [float("inf")] * 2}
        alone = float("inf")
        for _ in range(args.repeat):
            for constrained in (False, True):
                params = [SamplingParams(max_tokens=args.tokens, temperature=1.0, seed=i,
                                         grammar=grammar if constrained else None) for i in range(batch)]
                wall, cpu, paths = decode_seconds(engine, prompts, params)
                best[constrained] = [min(best[constrained][0], wall), min(best[constrained][1], cpu)]
            alone = min(alone, grammar_seconds(engine, grammar, paths))
        per_token = {k: [s / (batch * (args.tokens - 1)) * 1e3 for s in v] for k, v in best.items()}
        rows.append((batch, per_token[False], per_token[True], alone / (batch * args.tokens) * 1e3))

    lines = [
        "## Constrained decoding",
        "",
        f"Command: `.venv/bin/python benchmarks/constrained_decoding.py --tokens {args.tokens} --repeat {args.repeat}` "
        f"— {date.today()}, 2-core CPU, shared ({platform.processor() or platform.machine()}, load average "
        f"{os.getloadavg()[0]:.1f} at the end), 1 torch thread, torch {torch.__version__}, "
        "llguidance grammar masks.",
        "",
        f"`tiny` preset with random weights ({parameters / 1e6:.1f} M parameters), "
        f"a trained {tok.vocab_size:,}-piece SentencePiece tokenizer (byte fallback); the grammar is a JSON schema "
        f"(an array of at least 64 tool-call objects: enum name, string ≤ 40 chars, bounded integer, boolean), "
        f"compiled once in {compile_s * 1e3:.1f} ms (reading the vocabulary into llguidance, once per engine: "
        f"{vocab_s * 1e3:.0f} ms). {args.tokens} tokens per row, sampled at temperature 1.0; "
        "decode time per generated token, best of the runs.",
        "",
        "| batch | unconstrained ms/token (wall / CPU) | constrained ms/token (wall / CPU) | ratio (wall / CPU) "
        "| grammar alone, µs/token (CPU) | ratio from it |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for batch, free, constrained, alone in rows:
        lines.append(f"| {batch} | {free[0]:.3f} / {free[1]:.3f} | {constrained[0]:.3f} / {constrained[1]:.3f} | "
                     f"**{constrained[0] / free[0]:.2f}×** / {constrained[1] / free[1]:.2f}× | "
                     f"{alone * 1e3:.0f} | {(free[1] + alone) / free[1]:.2f}× |")
    lines += ["", "\"Grammar alone\" replays the constrained rows' tokens through fresh matchers: the masks "
              "(llguidance plus applying them to the logits) and accepting each token, per generated token, on this "
              "thread's CPU clock; \"ratio from it\" adds that to the unconstrained CPU figure. On a shared machine "
              "it is the steadier of the two estimates."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section("## Constrained decoding", text)


if __name__ == "__main__":
    main()
