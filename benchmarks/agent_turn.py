"""An agent turn's latency broken down by stage: prompt build, the model call that writes the tool
call (under the grammar), the tool call (pydantic validation, the tool's run in the sandbox, the
audit row), and the model call that writes the final answer.

The turn is the demo's: "What is 37 * 41? Use Python." with the `code` tools offered and run_code
forced on the first step (tool_choice named, then "none"), on the `tiny` preset's shape (context
widened to 1,024 tokens: the benchmark tokenizer has few real pieces, so its prompts run long)
with random weights and a 4,096-piece tokenizer. Speed does not depend on what the weights say;
the random model's code is nonsense, and greedy decoding keeps it short. Each
stage is timed inside the real loop (AgentState.timeline); validation and the audit row are also
timed alone on the same arguments, so the tool call splits into validation + run + audit +
runner overhead. Medians over the turns.

    python benchmarks/agent_turn.py            # print
    python benchmarks/agent_turn.py --write    # also record under benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._common import preset_engine  # noqa: E402
from benchmarks._results import write_section  # noqa: E402
from quark.agent.loop import AgentLoop, AgentState  # noqa: E402
from quark.home import Home  # noqa: E402
from quark.inference import (
    Engine,  # noqa: E402
    SamplingParams,  # noqa: E402
)
from quark.models.llm import LLM  # noqa: E402
from quark.tokenizer.chat_template import with_tools_prompt  # noqa: E402
from quark.tools import audit  # noqa: E402
from quark.tools.context import ToolContext, ToolPolicy  # noqa: E402
from quark.tools.runner import registry  # noqa: E402

SECTION = "## Agent turn"
QUESTION = "What is 37 * 41? Use Python."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)

    base = preset_engine("tiny")  # its shape and tokenizer, with a 1,024-token context: the tool prompt, call and
    engine = Engine(LLM(dataclasses.replace(base.model.config, max_seq_len=1024)).eval(), base.tokenizer, "tiny")
    engine.stop_ids = set()  # result fit whatever the random weights write; never stops early
    home = Home.open(tempfile.mkdtemp(prefix="quark-bench-agent-"))
    allowed = registry().select("code")
    context = ToolContext.open(home, policy=ToolPolicy(allowed=allowed))
    schemas = registry().schemas(allowed)
    run_code = registry().get("run_code")
    names = ("prompt build", "model call: tool call", "tool call (run_tool_call)", "model call: final answer", "turn")
    stages: dict[str, list[float]] = {k: [] for k in names}
    validation, audit_row, tokens = [], [], []
    for turn in range(args.turns):
        loop = AgentLoop(engine, context, schemas, max_steps=1,
                         tool_choice=[{"type": "function", "function": {"name": "run_code"}}])
        start = time.perf_counter()
        messages = with_tools_prompt([{"role": "system", "content": "You are Quark."},
                                      {"role": "user", "content": QUESTION}], schemas)
        state = AgentState(messages)
        built = time.perf_counter() - start
        for _ in loop.run(state, SamplingParams(max_tokens=args.max_tokens, temperature=0.0, seed=turn)):
            pass
        stages["turn"].append(time.perf_counter() - start)
        timeline = state.timeline
        models = [s for name, s in timeline if name == "model_call"]
        stages["prompt build"].append(built + sum(s for name, s in timeline if name == "prompt"))
        stages["model call: tool call"].append(models[0])
        stages["model call: final answer"].append(models[-1])
        stages["tool call (run_tool_call)"].append(sum(s for name, s in timeline if name.startswith("tool:")))
        tokens.append(state.completion_tokens)
        arguments = state.calls[0].arguments
        began = time.perf_counter()
        try:
            run_code.input_model.model_validate_json(arguments)
        except ValueError:
            pass
        validation.append(time.perf_counter() - began)
        with context.db() as conn:
            began = time.perf_counter()
            result = state.calls[0].result
            audit.record(conn, tool="run_code", arguments=arguments, outcome="ok", result=result.content(),
                         digest=result.digest, duration_s=0.0)
            audit_row.append(time.perf_counter() - began)
    context.close()

    ms = {k: statistics.median(v) * 1000 for k, v in stages.items()}
    v_ms, a_ms = statistics.median(validation) * 1000, statistics.median(audit_row) * 1000
    run_ms = max(0.0, ms["tool call (run_tool_call)"] - v_ms - a_ms)
    load = os.getloadavg()[0]
    last = state.calls[0].result
    backend = f" ({last.output['backend']})" if last.ok else f" ({last.error})"
    rows = [("prompt build (tools prompt + chat template, both steps)", ms["prompt build"]),
            ("model call 1: the tool call under the grammar", ms["model call: tool call"]),
            ("tool call through run_tool_call", ms["tool call (run_tool_call)"]),
            ("  of which: argument validation (pydantic)", v_ms),
            ("  of which: run_code in the sandbox + runner thread/span", run_ms),
            ("  of which: audit row", a_ms),
            ("model call 2: the final answer", ms["model call: final answer"]),
            ("**whole turn**", ms["turn"])]
    table = "\n".join(["| stage | median ms | share of the turn |", "|---|---:|---:|",
                       *(f"| {name} | {value:.1f} | {value / ms['turn']:.0%} |" for name, value in rows)])
    header = (f"`python benchmarks/agent_turn.py --write` — {dt.date(2026, 12, 1)}, {platform.machine()}, "
              f"2-core CPU, shared (load average {load:.1f}); 1 torch thread; `tiny` preset, random weights, "
              f"4,096-piece tokenizer, 1,024-token context; {args.turns} turns, greedy, ≤{args.max_tokens} tokens "
              f"per model call (median {statistics.median(tokens):.0f} generated per turn); tool outcome "
              f"{state.calls[0].outcome}{backend}.")
    text = f"{SECTION}\n\n{header}\n\n{table}\n"
    print(text)
    if args.write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
