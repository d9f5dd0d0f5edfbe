"""`quark finetune dpo`: the loss against a frozen reference, and a held-out margin that rises."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from _align import align_home, corpus_home, metrics, one_thread, synth_data  # noqa: F401
from conftest import Quark
from quark.align.batches import PairBatches
from quark.align.data import read_pairs
from quark.align.dpo import dpo_loss, margins, reference_logps, sequence_logps
from quark.inference import Engine
from quark.modelfolder import load_model, load_tokenizer


def test_dpo_loss_starts_at_log_2_and_follows_the_margin(align_home: Path) -> None:
    folder = align_home / "models" / "rand"
    model, tok = load_model(folder), load_tokenizer(folder)
    pairs = PairBatches(tok, read_pairs(align_home / "data" / "prefs" / "val.jsonl")[:6], 256, seed=None, what="val")
    pairs.extra["ref"] = reference_logps(model, pairs, 4, torch.device("cpu"), torch.float32, False).float()
    batch = pairs.rows(range(len(pairs)))
    with torch.no_grad():
        loss, count = dpo_loss(0.1)(model, batch)
        # The policy is the reference: every margin is 0 and each pair costs log 2.
        assert count == len(pairs) and loss.item() == pytest.approx(len(pairs) * math.log(2), abs=1e-4)
        assert margins(model, batch).abs().max() < 1e-4
        # Shift the reference's view of the chosen replies down: the policy now looks better than it.
        batch["ref"] = batch["ref"] - torch.tensor([[1.0, 0.0]])
        assert margins(model, batch) == pytest.approx(torch.ones(len(pairs)), abs=1e-4)
        shifted = dpo_loss(0.1)(model, batch)[0].item()
        assert shifted == pytest.approx(len(pairs) * math.log(1 + math.exp(-0.1)), abs=1e-4)  # -log σ(β·1)
        # Log-probabilities sum over the reply and its <|end|> only.
        logps = sequence_logps(model, batch)
        assert logps.shape == (2 * len(pairs),) and (logps < 0).all()


def test_dpo_raises_the_held_out_preference_margin(align_home: Path, quark: Quark) -> None:
    out = quark.json("finetune", "dpo", "--model", "rand", "--data", "prefs", "--name", "pref", "--beta", "0.1",
                     "--set", "train.seq_len=128", "--max-steps", "40", "--eval-every", "20")
    val = metrics(align_home, "pref", "val")
    assert [e["step"] for e in val] == [20, 40]
    assert out["val_pairs"] >= 60 and out["beta"] == 0.1
    assert out["val_margin"] > 1.0 and out["val_margin"] == val[-1]["val_margin"]
    assert out["val_pair_accuracy"] >= 0.65  # held-out pairs ranked right, relative to the reference
    assert val[-1]["val_loss"] < math.log(2)  # below where every DPO run starts
    # The result is an ordinary model folder.
    folder = align_home / "models" / "pref"
    assert "Direct preference optimisation" in (folder / "card.md").read_text()
    assert Engine.load(folder).chat_prompt([{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("row, says", [
    ('{"prompt": "q", "chosen": "a"}', "missing field 'rejected'"),
    ('{"prompt": "q", "chosen": "a", "rejected": "a"}', "the same text"),
    ('{"prompt": 3, "chosen": "a", "rejected": "b"}', "field 'prompt' must be str or list"),
    ('{"prompt": [{"role": "robot", "content": "q"}], "chosen": "a", "rejected": "b"}', "unknown role 'robot'"),
    ('{"prompt": "q", "chosen": "", "rejected": "b"}', "field 'chosen' is empty"),
])
def test_bad_preference_rows_name_file_and_line(align_home: Path, quark: Quark, tmp_path: Path, row: str,
                                                says: str) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n' + row + "\n")
    for kind in ("dpo", "reward"):
        result = quark("finetune", kind, "--model", "rand", "--data", str(data), "--name", "bad", expect=1)
        line = result.output.strip().splitlines()[-1]
        assert f"{data}:2" in line and says in line, result.output
    assert not (align_home / "runs" / "bad").exists()
