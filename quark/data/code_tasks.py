"""Coding tasks for the code specialist (`quark data synth --kind code`), each carrying its tests.

A task is a small function spec made from a *family* (add a constant, repeat a string, keep the
list items above a threshold …) and a *constant*, with a function name that says both
(`add_three`, `keep_above_five`): the spec, a correct solution and the asserts that grade it. Its
split group is the (family, constant) combination, so the held-out tasks are combinations the
model never saw in training, made of families and constants it did see.

Three kinds of chat rows are drawn from each task (OpenAI `messages`, what SFT reads):
- solve: the ask → the solution in a ```python block;
- tool:  the ask (the tools offered in the system prompt) → a `run_code` call running the
         solution with its tests → the sandbox's real result → the solution;
- debug: the same, but the first run is a plausible bug (the wrong constant, the wrong operator)
         whose real sandbox result is an AssertionError, followed by a fixed run that passes.
Every row also carries `task_id`, `prompt`, `code` and `test_list`, so an evaluation can grade a
reply by running it with the tests in the sandbox (quark/evaluation/code_tasks.py).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from quark.data.synth import (
    RunCode,
    _assistant,
    _check_fraction,
    _tool_call,
    _tool_result,
    _user,
    _write_split,
    sandbox_runner,
)
from quark.errors import QuarkError

NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}
WORDS = ("cat", "sun", "box", "red", "map", "ink", "owl", "jam")
ASKS = ("Write a Python function `{sig}` that {spec}.", "Implement `{sig}`: it {spec}.",
        "I need a function `{sig}` that {spec}. Write it in Python.", "Write `{sig}` in Python. It {spec}.")


@dataclass(frozen=True)
class Family:
    """One kind of task: `spec`, `body` and `bug` are formatted with c (the constant) and w (its
    word); `cases` are the arguments the tests call the function with."""

    name: str        # the function name's pattern, e.g. "add_{w}"
    param: str       # "x", "s" or "xs"
    spec: str        # "returns x plus {c}"
    body: str        # "return x + {c}"
    bug: str         # a plausible wrong body, failing at least one case
    reference: Callable[[object, int], object]
    cases: tuple


INTS = (0, 1, 5, -4, 10)
STRINGS = ("a", "hello", "", "xyz")
LISTS = ([1, 2, 3], [], [9, 4, 7, 2], [5, 5, 0, 8, 1])
FAMILIES = (
    Family("add_{w}", "x", "returns x plus {c}", "return x + {c}", "return x + {c1}", lambda x, c: x + c, INTS),
    Family("times_{w}", "x", "returns x multiplied by {c}", "return x * {c}", "return x + {c}",
           lambda x, c: x * c, INTS),
    Family("minus_{w}", "x", "returns x minus {c}", "return x - {c}", "return {c} - x", lambda x, c: x - c, INTS),
    Family("is_multiple_of_{w}", "x", "returns True when x is divisible by {c}, else False",
           "return x % {c} == 0", "return x % {c} == 1", lambda x, c: x % c == 0, INTS),
    Family("repeat_{w}", "s", "returns the string s repeated {c} times", "return s * {c}", "return s * {c1}",
           lambda s, c: s * c, STRINGS),
    Family("pad_{w}", "s", "returns s followed by {c} exclamation marks", "return s + '!' * {c}",
           "return s + '!' * {c1}", lambda s, c: s + "!" * c, STRINGS),
    Family("first_{w}_chars", "s", "returns the first {c} characters of s", "return s[:{c}]", "return s[{c}:]",
           lambda s, c: s[:c], ("abcdefghij", "hi", "", "hello world")),
    Family("add_{w}_to_each", "xs", "returns a new list with {c} added to every number in xs",
           "return [x + {c} for x in xs]", "return [x + {c1} for x in xs]", lambda xs, c: [x + c for x in xs], LISTS),
    Family("keep_above_{w}", "xs", "returns the numbers in xs that are greater than {c}, in order",
           "return [x for x in xs if x > {c}]", "return [x for x in xs if x >= {c}]",
           lambda xs, c: [x for x in xs if x > c], ([1, 9, 3, 7, 2], [], [4, 5, 6, 8], [10, 0, 5, 3])),
    Family("count_{w}s", "xs", "returns how many times {c} appears in xs", "return xs.count({c})",
           "return len(xs) - xs.count({c})", lambda xs, c: xs.count(c),
           ([2, 3, 2, 5], [], [7, 7, 4, 9, 6], [8, 1, 8, 8, 3])),
    Family("sum_times_{w}", "xs", "returns the sum of xs multiplied by {c}", "return sum(xs) * {c}",
           "return sum(xs) + {c}", lambda xs, c: sum(xs) * c, LISTS),
)


@dataclass(frozen=True)
class Task:
    family: Family
    constant: int

    @property
    def group(self) -> str:
        """The split key: the (family, constant) combination."""
        return f"code:{self.family.name}:{self.constant}"

    def _fill(self, text: str) -> str:
        return text.format(c=self.constant, w=NUMBERS[self.constant], c1=self.constant + 1)

    @property
    def function(self) -> str:
        return self._fill(self.family.name)

    @property
    def signature(self) -> str:
        return f"{self.function}({self.family.param})"

    def ask(self, rng: random.Random) -> str:
        return rng.choice(ASKS).format(sig=self.signature, spec=self._fill(self.family.spec))

    def solution(self, bug: bool = False) -> str:
        return f"def {self.signature}:\n    {self._fill(self.family.bug if bug else self.family.body)}\n"

    def tests(self) -> list[str]:
        return [f"assert {self.function}({case!r}) == {self.family.reference(case, self.constant)!r}"
                for case in self.family.cases]


def all_tasks() -> list[Task]:
    return [Task(family, c) for family in FAMILIES for c in NUMBERS]


def test_program(code: str, tests: Sequence[str]) -> str:
    """What a run_code call (and the grader) runs: the solution, its asserts, then a success line."""
    return code + "\n" + "\n".join(tests) + "\nprint('all tests passed')\n"


def fenced(code: str) -> str:
    return f"```python\n{code}```"


def code_rows(seed: int = 0, run_code: RunCode | None = None) -> Iterator[tuple[str, dict]]:
    """(group, row) pairs in a seed-determined order: per task, a solve row, a tool trace and a
    self-debugging trace. Tool results are the sandbox's own (`run_code` through the agent's tool
    runner, quark.data.synth.sandbox_runner), checked: the right solution prints the success line,
    the bug fails with an AssertionError."""
    from quark.chat.config import DEFAULT_SYSTEM_PROMPT
    from quark.tokenizer.chat_template import with_tools_prompt
    from quark.tools.runner import registry

    rng = random.Random(seed)
    tools = registry()
    schemas = tools.schemas(tools.select("run_code"))
    tasks = all_tasks()
    programs = [test_program(t.solution(bug), t.tests()) for t in tasks for bug in (False, True)]
    results = dict(zip(programs, (run_code or sandbox_runner())(programs)))
    rows = []
    for task in tasks:
        good, bad = (test_program(task.solution(bug), task.tests()) for bug in (False, True))
        for program, passes in ((good, True), (bad, False)):
            outcome = json.loads(results[program]).get("result", {})
            if (outcome.get("exit_code") == 0) != passes or (not passes and "AssertionError" not in
                                                               outcome.get("stderr", "")):
                raise QuarkError(f"code task {task.signature}: the sandbox ran its {'solution' if passes else 'bug'} "
                                 f"with exit code {outcome.get('exit_code')} ({outcome.get('stderr', '')[-200:]!r})")
        grade = {"task_id": task.group, "code": task.solution(), "test_list": task.tests()}
        answer = _assistant(fenced(task.solution()))
        ask = task.ask(rng)
        rows.append((task.group, {"messages": [_user(ask), answer], "prompt": ask, **grade}))
        system = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}]
        ask = task.ask(rng)
        tool = [*system, _user(ask), _tool_call(0, "run_code", {"language": "python", "code": good}),
                _tool_result(0, "run_code", results[good]), answer]
        rows.append((task.group, {"messages": with_tools_prompt(tool, schemas), "prompt": ask, **grade}))
        ask = task.ask(rng)
        debug = [*system, _user(ask), _tool_call(0, "run_code", {"language": "python", "code": bad}),
                 _tool_result(0, "run_code", results[bad]),
                 _tool_call(1, "run_code", {"language": "python", "code": good}),
                 _tool_result(1, "run_code", results[good]), answer]
        rows.append((task.group, {"messages": with_tools_prompt(debug, schemas), "prompt": ask, **grade}))
    rng.shuffle(rows)
    yield from rows


def write_code(folder: Path, *, seed: int = 0, val_fraction: float = 0.25, home: Path | None = None) -> dict:
    """Write `train.jsonl`, `val.jsonl` and `meta.json`, split by (family, constant); the traces'
    programs run in the sandbox, audited in `home` (default: a scratch home)."""
    _check_fraction(val_fraction)
    rows = list(code_rows(seed, sandbox_runner(home)))
    return _write_split(Path(folder), rows, seed, val_fraction,
                        {"format": "chat", "kinds": {"code": len(rows)}, "tasks": len(all_tasks())})
