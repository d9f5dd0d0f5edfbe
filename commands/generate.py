"""`quark generate`: a one-shot completion, streamed to the terminal token by token."""

import sys
import time
from typing import Annotated, Optional

import typer

from quark.commands._cli import Cli, quark_command
from quark.commands._options import AdapterOption, DeviceOption, ModelOption, QuantizeOption, quantize_mode
from quark.inference import Engine
from quark.inputs import read_stdin_text
from quark.inference.sampling import sampling_params
from quark.modelfolder import generation_defaults


def generate_command(
    cli: Cli,
    model: ModelOption,
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The text to continue; '-' reads it from stdin.")],
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", min=1,
                                                      help="Most tokens to generate (default: the model's "
                                                           "generation_config.json).")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", min=0.0,
                                                         help="0 is greedy (default: the model's).")] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", min=0,
                                                 help="Keep the k likeliest tokens; 0 keeps all (default: the "
                                                      "model's).")] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", min=0.0, max=1.0,
                                                   help="Nucleus sampling mass (default: the model's).")] = None,
    repetition_penalty: Annotated[float, typer.Option("--repetition-penalty", min=0.0,
                                                      help="Above 1 discourages repeats.")] = 1.0,
    stop: Annotated[Optional[list[str]], typer.Option("--stop", help="Stop before this text (repeatable).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="Sampling seed: the same seed gives the same text.")] = None,
    quantize: QuantizeOption = None,
    adapter: AdapterOption = None,
    device: DeviceOption = "auto",
) -> dict:
    """Continue a prompt with a model, printing the text as it is generated.

    Example:

        quark generate --model tiny --prompt "def fibonacci(n):" --max-tokens 64 --temperature 0

        echo "import os" | quark generate -m tiny -p - --seed 7 --json
    """
    text_in = read_stdin_text() if prompt == "-" else prompt
    engine = Engine.named(cli.home, model, device=device, quantize=quantize_mode(quantize), adapter=adapter)
    params = sampling_params(generation_defaults(cli.home.model_dir(model)), max_tokens=max_tokens,
                             temperature=temperature, top_k=top_k, top_p=top_p,
                             repetition_penalty=repetition_penalty, stop=stop or (), seed=seed)
    prompt_ids = [engine.tokenizer.bos_id, *engine.tokenizer.encode(text_in)]

    start = time.perf_counter()
    first = None
    pieces: list[str] = []
    completion_ids: list[int] = []
    finish_reason = "length"
    for event in engine.stream([prompt_ids], params):
        if first is None and event.token_ids:
            first = time.perf_counter() - start
        completion_ids += event.token_ids
        pieces.append(event.text)
        finish_reason = event.finish_reason or finish_reason
        if not cli.json and event.text:
            sys.stdout.write(event.text)
            sys.stdout.flush()
    total = time.perf_counter() - start
    text = "".join(pieces)
    first = total if first is None else first
    timings = {"time_to_first_token_s": round(first, 4), "total_s": round(total, 4),
               "tokens_per_s": round(len(completion_ids) / total, 2) if total > 0 else None,
               "decode_tokens_per_s": round((len(completion_ids) - 1) / (total - first), 2)
               if len(completion_ids) > 1 and total > first else None}
    if not cli.json:
        sys.stdout.write("" if text.endswith("\n") else "\n")
        cli.err.print(f"[dim]{len(completion_ids)} tokens, first after {first:.3f} s, "
                      f"{timings['tokens_per_s']} tokens/s, finish: {finish_reason}[/]", highlight=False)
    return {"model": model, "text": text, "prompt_token_ids": prompt_ids, "completion_token_ids": completion_ids,
            "finish_reason": finish_reason, "usage": {"prompt_tokens": len(prompt_ids),
                                                      "completion_tokens": len(completion_ids)},
            "timings": timings, "quantize": quantize_mode(quantize), "device": str(engine.device),
            "params": {"max_tokens": params.max_tokens, "temperature": params.temperature, "top_k": params.top_k,
                       "top_p": params.top_p, "repetition_penalty": params.repetition_penalty,
                       "stop": list(params.stop), "seed": params.seed}}


def register(root: typer.Typer) -> None:
    quark_command(root, "generate")(generate_command)
