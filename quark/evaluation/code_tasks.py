"""The held-out coding tasks of `quark data synth --kind code`, graded in the sandbox.

Each distinct task of a dataset split becomes a `CodeProblem`: the prompt is the task's ask sent
as one chat turn (the way a user asks the routed chat), the completion is the Python the reply's
first fenced block holds (or the whole reply when it has none), and the test program is that code
followed by the task's asserts. pass@1 is the share of tasks whose reply passes every assert.
"""

from __future__ import annotations

import re
from pathlib import Path

from quark.data.code_tasks import test_program
from quark.errors import QuarkError
from quark.evaluation.code_execution import CodeProblem
from quark.jsonl import field, read_jsonl

_FENCE = re.compile(r"```(?:python|py)?\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(reply: str) -> str:
    """The code of a chat reply: its first fenced block (closed or cut off), else the reply itself."""
    match = _FENCE.search(reply)
    return match.group(1) if match else reply


def load_problems(path: Path, limit: int | None = None) -> list[CodeProblem]:
    """One problem per task_id in a code-task JSONL file (rows carry prompt, code and test_list)."""
    problems: dict[str, CodeProblem] = {}
    for number, row in read_jsonl(path):
        task_id = field(path, number, row, "task_id", str)
        tests = field(path, number, row, "test_list", list)
        if not tests or not all(isinstance(t, str) for t in tests):
            raise QuarkError(f"{path}:{number}: field 'test_list' must be a non-empty list of strings")
        if task_id not in problems:
            problems[task_id] = CodeProblem(task_id, field(path, number, row, "prompt", str),
                                            field(path, number, row, "code", str), "", test_program("", tests))
        if limit is not None and len(problems) >= limit:
            break
    if not problems:
        raise QuarkError(f"{path}: no code tasks")
    return list(problems.values())
