"""`quark finetune sft`: the loss mask, packing, what SFT teaches a base model, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from _align import align_home, corpus_home, metrics, one_thread, synth_data  # noqa: F401
from _train_data import TINY
from conftest import Quark
from quark import db
from quark.align.batches import encode_example, pack
from quark.align.data import prompts_of, read_chat
from quark.align.sft import end_rate
from quark.inference import Engine
from quark.models.llm import IGNORE_INDEX
from quark.tokenizer import Tokenizer, tool_call_text
from quark.train.trainer import Trainer

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 6 times 7?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c0", "type": "function", "function": {"name": "run_python", "arguments": '{"code": "print(6 * 7)"}'}}]},
    {"role": "tool", "tool_call_id": "c0", "content": "42\n"},
    {"role": "assistant", "content": "6 * 7 = 42."},
    {"role": "user", "content": "Thanks!"},
    {"role": "assistant", "content": "You're welcome."},
]


@pytest.fixture
def tok(corpus_home: Path) -> Tokenizer:  # noqa: F811
    return Tokenizer.load(corpus_home / "tokenizers" / "tok")


def _runs(mask: list[bool]) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    runs, start = [], None
    for i, flag in enumerate([*mask, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i))
            start = None
    return runs


def test_loss_mask_covers_assistant_content_and_end_only(tok: Tokenizer) -> None:
    ids, mask = encode_example(tok, CONVERSATION)
    assert ids == tok.encode_chat(CONVERSATION, add_generation_prompt=False)  # the template, unchanged
    end, assistant = tok.end_id, tok.special_id("<|assistant|>")
    trained = [ids[a:b] for a, b in _runs(mask)]
    # Exactly the three assistant turns: the tool call (its <|tool_call|> marker and JSON), the two
    # answers, each with the <|end|> that closes it; never the role token before them.
    assert trained == [
        [tok.special_id("<|tool_call|>"), *tok.encode(tool_call_text(CONVERSATION[2]["tool_calls"])), end],
        [*tok.encode("6 * 7 = 42."), end],
        [*tok.encode("You're welcome."), end],
    ]
    assert all(ids[a - 1] == assistant for a, _ in _runs(mask))
    untrained = [i for i, m in zip(ids, mask) if not m]
    assert tok.bos_id in untrained and tok.encode("What is 6 times 7?")[0] in untrained
    assert sum(mask) == sum(len(t) for t in trained)


def test_packing_shifts_labels_and_masks_padding(tok: Tokenizer) -> None:
    short = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    ids_long, mask_long = encode_example(tok, CONVERSATION)
    ids_short, mask_short = encode_example(tok, short)
    # Each example contributes len - 1 positions (its last token is only ever a label).
    lengths = [len(ids_long) - 1, len(ids_short) - 1, len(ids_short) - 1]
    seq_len = sum(lengths) + 5
    packed = pack(tok, [CONVERSATION, short, short], seq_len=seq_len, seed=None)
    assert packed.examples == 3 and packed.skipped == 0
    stream_ids = ids_long + ids_short + ids_short  # packed back to back, each starting at its BOS
    stream_mask = mask_long + mask_short + mask_short
    inputs, labels = packed.inputs.reshape(-1).tolist(), packed.labels.reshape(-1).tolist()
    starts = [0, len(ids_long), len(ids_long) + len(ids_short)]
    assert packed.inputs.shape == (1, seq_len)
    at = 0
    for start, length in zip(starts, lengths):
        for t in range(length):
            assert inputs[at + t] == stream_ids[start + t]
            want = stream_ids[start + t + 1] if stream_mask[start + t + 1] else IGNORE_INDEX
            assert labels[at + t] == want
        at += length
    assert set(inputs[at:]) == {tok.pad_id} and set(labels[at:]) == {IGNORE_INDEX}
    assert packed.trained_tokens == sum(mask_long[1:]) + 2 * sum(mask_short[1:])
    # An example longer than a window is left out, not cut.
    assert pack(tok, [CONVERSATION, short], seq_len=len(ids_short), seed=0).skipped == 1


def test_packed_examples_do_not_see_each_other(tok: Tokenizer) -> None:
    """A packed window's segments keep each example's attention inside it: the logits of the second
    example are those it has alone (as at inference), not those after the first example's text."""
    from quark.align.batches import ChatWindows
    from quark.models.llm import LLM, LLMConfig

    torch.manual_seed(0)
    model = LLM(LLMConfig(vocab_size=tok.vocab_size, n_layer=2, n_embd=32, n_head=2, n_kv_head=2,
                          max_seq_len=256)).eval()
    short = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    ids_long, _ = encode_example(tok, CONVERSATION)
    ids_short, _ = encode_example(tok, short)
    n, m = len(ids_long) - 1, len(ids_short) - 1  # each example's inputs (its last token is only a label)
    packed = pack(tok, [CONVERSATION, short], seq_len=n + m + 3, seed=None)
    batch = ChatWindows(packed, seed=None, what="test").take(0, 1)
    assert batch["segments"][0].tolist() == [1] * n + [2] * m + [0] * 3  # 0: padding
    with torch.no_grad():
        alone = model(torch.tensor([ids_short[:-1]]))[0]
        masked = model(batch["input_ids"], segments=batch["segments"])[0, n:n + m]
        unmasked = model(batch["input_ids"])[0, n:n + m]
    assert torch.allclose(masked, alone, atol=1e-4)
    assert not torch.allclose(unmasked, alone, atol=1e-2)  # what packing without segments trained on


@pytest.mark.slow
def test_sft_teaches_a_base_model_to_answer_and_stop(align_home: Path, quark: Quark) -> None:
    # A base model that has only read code: it has never seen the chat template.
    quark("pretrain", "--recipe", "tiny-cpu", "--data", "code", "--name", "base", *TINY, "--set", "train.micro_batch=8",
          "--max-steps", "300", "--eval-every", "300", "--save-every", "300")
    out = quark.json("finetune", "sft", "--model", "base", "--data", "chat", "--name", "chat", "--set",
                     "train.seq_len=128",
                     "--max-steps", "150", "--eval-every", "75", "--save-every", "150")

    held_out = prompts_of(read_chat(align_home / "data" / "chat" / "val.jsonl"))
    base_rate, _ = end_rate(Engine.load(align_home / "models" / "base"), held_out, 64)
    sft_rate, replies = end_rate(Engine.load(align_home / "models" / "chat"), held_out, 64)
    assert len(replies) >= 25  # the held-out prompts that leave room for 64 tokens in the context
    assert base_rate <= 0.05, base_rate
    assert sft_rate >= 0.6, (sft_rate, replies[:5])
    assert sum(bool(r.strip()) for r in replies) >= 0.6 * len(replies)  # it answers, not just stops

    # The loop is pretraining's: per-step metrics, evaluations with the end rate, a finished run.
    assert [e["step"] for e in metrics(align_home, "chat")] == list(range(1, 151))
    val = metrics(align_home, "chat", "val")
    assert [e["step"] for e in val] == [75, 150] and val[1]["val_loss"] < val[0]["val_loss"]
    train_lines = len((align_home / "data" / "chat" / "train.jsonl").read_text().splitlines())
    assert out["train_examples"] + out["train_skipped"] == train_lines and out["train_examples"] > 200
    assert out["val_end_rate"] == val[1]["val_end_rate"]
    model_dir = align_home / "models" / "chat"
    assert {p.name for p in model_dir.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.model", "card.md"}
    card = (model_dir / "card.md").read_text()
    assert "`base`" in card and f"{out['val_end_rate']:.4f}" in card and "lora:" in card
    conn = db.connect(align_home / "quark.db")
    row = conn.execute("SELECT kind, model, status FROM runs WHERE name='chat'").fetchone()
    assert tuple(row) == ("sft", "base", "finished")


def test_interrupted_sft_resumes_like_an_uninterrupted_run(align_home: Path, quark: Quark,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--model", "rand", "--data", "chat", "--set", "train.seq_len=128", "--set", "train.micro_batch=4",
            "--set", "train.sample_tokens=8", "--max-steps", "12", "--save-every", "6", "--eval-every", "6"]
    quark("finetune", "sft", "--name", "whole", *args)

    save = Trainer.save

    def save_then_ctrl_c(self: Trainer) -> Path:
        path = save(self)
        if self.step == 6:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(Trainer, "save", save_then_ctrl_c)
    quark("finetune", "sft", "--name", "cut", *args, expect=130)
    monkeypatch.undo()
    assert not (align_home / "models" / "cut").exists()
    row = db.connect(align_home / "quark.db").execute("SELECT status FROM runs WHERE name='cut'").fetchone()
    assert row["status"] == "interrupted"

    out = quark.json("finetune", "sft", "--name", "cut", "--resume")
    assert out["resumed_from"].endswith("step-000006") and out["steps"] == 12
    whole = {e["step"]: e["loss"] for e in metrics(align_home, "whole")}
    resumed = metrics(align_home, "cut")
    assert [e["step"] for e in resumed] == list(range(1, 13))
    for entry in resumed:
        assert entry["loss"] == pytest.approx(whole[entry["step"]], abs=1e-6), entry["step"]
    a = load_file(align_home / "models" / "whole" / "model.safetensors")
    b = load_file(align_home / "models" / "cut" / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


GOOD = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})


@pytest.mark.parametrize("bad, says", [
    ('{"messages": [', "not valid JSON"),
    (json.dumps({"messages": [{"content": "hi"}, {"role": "assistant", "content": "x"}]}), "message 0 has no 'role'"),
    (json.dumps({"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}), "message 0 has no 'content'"),
    (json.dumps({"messages": [{"role": "wizard", "content": "hi"}, {"role": "assistant", "content": "x"}]}),
     "message 0 has unknown role 'wizard'"),
    (json.dumps({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]}),
     "'content' must be a string"),
    (json.dumps({"messages": [{"role": "user", "content": "only a question"}]}), "no assistant message"),
    (json.dumps({"turns": []}), "missing field 'messages'"),
    ('["a list"]', "expected a JSON object"),
])
def test_malformed_chat_jsonl_names_file_and_line(align_home: Path, quark: Quark, tmp_path: Path, bad: str,
                                                  says: str) -> None:
    data = _write(tmp_path / "chat.jsonl", [GOOD, "", bad, GOOD])
    result = quark("finetune", "sft", "--model", "rand", "--data", str(data), "--name", "bad", expect=1)
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: ") and f"{data}:3" in line and says in line, result.output
    assert "Traceback" not in result.output
    assert not (align_home / "runs" / "bad").exists() and not (align_home / "models" / "bad").exists()


def test_malformed_held_out_file_and_bad_recipes_are_refused(align_home: Path, quark: Quark, tmp_path: Path) -> None:
    train = _write(tmp_path / "train.jsonl", [GOOD])
    val = _write(tmp_path / "val.jsonl", [GOOD, '{"messages": [{"role": "user", "content": "x"}'])

    def refused(*args: str, says: str, model: str = "rand") -> None:
        result = quark("finetune", "sft", "--model", model, "--name", "bad", *args, expect=1)
        assert says in result.output.strip().splitlines()[-1], result.output
        assert not (align_home / "runs" / "bad").exists()

    refused("--data", str(train), "--val", str(val), says=f"{val}:2: not valid JSON")
    refused("--data", str(tmp_path), says=f"{val}:2: not valid JSON")  # a folder: its train.jsonl + val.jsonl
    refused("--data", "nope", says="no such file or folder, and no dataset 'nope'")
    recipe = _write(tmp_path / "r.yaml", ["model:", "  n_layer: 2"])
    refused("--data", str(train), "--recipe", str(recipe), says="has no model section")
    refused("--data", str(train), "--set", "lora.targets=q_proj,embed_tokens", says="lora.targets")
    refused("--data", str(train), "--set", "train.seq_len=4096", says="exceeds model 'rand'")
    refused("--data", str(train), "--set", "dpo.beta=1", says="unknown recipe section 'dpo'")
    refused("--data", str(train), model="ghost", says="unknown model 'ghost'")
    refused("--data", str(train), "--qlora", says="--qlora needs a CUDA GPU")
    result = quark("finetune", "sft", "--name", "nothing", "--resume", expect=1)
    assert "no run 'nothing' to resume" in result.output
