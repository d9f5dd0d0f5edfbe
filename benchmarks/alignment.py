"""Alignment on a laptop CPU: what SFT, LoRA, DPO and a reward model measurably do to a tiny model.

The whole chain runs through the `quark` CLI in a temporary home, as a user would run it:

    1. a 512-piece tokenizer and a token set from a dozen standard-library modules;
       `quark pretrain` a ~130k-parameter base on that code (it never sees the chat template);
    2. `quark data synth` chat data (every kind) and preference pairs (20% held out);
    3. `quark finetune sft` (full) and `--lora` at two ranks: the fraction of held-out
       prompts whose greedy reply ends its turn with <|end|> within 64 tokens, before and after;
    4. `quark finetune dpo` from the SFT model: the held-out preference margin
       ((log π(c) − log ref(c)) − (log π(r) − log ref(r)), 0 at the start) and pair accuracy;
    5. `quark finetune reward` from the base: held-out pair accuracy (chance: 0.5).

    python benchmarks/alignment.py            # print
    python benchmarks/alignment.py --write    # also record under benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import torch
from _results import RESULTS, write_section  # benchmarks/_results.py

from quark.align.data import prompts_of, read_chat
from quark.align.recipe import LORA_MODULES
from quark.align.sft import end_rate
from quark.home import Home
from quark.inference import Engine
from quark.tokenizer import Tokenizer, train_tokenizer
from quark.tokenizer.token_shards import TokenWriter

SECTION = "## Alignment"
MODULES = ["textwrap.py", "colorsys.py", "bisect.py", "heapq.py", "fnmatch.py", "shlex.py", "string.py",
           "glob.py", "keyword.py", "numbers.py", "copy.py", "abc.py"]
TINY = ["--set", "model.n_layer=2", "--set", "model.n_embd=64", "--set", "model.n_head=4", "--set", "model.n_kv_head=2"]
REPLY_TOKENS = 64


def quark(home: Path, *args: str) -> tuple[dict, float]:
    """Run `quark ARGS --json` in a subprocess; its JSON result and wall-clock seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "QUARK_HOME": str(home)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "quark", *args, "--json"], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"quark {' '.join(args)} failed:\n{done.stderr}")
    return json.loads(done.stdout), time.perf_counter() - started


def token_set(home: Path) -> None:
    """tokenizers/tok (512 pieces) and tokens/code from MODULES; the first two are held out."""
    root = Home.open(home)
    lib = Path(sysconfig.get_paths()["stdlib"])
    docs = [(lib / name).read_text(encoding="utf-8") for name in MODULES]
    folder = root.tokenizer_dir("tok")
    folder.mkdir(parents=True)
    train_tokenizer(docs, folder / "tokenizer", 512)
    tok = Tokenizer.load(folder)
    writer = TokenWriter(root.tokens_dir("code"), tok.vocab_size)
    for i, doc in enumerate(docs):
        writer.add("val" if i < 2 else "train", tok.encode(doc) + [tok.eos_id])
    writer.close(tokenizer="tok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"record the figures in {RESULTS}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        token_set(home)
        base, took = quark(home, "pretrain", "--recipe", "tiny-cpu", "--data", "code", "--name", "base", *TINY,
                           "--set", "train.seq_len=64", "--set", "train.micro_batch=8", "--set", "optim.warmup=10",
                           "--max-steps", "300",
                           "--eval-every", "300")
        rows.append(("`quark pretrain` base, 300 steps",
                     f"val loss {base['val_loss']:.3f} ({base['parameters']:,} parameters)",
                     f"{took:.0f} s"))
        quark(home, "data", "synth", "--kind", "all", "--name", "chat")
        quark(home, "data", "synth", "--kind", "preferences", "--name", "prefs", "--val-fraction", "0.2")
        held_out = prompts_of(read_chat(home / "data" / "chat" / "val.jsonl"))

        def rate(engine: Engine) -> str:
            value, replies = end_rate(engine, held_out, REPLY_TOKENS)
            return f"**{value:.2f}** of {len(replies)} held-out prompts end with <\\|end\\|>"

        rows.append(("base model, greedy replies", rate(Engine.load(home / "models" / "base")), ""))
        sft, took = quark(home, "finetune", "sft", "--model", "base", "--data", "chat", "--name", "chat",
                          "--set", "train.seq_len=128", "--max-steps", "150", "--eval-every", "150")
        rows.append(("`quark finetune sft` (full), 150 steps", rate(Engine.load(home / "models" / "chat")) +
                     f"; val loss {sft['val_loss']:.3f}", f"{took:.0f} s"))
        for adapter, label, flags in [
            ("lora-8", "rank 8 on q/k/v/o (the recipe's default), lr 3e-3", ["--set", "optim.lr=3e-3"]),
            ("lora-32", "rank 32 on every projection, lr 5e-3",
             ["--rank", "32", "--alpha", "32", "--targets", ",".join(LORA_MODULES), "--set", "optim.lr=5e-3"])]:
            lora, took = quark(home, "finetune", "sft", "--model", "base", "--data", "chat", "--name", adapter,
                               "--lora",
                               *flags, "--set", "train.seq_len=128", "--max-steps", "150", "--eval-every", "150")
            rows.append((f"`quark finetune sft --lora`, {label}, 150 steps",
                         rate(Engine.load(home / "models" / "base",
                                          adapter=adapter)) + f"; val loss {lora['val_loss']:.3f}",
                         f"{took:.0f} s"))
        dpo, took = quark(home, "finetune", "dpo", "--model", "chat", "--data", "prefs", "--name", "chat-dpo",
                          "--set", "train.seq_len=128", "--max-steps", "60", "--eval-every", "60")
        rows.append(("`quark finetune dpo` from the SFT model, β 0.1, 60 steps",
                     f"held-out margin **{dpo['val_margin']:.2f}** nats (0 at the start), pair accuracy "
                     f"**{dpo['val_pair_accuracy']:.2f}** over {dpo['val_pairs']} pairs", f"{took:.0f} s"))
        rm, took = quark(home, "finetune", "reward", "--model", "base", "--data", "prefs", "--name", "rm",
                         "--set", "train.seq_len=128", "--max-steps", "100", "--eval-every", "100")
        rows.append(("`quark finetune reward` from the base, 100 steps",
                     f"held-out pair accuracy **{rm['val_pair_accuracy']:.2f}** over {rm['val_pairs']} pairs (chance "
                     "0.50)",
                     f"{took:.0f} s"))

    load = os.getloadavg()[0]
    cpu = platform.processor() or platform.machine()
    text = (f"{SECTION}\n\n`python benchmarks/alignment.py --write` — {dt.date.today().isoformat()}\n\n"
            f"Machine: {cpu}, {os.cpu_count()} cores shared with other jobs (load average {load:.1f} at the end), "
            f"1 torch thread, torch {torch.__version__}, Python {platform.python_version()}. Tiny model: 2 layers, "
            f"hidden 64, 512-piece tokenizer trained on {len(MODULES)} standard-library modules; data from "
            f"`quark data synth`; greedy replies of at most {REPLY_TOKENS} tokens. Times are wall clock per command, "
            "start-up included.\n\n| step | result | time |\n|---|---|---:|\n"
            + "".join(f"| {a} | {b} | {c} |\n" for a, b, c in rows)
            + "\nThe base has never seen the chat template: pretraining on code taught it that <|end|> never comes, "
            "and that lives in the token's embedding row, which is also its output row (tied). A full fine-tune "
            "retrains that row; a LoRA adapter leaves the embeddings frozen and must raise <|end|>'s logit through "
            "low-rank updates of the block projections alone, which this 64-wide, 2-layer model does poorly at "
            "rank 8 and partly at rank 32. That is our reading of the gap; a base whose pretraining mix includes "
            "chat-formatted text would not start from it.\n")
    print(text)
    if args.write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
