"""PPO (`quark finetune ppo`): where a step's time goes, and the held-out reward against the KL.

1. Step time by phase. Per rollout batch (16 prompts, 32 new tokens each, 2 passes of 2
   minibatches of 8 replies = 4 optimizer steps): **rollout** (the inference engine samples the
   replies), **scoring** (the reward model scores them; one no-grad forward each of the policy,
   for log-probs and values, and of the frozen reference; GAE) and **update** (the 4 optimizer
   steps: forward, backward, AdamW). Measured from each step's `rollout_s` / `score_s` in
   metrics.jsonl and the Trainer's busy time, for the `tiny` preset (4 layers × 128, vocab 4,096,
   random weights: speed does not depend on what they say; the reward model is the same network
   with a random head) and for the test suite's 2 × 64 model.
2. Reward against KL. The test suite's set-up run longer: a random 2 × 64 policy, a reward model
   trained by `quark finetune reward` to prefer replies with more digits, 32 training and 16
   held-out prompts; the held-out mean reward and KL to the reference (nats per reply, exact
   per-position KL summed over the reply) at every evaluation, for a weak and a strong KL penalty.

    .venv/bin/python benchmarks/ppo.py --steps 160 --rollouts 5 --write
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from _common import machine, save_preset_model  # noqa: E402
from _results import write_section  # noqa: E402

from _align import make_model  # noqa: E402
from _train_data import make_token_set  # noqa: E402
from conftest import Quark  # noqa: E402
from quark.align.reward import HEAD_FILE  # noqa: E402
from quark.home import Home  # noqa: E402
from quark.inference import Engine  # noqa: E402
from quark.inference.sampling import SamplingParams  # noqa: E402
from quark.tokenizer import Tokenizer  # noqa: E402
from test_ppo import ASKS, TOPICS, digit_pairs, write_jsonl  # noqa: E402

DEMO = ["--set", "train.seq_len=64", "--set", "ppo.rollout_prompts=16", "--set", "ppo.max_new_tokens=16",
        "--set", "ppo.eval_prompts=16", "--set", "optim.lr=3e-3", "--save-every", "0"]


def metrics(root: Path, run: str) -> list[dict]:
    return [json.loads(line) for line in (root / "runs" / run / "metrics.jsonl").read_text().splitlines()]


def phases(root: Path, run: str) -> dict[str, float]:
    """Mean seconds per rollout batch in each phase, the first rollout batch (warm-up) left out. A
    step's time is its tokens over its tokens/s (the Trainer's own measure, data included); the
    step that generated its rollout batch records the rollout and scoring seconds within it."""
    steps = [e for e in metrics(root, run) if e["kind"] == "train"]
    seconds = [(e["tokens"] - (steps[i - 1]["tokens"] if i else 0)) / e["tokens_per_s"] for i, e in enumerate(steps)]
    batches: dict[int, dict[str, float]] = {}
    for entry, took in zip(steps, seconds):
        batch = batches.setdefault(entry["rollout"], {"rollout": entry["rollout_s"], "scoring": entry["score_s"],
                                                      "total": 0.0})
        batch["total"] += took
    later = [b for r, b in sorted(batches.items()) if r > 0]
    mean = {key: sum(b[key] for b in later) / len(later) for key in ("rollout", "scoring", "total")}
    return {"rollout": mean["rollout"], "scoring": mean["scoring"],
            "update": mean["total"] - mean["rollout"] - mean["scoring"]}


def timing_run(root: Path, quark: Quark, policy: str, reward: str, data: str, rollouts: int,
               extra: list[str]) -> dict[str, float]:
    name = f"time-{policy}"
    quark.json("finetune", "ppo", "--policy", policy, "--reward", reward, "--data", data, "--name", name,
                         "--max-steps", str(4 * rollouts), "--set", "ppo.eval_prompts=0", "--eval-every", "0",
                         "--save-every", "0", *extra)
    return phases(root, name)


def digit_share(root: Path, model: str, prompts: list[str]) -> float:
    """The fraction of reply tokens that are digits, in one sampled reply (16 tokens at most) per
    held-out prompt: whether the policy learned the rule the reward model was trained on."""
    engine = Engine.named(Home.open(root), model, device="cpu")
    tok = engine.tokenizer
    digits = {tok.encode(str(d))[-1] for d in range(10)}
    replies = engine.generate([engine.chat_prompt([{"role": "user", "content": p}]) for p in prompts],
                              [SamplingParams(max_tokens=16, temperature=1.0, seed=i) for i in range(len(prompts))])
    tokens = [t for r in replies for t in r.token_ids]
    return sum(t in digits for t in tokens) / max(len(tokens), 1)


def prompts_home(root: Path) -> None:
    prompts = [{"prompt": ask.format(t)} for ask in ASKS for t in TOPICS]
    random.Random(0).shuffle(prompts)
    write_jsonl(root / "data" / "ask" / "train.jsonl", prompts[:32])
    write_jsonl(root / "data" / "ask" / "val.jsonl", prompts[32:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=160, help="Optimizer steps of each reward-vs-KL run.")
    parser.add_argument("--rollouts", type=int, default=5, help="Rollout batches of each timing run.")
    parser.add_argument("--write", action="store_true", help="Write the section of benchmarks/RESULTS.md.")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_token_set(root)  # tokenizers/tok: the test suite's 512-piece tokenizer
        quark = Quark(root)
        prompts_home(root)
        make_model(root, "pol")
        tokenizer = Tokenizer.load(root / "models" / "pol")
        write_jsonl(root / "data" / "digits" / "train.jsonl", digit_pairs(tokenizer, 400, seed=0))
        write_jsonl(root / "data" / "digits" / "val.jsonl", digit_pairs(tokenizer, 64, seed=1))
        rm = quark.json("finetune", "reward", "--model", "pol", "--data", "digits", "--name", "rm", "--set",
                        "train.seq_len=64", "--set", "optim.lr=3e-3", "--max-steps", "50", "--eval-every", "50",
                        "--save-every", "0")

        folder = save_preset_model(root, "tiny", "tiny-pol")
        torch.manual_seed(1)
        big_rm = save_preset_model(root, "tiny", "tiny-rm")
        save_file({"weight": torch.randn(1, 128) * 0.1, "bias": torch.zeros(1)}, str(big_rm / HEAD_FILE))
        started = time.perf_counter()
        timings = [("`tiny` preset (4 × 128, vocab 4,096)",
                    timing_run(root, quark, "tiny-pol", "tiny-rm", "ask", args.rollouts,
                               ["--set", "ppo.max_new_tokens=32"])),
                   ("test model (2 × 64, vocab 512)",
                    timing_run(root, quark, "pol", "rm", "ask", args.rollouts, ["--set", "ppo.max_new_tokens=32",
                                                                               "--set", "train.seq_len=64"]))]
        timing_s = time.perf_counter() - started
        assert folder.is_dir()

        held = [json.loads(line)["prompt"] for line in (root / "data" / "ask" / "val.jsonl").read_text().splitlines()]
        start_digits = digit_share(root, "pol", held)
        curves = {}
        for label, kl in (("weak", "0.02"), ("strong", "0.2")):
            out = quark.json("finetune", "ppo", "--policy", "pol", "--reward", "rm", "--data", "ask", "--name",
                             f"demo-{label}", *DEMO, "--kl-coef", kl, "--max-steps", str(args.steps), "--eval-every",
                             str(args.steps // 8))
            val = [e for e in metrics(root, f"demo-{label}") if e["kind"] == "val"]
            out["digit_share"] = digit_share(root, f"demo-{label}", held)
            curves[label] = (kl, out, [(0, out["start_val_reward"], out["start_val_kl"])]
                             + [(e["step"], e["val_reward"], e["val_kl"]) for e in val])

    table = ("| model | rollout (engine) | scoring (RM, policy and reference forwards) | update (4 steps) | total |\n"
             "|---|---:|---:|---:|---:|\n")
    for label, t in timings:
        total = t["rollout"] + t["scoring"] + t["update"]
        table += (f"| {label} | {t['rollout']:.3f} s ({t['rollout'] / total:.0%}) | {t['scoring']:.3f} s "
                  f"({t['scoring'] / total:.0%}) | {t['update']:.3f} s ({t['update'] / total:.0%}) | {total:.3f} s |\n")
    weak, strong = curves["weak"], curves["strong"]
    curve = (f"| step | held-out reward, kl_coef {weak[0]} | KL (nats/reply) | held-out reward, kl_coef {strong[0]} "
             "| KL (nats/reply) |\n|---:|---:|---:|---:|---:|\n")
    curve += "".join(f"| {a[0]} | {a[1]:.3f} | {a[2]:.3f} | {b[1]:.3f} | {b[2]:.3f} |\n"
                     for a, b in zip(weak[2], strong[2]))
    text = (f"## PPO\n\n`.venv/bin/python benchmarks/ppo.py --steps {args.steps} --rollouts {args.rollouts} "
            "--write` — 2026-12-02, "
            f"2-core CPU, shared ({machine()}; load average {load:.1f} at the start: the timings move with the "
            "other jobs)\n\n"
            f"### Step time by phase (seconds per rollout batch, mean of rollout batches 2–{args.rollouts})\n\n"
            "16 prompts × 32 new tokens sampled at temperature 1, then 2 passes of 2 minibatches of 8 replies "
            "(4 optimizer steps). Update is the Trainer's step time over the rollout batch's 4 steps less its "
            f"rollout and scoring. Timing runs: {timing_s:.0f} s.\n\n{table}\n"
            f"### Held-out reward against KL to the reference ({args.steps} steps = {args.steps // 4} rollout "
            "batches)\n\n"
            "Policy: the test suite's random 2 × 64 model; reward model: the same network trained 50 steps by "
            f"`quark finetune reward` to prefer replies with more digits (held-out pair accuracy "
            f"{rm['val_pair_accuracy']:.2f}); 32 training prompts, 16 held-out, replies of up to 16 tokens, lr 3e-3. "
            "Reward: the reward model's mean score of sampled replies to the held-out prompts (the same seeds at "
            "every evaluation); KL: per reply, Σ over its positions of KL(π ‖ ref) of the next-token distributions. "
            f"Run time: {weak[1]['train_time_s']:.0f} s (kl_coef {weak[0]}), {strong[1]['train_time_s']:.0f} s "
            f"(kl_coef {strong[0]}) of training.\n\n{curve}\n"
            f"Digits among the reply tokens of one sampled reply per held-out prompt (what the reward model was "
            f"trained to like): {start_digits:.1%} before PPO, {weak[1]['digit_share']:.1%} after (kl_coef {weak[0]}), "
            f"{strong[1]['digit_share']:.1%} after (kl_coef {strong[0]}).\n")
    print(text)
    if args.write:
        write_section("## PPO", text)


if __name__ == "__main__":
    main()
