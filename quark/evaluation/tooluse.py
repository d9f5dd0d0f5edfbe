"""Tool use on held-out synthetic tasks (`quark eval tooluse`): does the model pick the right tool,
write arguments that validate, and answer correctly from the result?

Tasks come from the same generator as `quark data synth`'s tool traces (`synth._program` for
computations, the explain templates for questions that need no tool), drawn with a seed of their
own; with --data, any task whose computation appears in the model's SFT data is dropped, so
none was seen in training. run_code is offered alone, as the demo's chat offers it. Each task
is one agent turn through `quark.agent.loop.AgentLoop` — the model chooses (tool_choice
"auto"), the call really runs in the sandbox through `run_tool_call`, and
the answer is read from the turn.

Scores per task: `right_tool` (run_code for a computation; no call for the rest), `valid_arguments`
(every call validated; vacuously true without calls), `correct_answer` (a computation's value
appears in the reply; for the others, a non-empty reply without a call), `success` (all three).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from quark.agent.loop import AgentLoop, AgentState
from quark.chat.config import DEFAULT_SYSTEM_PROMPT
from quark.data.synth import EXPLAIN_TEMPLATES, _program, collect_functions
from quark.errors import QuarkError
from quark.inference import Engine, SamplingParams
from quark.tokenizer.chat_template import with_tools_prompt
from quark.tools.context import ToolContext, ToolPolicy
from quark.tools.runner import registry

TASK_SEED = 9_973  # not a synth seed: the tasks are drawn apart from any SFT data's


@dataclass(frozen=True)
class ToolTask:
    question: str
    tool: str | None  # the tool that should be called (None: answer directly)
    expected: str | None  # text the answer must contain (a computation's value)
    group: str


def tool_tasks(count: int, *, seed: int = TASK_SEED, exclude: Iterable[str] = ()) -> list[ToolTask]:
    """`count` tasks, three computations to one direct question, minus any group in `exclude`."""
    if count < 1:
        raise QuarkError(f"--limit must be at least 1, not {count}")
    rng = random.Random(seed)
    skip = set(exclude)
    functions = collect_functions()
    tasks: list[ToolTask] = []
    attempts = 0
    while len(tasks) < count and attempts < count * 50:
        attempts += 1
        if len(tasks) % 4 != 3:
            p = _program(rng)
            task = ToolTask(p.question, "run_code", p.printed.strip(), p.group)
        else:
            f = rng.choice(functions)
            task = ToolTask(rng.choice(EXPLAIN_TEMPLATES).format(qual=f.qualname), None, None, f.qualname)
        if task.group not in skip and task.group not in {t.group for t in tasks}:
            tasks.append(task)
    return tasks


@dataclass
class TaskResult:
    task: ToolTask
    calls: list[dict]
    reply: str
    right_tool: bool
    valid_arguments: bool
    correct_answer: bool

    @property
    def success(self) -> bool:
        return self.right_tool and self.valid_arguments and self.correct_answer

    def as_dict(self) -> dict:
        return {"question": self.task.question, "expected_tool": self.task.tool, "expected": self.task.expected,
                "calls": self.calls, "reply": self.reply, "right_tool": self.right_tool,
                "valid_arguments": self.valid_arguments, "correct_answer": self.correct_answer,
                "success": self.success}


def run_task(engine: Engine, context: ToolContext, task: ToolTask, *, tools_spec: str = "run_code",
             max_tokens: int = 64, max_steps: int = 2, seed: int = 0) -> TaskResult:
    """One agent turn on `task` (greedy), scored."""
    schemas = registry().schemas(registry().select(tools_spec))
    loop = AgentLoop(engine, context, schemas, max_steps=max_steps, reply_reserve=min(max_tokens,
                                                                                      engine.context_length // 4))
    state = AgentState(with_tools_prompt([{"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
                                          {"role": "user", "content": task.question}], schemas))
    for _ in loop.run(state, SamplingParams(max_tokens=max_tokens, temperature=0.0, seed=seed)):
        pass
    names = [c.name for c in state.calls]
    right = (names[:1] == [task.tool]) if task.tool else not names
    valid = all(c.outcome != "invalid_arguments" and c.outcome != "unknown_tool" for c in state.calls)
    if task.expected is not None:
        correct = task.expected in state.reply
    else:
        correct = bool(state.reply.strip()) and not names
    return TaskResult(task, [c.as_dict() for c in state.calls], state.reply, right, valid, correct)


def score(results: list[TaskResult]) -> dict:
    n = len(results)
    tool_tasks_ = [r for r in results if r.task.tool]
    direct = [r for r in results if not r.task.tool]

    def rate(rows: list[TaskResult], attr: str) -> float:
        return round(sum(bool(getattr(r, attr)) for r in rows) / len(rows), 4) if rows else 0.0

    return {"tasks": n, "success": rate(results, "success"), "right_tool": rate(results, "right_tool"),
            "valid_arguments": rate(results, "valid_arguments"), "correct_answer": rate(results, "correct_answer"),
            "tool_tasks": len(tool_tasks_), "called_when_needed": rate(tool_tasks_, "right_tool"),
            "answer_with_tool_result": rate(tool_tasks_, "correct_answer"),
            "direct_tasks": len(direct), "no_call_when_not_needed": rate(direct, "right_tool")}


def open_context(home, *, policy_spec: str = "run_code") -> ToolContext:
    """The eval's tool context: the tools of `policy_spec`, audited in the home's quark.db."""
    return ToolContext.open(home, policy=ToolPolicy(allowed=registry().select(policy_spec)))
