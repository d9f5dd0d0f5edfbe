"""MBPP-format problems (Austin et al., 2021) from a JSONL file.

Each line: {"task_id", "text", "code", "test_list": [assert …], "test_setup_code"?}. The prompt is
the BigCode harness's: the description and the first test inside a docstring, so the model knows
the function's name and signature. The test program is setup + completion + every assert.
"""

from __future__ import annotations

from pathlib import Path

from quark.errors import QuarkError
from quark.evaluation.code_execution import CodeProblem
from quark.jsonl import field, read_jsonl

STOPS = ("\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n```")


def load_problems(path: Path, limit: int | None = None) -> list[CodeProblem]:
    problems = []
    for number, row in read_jsonl(path):
        text = field(path, number, row, "text", str)
        code = field(path, number, row, "code", str)
        tests = field(path, number, row, "test_list", list)
        if not tests or not all(isinstance(t, str) for t in tests):
            raise QuarkError(f"{path}:{number}: field 'test_list' must be a non-empty list of strings")
        setup = field(path, number, row, "test_setup_code", str, default="")
        task_id = str(field(path, number, row, "task_id", (str, int), default=f"line-{number}"))
        prompt = f'"""\n{text}\n{tests[0]}\n"""\n'
        problems.append(CodeProblem(task_id=task_id, prompt=prompt, reference=code,
                                    prefix=f"{setup}\n" if setup else "", suffix="\n\n" + "\n".join(tests) + "\n"))
        if limit is not None and len(problems) >= limit:
            break
    if not problems:
        raise QuarkError(f"{path}: no problems")
    return problems
