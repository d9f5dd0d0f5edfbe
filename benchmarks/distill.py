"""Distillation: held-out loss of a distilled student against the same student trained alone and
the teacher, on the test corpus (12 standard-library modules, 512-piece tokenizer).

The teacher (2 layers, 64 wide, ~130k parameters) is pretrained with `quark pretrain`; the
student (1 layer, 32 wide) starts from random weights and trains the same steps on the same
windows with `quark finetune distill`: alpha 1 (next-token loss only: the student alone),
alpha 0 (KL only) at T = 1 and T = 2, and an even mix at T = 2.

    .venv/bin/python benchmarks/distill.py --teacher-steps 600 --steps 300 --write
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from _results import write_section  # noqa: E402

from _train_data import TINY, make_token_set  # noqa: E402
from conftest import Quark  # noqa: E402
from quark.home import Home  # noqa: E402
from quark.modelfolder import save_model  # noqa: E402
from quark.models.llm import LLM, LLMConfig  # noqa: E402

RUNS = (("student alone (alpha 1)", "1.0", "1"), ("distilled, KL only, T = 1", "0.0", "1"),
        ("distilled, KL only, T = 2", "0.0", "2"), ("distilled, alpha 0.5, T = 2", "0.5", "2"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-steps", type=int, default=600)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--write", action="store_true", help="Write the section of benchmarks/RESULTS.md.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_token_set(root)
        quark = Quark(root)
        quark.json("pretrain", "--recipe", "tiny-cpu", "--data", "code", "--name", "big", *TINY, "--max-steps",
                   str(args.teacher_steps), "--set", "train.eval_every=0", "--set", "train.micro_batch=8")
        home = Home.open(root)
        torch.manual_seed(0)
        small = LLM(LLMConfig(vocab_size=512, n_layer=1, n_head=2, n_kv_head=1, n_embd=32, max_seq_len=256))
        save_model(home.model_dir("small"), small, home.tokenizer_dir("tok") / "tokenizer.model")
        common = ["--student", "small", "--teacher", "big", "--data", "code", "--max-steps", str(args.steps),
                  "--set", "train.seq_len=64", "--set", "train.micro_batch=8", "--set", "train.eval_every=0",
                  "--set", "optim.warmup=10", "--set", "optim.lr=3e-3"]
        results = [(label, quark.json("finetune", "distill", "--name", f"run{i}", "--alpha", alpha, "--temperature",
                                      temperature, *common))
                   for i, (label, alpha, temperature) in enumerate(RUNS)]
    first = results[0][1]
    rows = [("teacher (pretrained)", first["teacher_val_ce"], 0.0), ("student before training",
                                                                      first["student_start_val_ce"],
                                                                      first["student_start_val_kl"])]
    rows += [(label, r["val_ce"], r["val_kl"]) for label, r in results]
    table = "| model | held-out next-token loss | KL to the teacher (T = 1) |\n|---|---:|---:|\n"
    table += "".join(f"| {label} | {ce:.4f} | {kl:.4f} |\n" for label, ce, kl in rows)
    text = (f"## Distillation\n\n`.venv/bin/python benchmarks/distill.py --teacher-steps {args.teacher_steps} "
            f"--steps {args.steps} --write` — 2026-12-01, 2-core CPU, shared\n\n"
            f"Token set: the test corpus (12 stdlib modules, 512-piece tokenizer; val split = 2 held-out modules). "
            f"Teacher: 2 layers × 64, pretrained {args.teacher_steps} steps; student: 1 layer × 32 from random "
            f"weights, {args.steps} steps of 8 × 64 tokens, lr 3e-3, each run on the same windows.\n\n{table}")
    print(text)
    if args.write:
        write_section("## Distillation", text)


if __name__ == "__main__":
    main()
