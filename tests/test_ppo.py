"""`quark finetune ppo`: PPO raises a reward model's held-out score with the KL to the reference
bounded, an interrupted run resumes exactly, and bad inputs are one line.

The reward model is trained here, by `quark finetune reward`, on a rule a tiny model learns in a few
dozen steps: of two replies of random text, the one with more digits is better. The policy (a
random tiny model, whose replies are noise with ~2% digits) can raise that score in a few
rollouts by writing digits more often; the longer run behind benchmarks/RESULTS.md is
benchmarks/ppo.py."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from _align import TINY, make_model
from _train_data import corpus, corpus_home, metrics, one_thread  # noqa: F401
from conftest import Quark
from quark.align.ppo import VALUE_HEAD_FILE, Sequences, gae
from quark.align.recipe import load_align_recipe
from quark.align.reward import HEAD_FILE, RewardScorer
from quark.inference import Engine
from quark.inference.sampling import SamplingParams
from quark.modelfolder import load_state, save_model
from quark.models.llm import LLM, LLMConfig
from quark.tokenizer import Tokenizer, train_tokenizer

STEPS = 40  # 10 rollout batches of 16 replies, 2 passes of 2 minibatches each
FAST = ["--set", "train.seq_len=64", "--set", "ppo.rollout_prompts=16", "--set", "ppo.max_new_tokens=16",
        "--set", "ppo.eval_prompts=16", "--set", "optim.lr=3e-3", "--kl-coef", "0.02", "--max-steps", str(STEPS),
        "--save-every", "8", "--eval-every", "8"]
TOPICS = ["lists", "files", "dates", "sockets", "threads", "strings", "paths", "numbers", "dicts", "sets",
          "bytes", "errors", "tests", "loops", "classes", "modules"]
ASKS = ["Tell me about {}.", "What are {}?", "Explain {} to me."]


def digit_pairs(tokenizer: Tokenizer, count: int, seed: int) -> list[dict]:
    """Preference rows: two replies of random pieces, the chosen one with more digits in it."""
    rng = random.Random(seed)
    words = [i for i in range(tokenizer.vocab_size) if tokenizer.decode([i]).strip().isalpha()]
    digits = [tokenizer.encode(str(d))[-1] for d in range(10)]

    def reply(n_digits: int) -> str:
        ids = [rng.choice(words) for _ in range(rng.randint(6, 14))]
        for _ in range(n_digits):
            ids[rng.randrange(len(ids))] = rng.choice(digits)
        return tokenizer.decode(ids)

    rows = []
    for _ in range(count):
        low = rng.randint(0, 2)
        rows.append({"prompt": f"Tell me about {rng.choice(TOPICS)}.", "chosen": reply(low + rng.randint(2, 6)),
                     "rejected": reply(low)})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def ppo_home(corpus_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """tokenizers/tok, a random tiny policy `pol`, a digit-loving reward model `rm` and prompts."""
    root = tmp_path_factory.mktemp("ppo-home")
    shutil.copytree(corpus_home / "tokenizers", root / "tokenizers")
    torch.set_num_threads(1)
    make_model(root, "pol")
    tokenizer = Tokenizer.load(root / "models" / "pol")
    write_jsonl(root / "data" / "digits" / "train.jsonl", digit_pairs(tokenizer, 400, seed=0))
    write_jsonl(root / "data" / "digits" / "val.jsonl", digit_pairs(tokenizer, 64, seed=1))
    Quark(root)("finetune", "reward", "--model", "pol", "--data", "digits", "--name", "rm", "--set",
                "train.seq_len=64", "--set", "optim.lr=3e-3", "--max-steps", "50", "--eval-every", "0",
                "--save-every", "0")
    prompts = [{"prompt": ask.format(t)} for ask in ASKS for t in TOPICS]
    random.Random(0).shuffle(prompts)
    write_jsonl(root / "data" / "ask" / "train.jsonl", prompts[:32])
    write_jsonl(root / "data" / "ask" / "val.jsonl", prompts[33:] + [{"messages": [
        {"role": "user", "content": "Tell me about digits."}, {"role": "assistant", "content": "They are 0-9."}]}])
    return root


def test_the_reward_model_prefers_digits(ppo_home: Path) -> None:
    scorer = RewardScorer.load(ppo_home / "models" / "rm")
    rows = digit_pairs(scorer.tokenizer, 64, seed=2)
    chosen = scorer.score([r["prompt"] for r in rows], [r["chosen"] for r in rows])
    rejected = scorer.score([r["prompt"] for r in rows], [r["rejected"] for r in rows])
    assert sum(c > r for c, r in zip(chosen, rejected)) / len(rows) >= 0.8


def test_ppo_raises_held_out_reward_with_bounded_kl(ppo_home: Path) -> None:
    quark = Quark(ppo_home)
    out = quark.json("finetune", "ppo", "--policy", "pol", "--reward", "rm", "--data", "ask", "--name", "up", *FAST)
    assert out["steps"] == STEPS and out["val_prompts"] == 16 and out["train_prompts"] == 32
    val = metrics(ppo_home, "up", "val")
    assert [e["step"] for e in val] == [8, 16, 24, 32, 40]
    rewards = [out["start_val_reward"]] + [e["val_reward"] for e in val]
    assert rewards[-1] > rewards[0] + 0.5, rewards  # the reward model's mean score on held-out prompts rose
    assert out["start_val_kl"] == pytest.approx(0.0, abs=1e-4)  # the policy starts as its reference
    kls = [out["start_val_kl"]] + [e["val_kl"] for e in val]
    assert 0.0 < kls[-1] < 8.0, kls  # nats per reply of 16 tokens: moved, but held near the reference
    train = metrics(ppo_home, "up")
    assert [e["step"] for e in train] == list(range(1, STEPS + 1))
    for key in ("reward", "kl", "clip_frac", "value_loss", "entropy", "policy_loss", "rollout_s", "score_s"):
        assert all(key in e for e in train), key
    first = [e for e in train if e["rollout"] == 0]
    assert len(first) == 4 and first[0]["clip_frac"] == 0.0 and abs(first[0]["approx_kl"]) < 1e-6  # ratio 1 at first
    assert train[-1]["reward"] > train[0]["reward"]

    folder = ppo_home / "models" / "up"
    head = load_state(folder / VALUE_HEAD_FILE)
    assert {k: tuple(v.shape) for k, v in head.items()} == {"weight": (1, 64), "bias": (1,)}
    assert head["weight"].abs().sum() > 0  # the value head trained
    assert "PPO policy" in (folder / "card.md").read_text()
    assert json.loads((folder / "config.json").read_text())["source_run"] == "up"
    # The run's recipe is the shipped recipes/ppo-tiny.yaml (the default) with the flags as overrides.
    flags = [FAST[i + 1] for i, a in enumerate(FAST) if a == "--set"]
    flags += ["ppo.kl_coef=0.02", f"train.max_steps={STEPS}", "train.save_every=8", "train.eval_every=8",
              "ppo.reward=rm"]
    recorded = load_align_recipe("ppo", str(ppo_home / "runs" / "up" / "recipe.yaml"))
    assert recorded.to_dict() == load_align_recipe("ppo", "ppo-tiny", flags).to_dict()


def test_interrupted_ppo_resumes_exactly(ppo_home: Path) -> None:
    quark = Quark(ppo_home)
    args = ["--policy", "pol", "--reward", "rm", "--data", "ask", "--name", "again", *FAST,
            "--set", "train.eval_every=0", "--set", "ppo.eval_prompts=0"]
    quark.json("finetune", "ppo", *args)
    reference = {e["step"]: e for e in metrics(ppo_home, "again")}
    weights = load_state(ppo_home / "models" / "again" / "model.safetensors")
    head = load_state(ppo_home / "models" / "again" / VALUE_HEAD_FILE)
    run_dir = ppo_home / "runs" / "again"
    shutil.rmtree(run_dir / f"step-{STEPS:06d}")  # as if killed between the checkpoints at 32 and 40
    refused = quark("finetune", "ppo", "--name", "again", "--resume", "--reward", "pol", expect=1)
    assert "scored by reward model 'rm', not 'pol'" in refused.output
    out = quark.json("finetune", "ppo", "--name", "again", "--resume")
    assert out["resumed_from"].endswith("step-000032") and out["steps"] == STEPS
    resumed = metrics(ppo_home, "again")
    assert [e["step"] for e in resumed] == list(range(1, STEPS + 1))
    for entry in resumed:
        for key in ("loss", "reward", "kl", "clip_frac"):
            assert entry[key] == pytest.approx(reference[entry["step"]][key], abs=1e-6), (entry["step"], key)
    again = load_state(ppo_home / "models" / "again" / "model.safetensors")
    assert all(torch.equal(weights[k], again[k]) for k in weights)
    assert all(torch.equal(head[k], load_state(ppo_home / "models" / "again" / VALUE_HEAD_FILE)[k]) for k in head)


def test_lora_policy_publishes_an_adapter_with_its_value_head(ppo_home: Path) -> None:
    quark = Quark(ppo_home)
    args = [a if a != str(STEPS) else "4" for a in FAST]  # one rollout batch
    out = quark.json("finetune", "ppo", "--policy", "pol", "--reward", "rm", "--data", "ask", "--name", "lo", "--lora",
                     "--rank", "4", *args, "--set", "ppo.eval_prompts=0")
    folder = ppo_home / "models" / "pol" / "adapters" / "lo"
    assert out["adapter"] and out["output"] == str(folder) and out["steps"] == 4
    assert {p.name for p in folder.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors", VALUE_HEAD_FILE}
    assert load_state(folder / VALUE_HEAD_FILE)["weight"].abs().sum() > 0
    trained = load_state(folder / "adapter_model.safetensors")
    assert trained and all("lora_" in k for k in trained) and any(v.abs().sum() > 0 for k, v in trained.items()
                                                                  if "lora_B" in k)
    engine = Engine.load(ppo_home / "models" / "pol", adapter="lo")  # inference merges it like any adapter
    assert engine.complete_text("Tell me about sets.", SamplingParams(max_tokens=4, temperature=0)).token_ids


def test_bad_inputs_are_one_line(ppo_home: Path) -> None:
    quark = Quark(ppo_home)
    base = ["--data", "ask", *FAST]
    cases = [
        (["--policy", "nope", "--reward", "rm"], "unknown model 'nope'"),
        (["--policy", "pol", "--reward", "nope"], "unknown reward model 'nope'"),
        (["--policy", "pol", "--reward", "pol"], "--reward 'pol' is not a reward model"),
        (["--policy", "pol"], "needs --policy, --reward and --data"),
    ]
    tok_dir = ppo_home / "tokenizers" / "other"  # another tokenizer: fewer pieces, trained on less text
    tok_dir.mkdir()
    train_tokenizer(corpus()[:2], tok_dir / "tokenizer", 400)
    other = ppo_home / "models" / "other"
    save_model(other, LLM(LLMConfig(vocab_size=400, **TINY)), tok_dir / "tokenizer.model")
    save_file({"weight": torch.zeros(1, 64), "bias": torch.zeros(1)}, str(other / HEAD_FILE))  # a valid reward model
    cases.append((["--policy", "pol", "--reward", "other"], "use different tokenizers"))
    for i, (given, message) in enumerate(cases):
        result = quark("finetune", "ppo", "--name", f"bad{i}", *given, *base, expect=1)
        assert message in result.output and "Traceback" not in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert not (ppo_home / "models" / f"bad{i}").exists()
        assert not (ppo_home / "runs" / f"bad{i}" / "run.json").exists()
    bad_rows = ppo_home / "bad-prompts.jsonl"
    bad_rows.write_text('{"prompt": "fine"}\n{"question": "no prompt field"}\n', encoding="utf-8")
    result = quark("finetune", "ppo", "--name", "bad", "--policy", "pol", "--reward", "rm", "--data", str(bad_rows),
                   *FAST, expect=1)
    assert f"{bad_rows}:2: expected a 'prompt' field" in result.output
    result = quark("finetune", "ppo", "--name", "bad", "--policy", "pol", "--reward", "rm", *base,
                   "--save-every", "6", expect=1)
    assert "train.save_every 6 must be a multiple of the 4 optimizer steps" in result.output


def test_gae_matches_the_recursion_by_hand() -> None:
    seqs = Sequences.of([[1, 2]], [[3, 4, 5]], pad_id=0)  # positions 1..3 predict the reply's tokens
    assert seqs.mask.tolist() == [[0, 1, 1, 1]]
    rewards = torch.tensor([[0.0, 0.1, 0.2, 1.0]])
    values = torch.tensor([[0.0, 0.5, 0.4, 0.3]])
    advantages, returns = gae(rewards, values, seqs.mask, gamma=0.9, lam=0.8)
    d3 = 1.0 - 0.3
    d2 = 0.2 + 0.9 * 0.3 - 0.4
    d1 = 0.1 + 0.9 * 0.4 - 0.5
    a3, a2 = d3, d2 + 0.72 * d3
    expected = [0.0, d1 + 0.72 * a2, a2, a3]
    assert advantages[0].tolist() == pytest.approx(expected)
    assert returns[0].tolist() == pytest.approx([0.0] + [a + v for a, v in zip(expected[1:], [0.5, 0.4, 0.3])])
