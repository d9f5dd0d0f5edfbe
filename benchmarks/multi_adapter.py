"""Decode throughput with 1, 2 and 4 LoRA adapters active in one batch, as a ratio to the merged
single model (the adapter folded into the weights: the base's own cost).

One base in memory with four adapters side by side (quark.inference.multi_lora); a batch of
`--batch` rows, its rows spread round-robin over k adapters. k = 1 takes the no-gather path (one
plain low-rank matmul per layer), k = 2 and 4 the per-row gather. Every configuration decodes
exactly the same number of tokens, greedy, EOS ignored, and the configurations are interleaved
round by round so the shared machine's load falls on all of them alike; each reports its best
round. Before timing, the script checks that a row of adapter a0 gives the merged model's tokens.

    python benchmarks/multi_adapter.py                   # tiny preset, batch 8
    python benchmarks/multi_adapter.py --preset small --new 16 --rounds 2 --write
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _common import machine, save_preset_model
from _results import write_section

from quark.inference import Engine, SamplingParams

ADAPTERS = ["a0", "a1", "a2", "a3"]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]  # `quark finetune sft --lora`'s default targets
NOTE = ("The cost is the update's extra small operations on each wrapped layer (two low-rank matmuls; in a mixed "
        "batch a gather of each row's A and B and two batched matmuls): large beside the tiny preset's small "
        "matmuls and per-op overhead, smaller beside the small preset's (see both tables).")


def save_adapters(folder: Path, rank: int) -> None:
    """Four adapters of `rank` on the attention projections, through peft, with random B."""
    from peft import LoraConfig, get_peft_model

    from quark.modelfolder import load_model

    for seed, name in enumerate(ADAPTERS):
        torch.manual_seed(seed)
        model = load_model(folder)
        model.name_or_path = folder.name
        peft = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=TARGETS, bias="none",
                                                base_model_name_or_path=folder.name))
        with torch.no_grad():
            for param_name, param in peft.named_parameters():
                if "lora_B" in param_name:
                    param.normal_(0.0, 0.05)
        peft.save_pretrained(str(folder / "adapters" / name), save_embedding_layers=False)


def decode_rate(engine: Engine, prompts: list[list[int]], adapters: list[str | None] | None,
                new: int) -> tuple[float, list[int]]:
    """Decoded tokens per second of CPU time after the first token (prefill excluded), and row 0's tokens."""
    first, tokens = None, []
    for event in engine.stream(prompts, SamplingParams(max_tokens=new, temperature=0), adapters=adapters):
        first = first or time.thread_time()
        if event.index == 0:
            tokens += event.token_ids
    return len(prompts) * (new - 1) / (time.thread_time() - first), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=32, help="prompt tokens per row")
    parser.add_argument("--new", type=int, default=64, help="tokens decoded per row")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="rewrite this section of benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        folder = save_preset_model(Path(tmp), args.preset)
        save_adapters(folder, args.rank)
        merged = Engine.load(folder, adapter="a0")
        multi = Engine.load(folder, adapters=ADAPTERS)
    for engine in (merged, multi):
        engine.stop_ids = set()  # random weights: never stop early, every row decodes `new` tokens
    generator = torch.Generator().manual_seed(0)
    vocab = merged.model.config.vocab_size
    prompts = torch.randint(10, vocab, (args.batch, args.prompt), generator=generator).tolist()
    configs: dict[str, tuple[Engine, list[str | None] | None]] = {
        "merged a0 (baseline)": (merged, None),
        "base rows, 4 adapters loaded": (multi, [None] * args.batch)}  # what base requests pay for the adapters
    for k in (1, 2, 4):
        configs[f"{k} adapter{'s' if k > 1 else ''} side by side"] = (
            multi, [ADAPTERS[i % k] for i in range(args.batch)])

    _, want = decode_rate(merged, prompts[:1], None, 24)
    _, got = decode_rate(multi, prompts[:1], ["a0"], 24)
    if got != want:
        raise SystemExit(f"adapter a0 side by side gives other tokens than merged: {got} vs {want}")
    _, mixed = decode_rate(multi, prompts[:4], ["a0", "a1", "a2", "a3"], 24)
    if mixed != want:
        raise SystemExit("row 0 (adapter a0) of a 4-adapter batch gives other tokens than a0 alone")

    best: dict[str, float] = {name: 0.0 for name in configs}
    for _ in range(args.rounds):
        for name, (engine, adapters) in configs.items():
            rate, _ = decode_rate(engine, prompts, adapters, args.new)
            best[name] = max(best[name], rate)
    baseline = best["merged a0 (baseline)"]
    rows = [f"| {name} | {rate:,.0f} | {rate / baseline:.3f} |" for name, rate in best.items()]
    table = "| configuration | decode tokens/s (CPU time) | ratio to merged |\n|---|---:|---:|\n" + "\n".join(rows)
    params = merged.model.num_parameters()
    print(f"{args.preset} ({params:,} parameters), batch {args.batch}, prompt {args.prompt}, {args.new} new "
          f"tokens, rank {args.rank} on {','.join(TARGETS)}; best of {args.rounds} interleaved rounds; {machine()}")
    print(table)
    if args.write:
        command = "python benchmarks/multi_adapter.py " + " ".join(
            f"--{k} {v}" for k, v in vars(args).items() if k != "write")
        write_section(f"## Multi-adapter decode ({args.preset})", (
            f"## Multi-adapter decode ({args.preset})\n\n`{command} --write` — 2026-12-02, 2-core CPU, shared; "
            f"{machine()}.\n\n"
            f"`{args.preset}` preset ({params:,} parameters, random weights), one base with four rank-{args.rank} "
            f"LoRA adapters on {', '.join(TARGETS)} side by side; a batch of {args.batch} rows "
            f"({args.prompt}-token prompts, {args.new} tokens each, greedy) spread round-robin over k adapters, "
            f"against the same batch on the merged single model (adapter a0 folded into the weights). "
            f"Decode rate = tokens after the first per second of this thread's CPU time; best of {args.rounds} "
            f"interleaved rounds. Checked first: a0's rows give the merged model's tokens, alone and in a "
            f"4-adapter batch.\n\n{table}\n\n{NOTE}\n"))


if __name__ == "__main__":
    main()
