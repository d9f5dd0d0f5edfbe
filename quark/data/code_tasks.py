"""Coding tasks for the code specialist (`quark data synth --kind code`), each carrying its tests.

A task is a small function spec made from a *family* (add a constant, repeat a string, keep the
list items above a threshold …) and a *constant* from 2 to 40, with a function name that says both
(`add_three`, `keep_above_twenty_one`): the spec, a correct solution and the asserts that grade it.
Its split group is the (family, constant) combination, so the held-out tasks are combinations the
model never saw in training, made of families and constants it did see. With 39 constants per
family the training set cannot be fitted by memorising which constants go with which family: the
way to fit it, and to pass the held-out tasks, is to copy the name and the constant from the ask.

Three kinds of chat rows are drawn from each task (OpenAI `messages`, what SFT reads):
- solve: the ask → the solution in a ```python block, `SOLVE_ASKS` of them, each worded differently;
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

CONSTANTS = range(2, 41)
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = {2: "twenty", 3: "thirty", 4: "forty"}
ASKS = ("Write a Python function `{sig}` that {spec}.", "Implement `{sig}`: it {spec}.",
        "I need a function `{sig}` that {spec}. Write it in Python.", "Write `{sig}` in Python. It {spec}.",
        "Please define `{sig}`, which {spec}.", "Can you write `{sig}`? It {spec}.")
SOLVE_ASKS = 3  # solve rows per task: more asks of the same task than one, fewer than the templates


def number_word(n: int) -> str:
    """The constant as it appears in a function name: 7 → seven, 21 → twenty_one (2 ≤ n ≤ 49)."""
    if n < 20:
        return _ONES[n]
    return _TENS[n // 10] + (f"_{_ONES[n % 10]}" if n % 10 else "")


@dataclass(frozen=True)
class Family:
    """One kind of task: `spec`, `body` and `bug` are formatted with c (the constant) and w (its
    word); `cases(c)` are the arguments the tests call the function with, chosen around c so that
    a body ignoring the constant fails them."""

    name: str        # the function name's pattern, e.g. "add_{w}"
    param: str       # "x", "s" or "xs"
    spec: str        # "returns x plus {c}"
    body: str        # "return x + {c}"
    bug: str         # a plausible wrong body, failing at least one case
    reference: Callable[[object, int], object]
    cases: Callable[[int], tuple]


_ALPHABET = "abcdefghijklmnopqrstuvwxyz"


# The tests' arguments per family: fixed where any c changes every answer, around c where a fixed
# list would let a body that ignores c pass (nothing above 40 to keep, no 40 to count).
def _ints(c: int) -> tuple:
    return (0, 1, 5, -4, 10)


def _strings(c: int) -> tuple:
    return ("a", "hello", "", "xyz")


def _lists(c: int) -> tuple:
    return ([1, 2, 3], [], [9, 4, 7, 2], [5, 5, 0, 8, 1])


def _multiples(c: int) -> tuple:
    return (0, 1, c, 2 * c + 1, 3 * c, c - 1)


def _prefixes(c: int) -> tuple:
    return ((_ALPHABET * 2)[:c + 3], "hi", "", (_ALPHABET * 2)[:c - 1])


def _around(c: int) -> tuple:
    return ([c - 1, c + 1, c, c + 5, 1], [], [c + 2, c - 2, c + 3], [0, c])


def _with(c: int) -> tuple:
    return ([c, 3, c, 5], [], [7, c, c, c + 1, c], [1, c + 2])


FAMILIES = (
    Family("add_{w}", "x", "returns x plus {c}", "return x + {c}", "return x + {c1}", lambda x, c: x + c, _ints),
    Family("times_{w}", "x", "returns x multiplied by {c}", "return x * {c}", "return x + {c}",
           lambda x, c: x * c, _ints),
    Family("minus_{w}", "x", "returns x minus {c}", "return x - {c}", "return {c} - x", lambda x, c: x - c, _ints),
    Family("is_multiple_of_{w}", "x", "returns True when x is divisible by {c}, else False",
           "return x % {c} == 0", "return x % {c} == 1", lambda x, c: x % c == 0, _multiples),
    Family("repeat_{w}", "s", "returns the string s repeated {c} times", "return s * {c}", "return s * {c1}",
           lambda s, c: s * c, _strings),
    Family("pad_{w}", "s", "returns s followed by {c} exclamation marks", "return s + '!' * {c}",
           "return s + '!' * {c1}", lambda s, c: s + "!" * c, _strings),
    Family("first_{w}_chars", "s", "returns the first {c} characters of s", "return s[:{c}]", "return s[{c}:]",
           lambda s, c: s[:c], _prefixes),
    Family("add_{w}_to_each", "xs", "returns a new list with {c} added to every number in xs",
           "return [x + {c} for x in xs]", "return [x + {c1} for x in xs]", lambda xs, c: [x + c for x in xs], _lists),
    Family("keep_above_{w}", "xs", "returns the numbers in xs that are greater than {c}, in order",
           "return [x for x in xs if x > {c}]", "return [x for x in xs if x >= {c}]",
           lambda xs, c: [x for x in xs if x > c], _around),
    Family("count_{w}s", "xs", "returns how many times {c} appears in xs", "return xs.count({c})",
           "return len(xs) - xs.count({c})", lambda xs, c: xs.count(c), _with),
    Family("sum_times_{w}", "xs", "returns the sum of xs multiplied by {c}", "return sum(xs) * {c}",
           "return sum(xs) + {c}", lambda xs, c: sum(xs) * c, _lists),
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
        return text.format(c=self.constant, w=number_word(self.constant), c1=self.constant + 1)

    @property
    def function(self) -> str:
        return self._fill(self.family.name)

    @property
    def signature(self) -> str:
        return f"{self.function}({self.family.param})"

    def ask(self, rng: random.Random) -> str:
        return self.asks(rng, 1)[0]

    def asks(self, rng: random.Random, n: int) -> list[str]:
        """`n` differently worded asks for this task."""
        return [t.format(sig=self.signature, spec=self._fill(self.family.spec)) for t in rng.sample(ASKS, n)]

    def solution(self, bug: bool = False) -> str:
        return f"def {self.signature}:\n    {self._fill(self.family.bug if bug else self.family.body)}\n"

    def tests(self) -> list[str]:
        return [f"assert {self.function}({case!r}) == {self.family.reference(case, self.constant)!r}"
                for case in self.family.cases(self.constant)]


def all_tasks(constants: Sequence[int] = CONSTANTS) -> list[Task]:
    return [Task(family, c) for family in FAMILIES for c in constants]


def test_program(code: str, tests: Sequence[str]) -> str:
    """What a run_code call (and the grader) runs: the solution, its asserts, then a success line."""
    return code + "\n" + "\n".join(tests) + "\nprint('all tests passed')\n"


def fenced(code: str) -> str:
    return f"```python\n{code}```"


def code_rows(seed: int = 0, run_code: RunCode | None = None,
              constants: Sequence[int] = CONSTANTS) -> Iterator[tuple[str, dict]]:
    """(group, row) pairs in a seed-determined order: per task, `SOLVE_ASKS` solve rows, a tool trace and a
    self-debugging trace. Tool results are the sandbox's own (`run_code` through the agent's tool
    runner, quark.data.synth.sandbox_runner), checked: the right solution prints the success line,
    the bug fails with an AssertionError."""
    from quark.chat.config import DEFAULT_SYSTEM_PROMPT
    from quark.tokenizer.chat_template import with_tools_prompt
    from quark.tools.runner import registry

    rng = random.Random(seed)
    tools = registry()
    schemas = tools.schemas(tools.select("run_code"))
    tasks = all_tasks(constants)
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
        for ask in task.asks(rng, SOLVE_ASKS):
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
