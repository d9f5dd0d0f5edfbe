"""The one place evaluation gets text from a model: `make_completer(model_folder)`.

Every benchmark takes the `Completer` this returns, and it generates through the shared
inference engine (batched KV-cache decoding, the same sampling as generate/serve/chat).
"""

from __future__ import annotations

from pathlib import Path

from quark.evaluation.code_execution import Completer
from quark.inference import Engine, SamplingParams


def make_completer(model_folder: Path, *, max_new_tokens: int = 256, chat: bool = False, seed: int = 0,
                   device: str = "cpu", quantize: str | None = None, truncated: list[int] | None = None,
                   adapter: str | None = None) -> Completer:
    """complete(prompt, n, temperature) -> n continuations of prompt (temperature 0: greedy).

    With `chat` the prompt is sent as one user turn in the chat template and the reply is the
    assistant turn; otherwise it is raw text to continue (code benchmarks). A prompt that does not
    fit the context with `max_new_tokens` is cut from the left, and each cut is appended to
    `truncated` (its number of dropped tokens) so the caller can report it. `device` and
    `quantize` are as for Engine.load; `adapter` (one of the model's LoRA adapters) is merged on load.
    """
    engine = Engine.load(Path(model_folder), device=device, quantize=quantize, adapter=adapter)
    tokenizer = engine.tokenizer
    budget = min(max_new_tokens, engine.context_length - 1)
    calls = 0

    def complete(prompt: str, n: int, temperature: float) -> list[str]:
        nonlocal calls
        ids = (tokenizer.encode_chat([{"role": "user", "content": prompt}]) if chat
               else [tokenizer.bos_id, *tokenizer.encode(prompt)])
        room = engine.context_length - budget
        if len(ids) > room:
            if truncated is not None:
                truncated.append(len(ids) - room)
            ids = ids[-room:]
        # One seed per sample, different across prompts, fixed for the run: reruns reproduce.
        params = [SamplingParams(max_tokens=budget, temperature=temperature, top_p=1.0, seed=seed + calls * 1000 + i)
                  for i in range(n)]
        calls += 1
        return [c.text for c in engine.generate([ids] * n, params)]

    return complete
