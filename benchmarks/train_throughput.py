"""Training throughput: Quark's Trainer against a minimal plain-PyTorch loop, same model size.

Both train the `tiny` preset (vocabulary 4096) on the tiny-cpu recipe's batch geometry, in one
process, interleaved round by round so that load from elsewhere on the machine hits both alike.
The reference is the shortest honest loop: its own ~50-line Llama (RMSNorm, RoPE, GQA SDPA,
SwiGLU, tied embeddings), random batches, forward, backward, fused AdamW step. Quark's figure
includes everything its loop does per step: data windows, gradient clipping, the LR schedule,
metrics.jsonl. Throughput is wall-clock tokens/s at the median step time (step to step, so every
per-step cost counts), best of several rounds, since the machine may be shared.

    python benchmarks/train_throughput.py                 # print
    python benchmarks/train_throughput.py --write         # also record under benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from _results import RESULTS, write_section  # benchmarks/_results.py

from quark.modelfolder.flops import flops_per_token, parameter_counts, peak_flops
from quark.models.llm import LLM, PRESETS
from quark.train.data import TokenWindows
from quark.train.dist import Dist
from quark.train.recipe import load_recipe
from quark.train.trainer import Trainer

SECTION = "## Training throughput"


# -- the reference: a minimal Llama and a minimal loop --------------------------------------------

class RefBlock(nn.Module):
    def __init__(self, d: int, heads: int, kv_heads: int, inter: int) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, d // heads
        self.n1, self.n2 = nn.RMSNorm(d, eps=1e-5), nn.RMSNorm(d, eps=1e-5)
        self.qkv = nn.Linear(d, (heads + 2 * kv_heads) * self.hd, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.gate_up = nn.Linear(d, 2 * inter, bias=False)
        self.down = nn.Linear(inter, d, bias=False)

    @staticmethod
    def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(self.n1(x)).split([self.heads * self.hd, self.kv_heads * self.hd, self.kv_heads * self.hd],
                                             -1)
        q = self.rope(q.view(B, T, self.heads, self.hd).transpose(1, 2), cos, sin)
        k = self.rope(k.view(B, T, self.kv_heads, self.hd).transpose(1, 2), cos, sin)
        v = v.view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.o(y.transpose(1, 2).reshape(B, T, -1))
        gate, up = self.gate_up(self.n2(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class RefLlama(nn.Module):
    def __init__(self, vocab: int, d: int, layers: int, heads: int, kv_heads: int, inter: int, max_len: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(RefBlock(d, heads, kv_heads, inter) for _ in range(layers))
        self.norm = nn.RMSNorm(d, eps=1e-5)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.emb.weight
        inv = 1.0 / (10000 ** (torch.arange(0, d // heads, 2).float() / (d // heads)))
        ang = torch.outer(torch.arange(max_len).float(), inv).repeat(1, 2)
        self.register_buffer("cos", ang.cos(), persistent=False)
        self.register_buffer("sin", ang.sin(), persistent=False)
        for p in self.parameters():
            if p.ndim == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        x = self.emb(idx)
        for block in self.blocks:
            x = block(x, self.cos[:T], self.sin[:T])
        return self.head(self.norm(x))


def reference_run(cfg, micro: int, seq: int, steps: int, lr: float) -> list[float]:
    """Timestamps after each step of the minimal loop."""
    torch.manual_seed(0)
    model = RefLlama(cfg.vocab_size, cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.n_kv_head, cfg.intermediate_size,
                     cfg.max_seq_len)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    stamps = []
    for _ in range(steps):
        batch = torch.randint(0, cfg.vocab_size, (micro, seq + 1))
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), batch[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        stamps.append(time.time())
    return stamps


def quark_run(recipe, cfg, tokens: np.ndarray, steps: int) -> list[float]:
    """Timestamps of each step from Quark's own metrics.jsonl."""
    torch.manual_seed(0)
    train = recipe.train
    train.max_steps, train.eval_every, train.save_every = steps, 0, 0
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(LLM(cfg), recipe.optim, train, TokenWindows(tokens, train.seq_len, seed=0),
                          env=Dist(rank=0, world=1, device=torch.device("cpu")), run_dir=Path(run_dir),
                          progress=False)
        trainer.fit()
        lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["time"] for line in lines if json.loads(line)["kind"] == "train"]


def throughput(stamps: list[float], warmup: int, tokens_per_step: int) -> float:
    """Tokens/s at the median wall-clock step time after warm-up (robust to a stall from elsewhere)."""
    return tokens_per_step / statistics.median(np.diff(stamps[warmup - 1:]))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = f", load average {os.getloadavg()[0]:.1f} at start" if hasattr(os, "getloadavg") else ""
    return (f"{cpu} ({os.cpu_count()} cores{load}), {torch.get_num_threads()} torch thread(s), "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps per round after 5 warm-up steps")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of each loop")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--write", action="store_true", help=f"record the figures in {RESULTS}")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    recipe = load_recipe("tiny-cpu")
    cfg = PRESETS["tiny"]
    micro, seq, warmup = recipe.train.micro_batch, recipe.train.seq_len, 5
    tokens_per_step = micro * seq * recipe.train.grad_accum
    stream = np.random.default_rng(0).integers(0, cfg.vocab_size, 1_000_000).astype(np.uint16)
    per_token = flops_per_token(cfg, parameter_counts(LLM(cfg)), seq)
    peak, source = peak_flops(torch.device("cpu"), torch.float32)

    host = machine()
    quark, ref = [], []
    for _ in range(args.rounds):
        quark.append(throughput(quark_run(load_recipe("tiny-cpu"), cfg, stream, args.steps + warmup), warmup,
                                tokens_per_step))
        ref.append(throughput(reference_run(cfg, micro, seq, args.steps + warmup, recipe.optim.lr), warmup,
                              tokens_per_step))
    q, r = max(quark), max(ref)
    rows = [("Quark Trainer", q), ("minimal PyTorch loop", r)]
    table = ["| loop | tokens/s | MFU |", "|---|---:|---:|"]
    table += [f"| {name} | {tps:,.0f} | {per_token * tps / peak:.1%} |" for name, tps in rows]
    table.append(f"| **ratio Quark / minimal** | **{q / r:.3f}** | |")
    command = "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:])
    text = (f"{SECTION}\n\n`{command.strip()}` — {dt.date.today().isoformat()}\n\n"
            f"Machine: {host}. Model: `tiny` preset ({parameter_counts(LLM(cfg))['parameters']:,} parameters, "
            f"vocab {cfg.vocab_size}), {micro} × {seq} tokens per step, fp32; each loop's best of {args.rounds} "
            f"interleaved rounds, a round's figure being its median step time over {args.steps} steps after "
            f"{warmup} warm-up steps. MFU against {source} "
            f"({peak / 1e9:,.1f} GFLOP/s), {per_token / 1e6:.2f} MFLOP per token.\n\n" + "\n".join(table) + "\n")
    print(text)
    print("rounds (tokens/s): quark", [round(x) for x in quark], "minimal", [round(x) for x in ref])
    if args.write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
