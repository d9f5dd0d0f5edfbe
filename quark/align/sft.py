"""Supervised fine-tuning on chat JSONL: packed windows, loss on assistant tokens only, trained by
the same Trainer (and checkpoints, resume, torchrun) as pretraining with its causal-LM loss.

Each evaluation also measures what SFT is for: on held-out prompts, the fraction of greedy
replies that close their turn with <|end|> (`val_end_rate`), the chat template's stop signal that
a base model never learned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch.nn as nn

from quark.align.batches import ChatWindows, pack
from quark.align.data import prompts_of, read_chat
from quark.align.policy import load_policy
from quark.align.run import Context, Job, run
from quark.home import Home
from quark.inference import Engine, SamplingParams
from quark.tokenizer import Tokenizer
from quark.train.trainer import causal_lm_loss

END_RATE_PROMPTS = 16  # held-out prompts replied to at each evaluation


def end_rate(engine: Engine, prompts: Sequence[list[dict]], max_tokens: int) -> tuple[float, list[str]]:
    """Fraction of `prompts` (conversations) whose greedy reply ends with <|end|> within
    `max_tokens`, and the replies; prompts leaving no room for `max_tokens` in the context are
    left out. Only <|end|> counts: an EOS is a document's end, not a turn's."""
    ids = [engine.chat_prompt(p) for p in prompts]
    ids = [p for p in ids if len(p) + max_tokens <= engine.context_length]  # prompts with room to reply
    if not ids:
        return 0.0, []
    stop_ids, engine.stop_ids = engine.stop_ids, {engine.tokenizer.end_id}
    try:
        done = engine.generate(ids, SamplingParams(max_tokens=max_tokens, temperature=0.0))
    finally:
        engine.stop_ids = stop_ids
    return sum(c.finish_reason == "stop" for c in done) / len(done), [c.text for c in done]


def _reply_checker(tokenizer: Tokenizer, prompts: list[list[dict]], max_tokens: int) -> Callable[[nn.Module], dict[str,
                                                                                                                   Any]]:
    def check(model: nn.Module) -> dict[str, Any]:
        rate, replies = end_rate(Engine(model, tokenizer), prompts, max_tokens)
        return {"val_end_rate": rate, "sample": replies[0] if replies else ""}
    return check


def build(ctx: Context) -> Job:
    t, tok = ctx.recipe.train, ctx.tokenizer
    train = pack(tok, read_chat(ctx.data.train), t.seq_len, seed=t.seed)
    info = {"train_examples": train.examples, "train_skipped": train.skipped, "train_windows": len(train.inputs),
            "train_label_tokens": train.trained_tokens}
    val = on_eval = None
    val_samples = 0
    if ctx.data.val:
        conversations = read_chat(ctx.data.val)
        packed = pack(tok, conversations, t.seq_len, seed=None)
        val = ChatWindows(packed, seed=None, what=str(ctx.data.val))
        val_samples = min(t.eval_windows, len(val))
        info.update(val_examples=packed.examples, val_skipped=packed.skipped)
        if t.sample_tokens:
            on_eval = _reply_checker(tok, prompts_of(conversations)[:END_RATE_PROMPTS], t.sample_tokens)
    model, publish = load_policy(ctx)
    return Job(model, ChatWindows(train, seed=t.seed, what=str(ctx.data.train)), causal_lm_loss, publish,
               val=val, val_samples=val_samples, on_eval=on_eval, info=info)


def sft(home: Home, *, name: str, **kwargs: Any) -> dict[str, Any] | None:
    """`quark finetune sft`: see quark.align.run.run for the arguments."""
    return run(home, "sft", build, name=name, **kwargs)
