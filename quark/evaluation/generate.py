"""The one place evaluation gets text from a model: `make_completer(model_folder)`.

A compact sampler (KV cache, greedy or temperature sampling, stop at <|end|>/EOS) so the
benchmarks run before the inference engine lands; swapping in the engine means changing only
this function, since every benchmark takes the `Completer` it returns.
"""

from __future__ import annotations

from pathlib import Path

import torch

from quark.evaluation.code import Completer
from quark.modelio import load_model, load_tokenizer
from quark.models.llm import KVCache


def make_completer(model_folder: Path, *, max_new_tokens: int = 256, chat: bool = False, seed: int = 0,
                   device: str = "cpu", truncated: list[int] | None = None) -> Completer:
    """complete(prompt, n, temperature) -> n continuations of prompt (temperature 0: greedy).

    With `chat` the prompt is sent as one user turn in the chat template and the reply is the
    assistant turn; otherwise it is raw text to continue (code benchmarks). A prompt that does not
    fit the context with `max_new_tokens` is cut from the left, and each cut is appended to
    `truncated` (its number of dropped tokens) so the caller can report it.
    """
    model = load_model(Path(model_folder), device=device)
    tokenizer = load_tokenizer(Path(model_folder))
    stop_ids = torch.tensor([tokenizer.end_id, tokenizer.eos_id], device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    context = model.config.max_seq_len
    budget = min(max_new_tokens, context - 1)

    @torch.no_grad()
    def complete(prompt: str, n: int, temperature: float) -> list[str]:
        ids = (tokenizer.encode_chat([{"role": "user", "content": prompt}]) if chat else tokenizer.encode(prompt))
        room = context - budget
        if len(ids) > room:
            if truncated is not None:
                truncated.append(len(ids) - room)
            ids = ids[-room:]
        if not ids:
            ids = [tokenizer.bos_id]
        cache = KVCache.empty(model.config, n, len(ids) + budget, torch.device(device), torch.float32)
        logits = model(torch.tensor([ids] * n, device=device), cache=cache)[:, -1]
        out = torch.empty(n, 0, dtype=torch.long, device=device)
        done = torch.zeros(n, dtype=torch.bool, device=device)
        for _ in range(budget):
            if temperature > 0:
                probs = torch.softmax(logits.float() / temperature, dim=-1)
                token = torch.multinomial(probs, 1, generator=generator)[:, 0]
            else:
                token = logits.argmax(-1)
            token = torch.where(done, stop_ids[0], token)
            out = torch.cat([out, token[:, None]], dim=1)
            done |= torch.isin(token, stop_ids)
            if done.all():
                break
            logits = model(token[:, None], cache=cache)[:, -1]
        texts = []
        for row in out.tolist():
            cut = next((i for i, t in enumerate(row) if t in (tokenizer.end_id, tokenizer.eos_id)), len(row))
            texts.append(tokenizer.decode(row[:cut]))
        return texts

    return complete
