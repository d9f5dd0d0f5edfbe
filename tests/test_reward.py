"""`quark finetune reward`: a scalar head that learns the preference, saved beside the network, and scoring."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from _align import align_home, corpus_home, metrics, one_thread, synth_data  # noqa: F401
from conftest import Quark
from quark.align.batches import encode_reply
from quark.align.data import read_pairs
from quark.align.reward import HEAD_FILE, RewardScorer
from quark.errors import QuarkError
from quark.inference import Engine


def test_reward_model_ranks_held_out_pairs(align_home: Path, quark: Quark) -> None:
    out = quark.json("finetune", "reward", "--model", "rand", "--data", "prefs", "--name", "judge",
                     "--set", "train.seq_len=128", "--max-steps", "60", "--eval-every", "30")
    val = metrics(align_home, "judge", "val")
    assert [e["step"] for e in val] == [30, 60] and out["val_pairs"] >= 60
    assert out["val_pair_accuracy"] >= 0.7, out  # chance is 0.5
    assert out["val_reward_gap"] > 0

    folder = align_home / "models" / "judge"
    head = load_file(folder / HEAD_FILE)
    assert {k: tuple(v.shape) for k, v in head.items()} == {"weight": (1, 64), "bias": (1,)}
    assert Engine.load(folder).model.num_parameters() > 0  # the network loads like any model folder
    assert "Reward model" in (folder / "card.md").read_text()

    # Scoring the held-out pairs by hand agrees with the accuracy the run reported.
    scorer = RewardScorer.load(folder)
    fits = [p for p in read_pairs(align_home / "data" / "prefs" / "val.jsonl")  # those the run kept (seq_len 128)
            if max(len(encode_reply(scorer.tokenizer, p.prompt, r)[0]) for r in (p.chosen, p.rejected)) <= 128]
    chosen = scorer.score([p.prompt for p in fits], [p.chosen for p in fits])
    rejected = scorer.score([p.prompt for p in fits], [p.rejected for p in fits])
    assert len(fits) == out["val_pairs"]
    assert sum(c > r for c, r in zip(chosen, rejected)) / len(fits) == pytest.approx(out["val_pair_accuracy"])
    # Batching does not change a score.
    assert scorer.score([fits[0].prompt], [fits[0].chosen])[0] == pytest.approx(chosen[0], abs=1e-5)
    with pytest.raises(QuarkError, match="exceed the reward model's context"):
        scorer.score(["q"], ["word " * 400])
    with pytest.raises(QuarkError, match="is not a reward model"):
        RewardScorer.load(align_home / "models" / "rand")
