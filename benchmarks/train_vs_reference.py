"""Training tokens/s of Quark's model step, eager and compiled (the recipe's `train.compile`),
beside transformers' `LlamaForCausalLM` and nanoGPT's `GPT` at the same width, depth,
vocabulary, batch and sequence, on one thread, in one run.

Every contestant runs the same step: forward with the loss, backward, fused AdamW (as Quark's
`build_optimizer` makes it), zero_grad, on random token batches. nanoGPT is not vendored: its
`model.py` is read from a path given at run time (a checkout of karpathy/nanoGPT, copied to a
git-ignored place such as /tmp/nanogpt/). Steps are timed round by round, interleaved (A, B, C,
D, A, …), and each contestant's figure is its median step; the load average is printed beside.

    git -C nanoGPT show HEAD:model.py > /tmp/nanogpt/model.py
    python benchmarks/train_vs_reference.py --nanogpt /tmp/nanogpt/model.py --write
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _results import write_section
from transformers import LlamaConfig, LlamaForCausalLM

from quark.models.llm import LLM, PRESETS
from quark.train.recipe import OptimConfig
from quark.train.trainer import build_optimizer

SECTION = "## Training step against transformers and nanoGPT"


def load() -> str:
    return "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def nanogpt(path: Path, cfg, seq: int) -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location("nanogpt_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.GPTConfig(block_size=seq, vocab_size=cfg.vocab_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
                              n_embd=cfg.n_embd, dropout=0.0, bias=False)
    return module.GPT(config)


def hf_llama(cfg) -> torch.nn.Module:
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.n_embd, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_kv_head,
        max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
        tie_word_embeddings=cfg.tie_embeddings, attn_implementation="sdpa"))


def stepper(model: torch.nn.Module, loss: Callable) -> Callable[[torch.Tensor, torch.Tensor], None]:
    optimizer = build_optimizer(model, OptimConfig(), torch.device("cpu"))
    model.train()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss(model, x, y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nanogpt", type=Path, default=Path("/tmp/nanogpt/model.py"),
                        help="nanoGPT's model.py (never committed here)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="steps per contestant per round")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if not args.nanogpt.is_file():
        raise SystemExit(f"{args.nanogpt}: no nanoGPT model.py (git -C nanoGPT show HEAD:model.py > {args.nanogpt})")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = PRESETS["tiny"]
    quark_loss = lambda m, x, y: m(x, y)  # noqa: E731
    compiled = LLM(cfg)
    compiled.compile()  # what the recipe's train.compile does in the Trainer
    contestants = {
        "Quark eager": stepper(LLM(cfg), quark_loss),
        "Quark compiled": stepper(compiled, quark_loss),
        "transformers LlamaForCausalLM": stepper(hf_llama(cfg), lambda m, x, y: m(input_ids=x, labels=x).loss),
        "nanoGPT GPT": stepper(nanogpt(args.nanogpt, cfg, args.seq), lambda m, x, y: m(x, y)[1]),
    }
    data = torch.randint(0, cfg.vocab_size, (args.batch, args.seq + 1))
    x, y = data[:, :-1].contiguous(), data[:, 1:].contiguous()
    start_load = load()
    started = time.perf_counter()
    for name, step in contestants.items():  # warm-up, and compilation, outside the timing
        step(x, y)
        step(x, y)
        print(f"warm: {name} ({time.perf_counter() - started:.0f} s)", flush=True)
    times: dict[str, list[float]] = {name: [] for name in contestants}
    for _ in range(args.rounds):
        for name, step in contestants.items():
            for _ in range(args.steps):
                t = time.perf_counter()
                step(x, y)
                times[name].append(time.perf_counter() - t)
    tokens = args.batch * args.seq
    rate = {name: tokens / statistics.median(t) for name, t in times.items()}
    lines = [f"`tiny` preset shape (vocab {cfg.vocab_size}, {cfg.n_layer} layers, width {cfg.n_embd}, "
             f"{cfg.n_head} heads), batch {args.batch} × {args.seq} tokens, fp32, 1 torch thread, fused AdamW for all; "
             f"median of {args.rounds} interleaved rounds × {args.steps} steps. Load average {start_load} at start, "
             f"{load()} at the end.", "",
             "| step | tokens/s | Quark compiled / this |", "|---|---:|---:|"]
    for name, r in rate.items():
        lines.append(f"| {name} | {r:,.0f} | {rate['Quark compiled'] / r:.2f}× |")
    print("\n".join(lines))
    if args.write:
        write_section(SECTION, f"{SECTION}\n\n`python benchmarks/train_vs_reference.py --nanogpt /tmp/nanogpt/model.py "
                      f"--write` — 2026-12-01, 2-core CPU, shared.\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
