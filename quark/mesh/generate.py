"""Prompt → scene program with Quark's own LLM (a 3D-prompt LoRA adapter, trained on
`quark data synth --kind mesh`), then the program is validated like a hand-written one.

The reply is the program's compact JSON and nothing else (that is what the synthetic pairs
teach). Decoding is held to the program's JSON schema when the engine offers structured
generation: `sampling_params` passes `program_schema()` through the engine's SamplingParams
field for it (`json_schema`, from the structured-generation work) when that field exists. On an
engine without it, the model samples freely and a reply that does not validate is reported as
such — the check is the same either way, so the constraint only changes how often it passes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from quark.errors import QuarkError
from quark.inference import Engine, SamplingParams
from quark.mesh.program import Program, parse_program_text, program_schema

SCHEMA_FIELDS = ("json_schema", "schema")  # the SamplingParams field that constrains output, whichever exists


def messages_for(prompt: str) -> list[dict]:
    """The chat turn a prompt becomes (the same as in the training pairs)."""
    return [{"role": "user", "content": prompt}]


def constrained() -> str | None:
    """The SamplingParams field that takes a JSON schema, or None if this engine has none."""
    names = {f.name for f in dataclasses.fields(SamplingParams)}
    return next((name for name in SCHEMA_FIELDS if name in names), None)


def sampling_params(max_tokens: int, temperature: float, seed: int | None) -> SamplingParams:
    extra = {}
    schema_field = constrained()
    if schema_field:
        extra[schema_field] = program_schema()
    return SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=1.0, seed=seed, **extra)


@dataclass
class Generated:
    prompt: str
    text: str
    program: Program | None
    error: str | None  # why the text is not a valid program
    tokens: int
    seconds: float


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
        out.append(Generated(prompt, completion.text, program, error, len(completion.token_ids), completion.seconds))
    return out
