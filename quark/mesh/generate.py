"""Prompt → scene program with Quark's own LLM (a 3D-prompt LoRA adapter, trained on
`quark data synth --kind mesh`), then the program is validated like a hand-written one.

The reply is the program's JSON and nothing else (that is what the synthetic pairs teach).
Decoding is held to the program's JSON schema (`program_schema()`, depth unrolled, no nulls)
through the engine's grammar-constrained sampling (`SamplingParams.grammar`, from
`quark.inference.grammar`), so a reply always parses and matches the schema; what the schema
cannot say (total node count, the triangle budget, booleans that leave nothing) is checked after,
as for any program. On an engine without structured generation the model samples freely and the
same checks apply: the constraint changes how often a reply passes, never what passing means.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from quark.errors import QuarkError
from quark.inference import Engine, SamplingParams
from quark.mesh.program import Program, parse_program_text, program_schema


def messages_for(prompt: str) -> list[dict]:
    """The chat turn a prompt becomes (the same as in the training pairs)."""
    return [{"role": "user", "content": prompt}]


def constrained() -> bool:
    """Whether this engine's SamplingParams take a grammar (structured generation is present)."""
    return "grammar" in {f.name for f in dataclasses.fields(SamplingParams)}


@functools.lru_cache(maxsize=1)
def program_grammar():
    """The scene program's JSON-schema grammar (built once; the engine compiles it once per tokenizer)."""
    from quark.inference.grammar import json_schema_grammar

    return json_schema_grammar(program_schema(), what="scene program")


def sampling_params(max_tokens: int, temperature: float, seed: int | None) -> SamplingParams:
    extra = {"grammar": program_grammar()} if constrained() else {}
    return SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=1.0, seed=seed, **extra)


@dataclass
class Generated:
    prompt: str
    text: str
    program: Program | None
    error: str | None  # why the text is not a valid program
    tokens: int
    seconds: float
    finish_reason: str  # "length": cut off at max_tokens (under the grammar, the only way to be invalid JSON)


def generate_programs(engine: Engine, prompts: list[str], *, temperature: float = 0.0, seed: int = 0,
                      max_tokens: int = 1024) -> list[Generated]:
    """One program per prompt, batched through the engine. Invalid replies are kept with the reason."""
    ids = [engine.chat_prompt(messages_for(p)) for p in prompts]
    for prompt, row in zip(prompts, ids):
        if len(row) >= engine.context_length - 16:
            raise QuarkError(f"the prompt {prompt[:40]!r} is {len(row)} tokens; the model's context is "
                             f"{engine.context_length} and the program needs room")
    params = [sampling_params(min(max_tokens, engine.context_length - len(row)), temperature, seed + i)
              for i, row in enumerate(ids)]
    out = []
    for prompt, completion in zip(prompts, engine.generate(ids, params)):
        try:
            program, error = parse_program_text(completion.text.strip(), "the model's program"), None
        except QuarkError as exc:
            program, error = None, str(exc)
            if completion.finish_reason == "length":
                error += f" (cut off at {len(completion.token_ids)} tokens, the most allowed)"
        out.append(Generated(prompt, completion.text, program, error, len(completion.token_ids), completion.seconds,
                             completion.finish_reason))
    return out
