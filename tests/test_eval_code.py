"""Code benchmarks: HumanEval and MBPP scored through the sandbox, and the pass@k estimator."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from quark.errors import QuarkError
from quark.evaluation import code_execution, humaneval, mbpp
from quark.sandbox import Limits, open_sandbox

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


@pytest.fixture(scope="module")
def sandbox():
    return open_sandbox("bubblewrap", limits=Limits(timeout_s=10, memory_mb=512))


@pytest.mark.parametrize("n, c, k, expected", [
    (5, 2, 2, 1 - 3 / 10),        # 1 - C(3,2)/C(5,2)
    (3, 1, 2, 1 - 1 / 3),         # 1 - C(2,2)/C(3,2)
    (10, 3, 1, 0.3),              # pass@1 is the fraction correct
    (10, 0, 5, 0.0),
    (10, 10, 5, 1.0),
    (10, 8, 3, 1.0),              # fewer than k wrong samples: some k-subset always passes
    (200, 1, 100, 0.5),           # C(199,100)/C(200,100) = 100/200
])
def test_pass_at_k_matches_hand_computed_values(n: int, c: int, k: int, expected: float) -> None:
    assert code_execution.pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_is_stable_where_binomials_overflow_floats() -> None:
    # C(2000, 1000) is ~1e600, far past float range; the product form stays exact.
    exact = 1 - math.comb(1990, 1000) / math.comb(2000, 1000)
    assert code_execution.pass_at_k(2000, 10, 1000) == pytest.approx(exact, rel=1e-9)
    with pytest.raises(ValueError):
        code_execution.pass_at_k(3, 1, 4)


def test_all_164_humaneval_canonical_solutions_pass_in_the_sandbox(sandbox) -> None:
    problems = humaneval.load_problems()
    assert len(problems) == 164 and problems[0].task_id == "HumanEval/0" and problems[-1].task_id == "HumanEval/163"
    results = code_execution.execute(problems, code_execution.references(problems), sandbox=sandbox)
    assert [r.task_id for r in results if not r.passed] == []
    assert code_execution.score(results) == {"problems": 164, "samples_per_problem": 1, "pass@1": 1.0, "failures": {}}


def test_known_wrong_completions_score_zero(sandbox) -> None:
    problems = humaneval.load_problems(limit=20)
    wrong = {p.task_id: ["    pass\n", "    return None\n"] for p in problems}
    metrics = code_execution.score(code_execution.execute(problems, wrong, sandbox=sandbox))
    assert metrics["pass@1"] == 0.0 and metrics["pass@2"] == 0.0 and metrics["failures"] == {"wrong": 40}


def test_hostile_completions_fail_cleanly_and_the_run_goes_on() -> None:
    box = open_sandbox("bubblewrap", limits=Limits(timeout_s=3, memory_mb=256))
    problem = humaneval.load_problems(limit=1)[0]
    completions = {problem.task_id: [
        "    while True:\n        pass\n",
        "    hoard = []\n    while True:\n        hoard.append(bytearray(10**7))\n",
        "    import socket\n    socket.create_connection(('1.1.1.1', 80), timeout=2)\n    return True\n",
        "    open('/usr/lib/quark-was-here.py', 'w').write('pwned')\n    return True\n",
        problem.reference,
    ]}
    results = code_execution.execute([problem], completions, sandbox=box)
    assert [r.passed for r in results] == [False, False, False, False, True]
    assert results[0].killed == "timeout" and results[1].killed == "memory"
    assert "OSError" in results[2].error or "unreachable" in results[2].error
    assert "Read-only file system" in results[3].error and not Path("/usr/lib/quark-was-here.py").exists()
    metrics = code_execution.score(results)
    assert metrics["pass@1"] == pytest.approx(0.2) and metrics["pass@5"] == 1.0
    assert metrics["failures"] == {"timeout": 1, "memory": 1, "wrong": 2}


def test_generated_completions_are_cut_at_stop_sequences(sandbox) -> None:
    problems = humaneval.load_problems(limit=3)
    by_prompt = {p.prompt: p.reference for p in problems}

    def complete(prompt: str, n: int, temperature: float) -> list[str]:
        # A model that solves the problem, then rambles on into new top-level code.
        return [by_prompt[prompt] + "\n\ndef unrelated(:\n    syntax error here\n"] * n

    completions = code_execution.sample(problems, complete, n=2, temperature=0.8, stops=humaneval.STOPS)
    assert completions == {p.task_id: [p.reference + "\n"] * 2 for p in problems}
    assert code_execution.score(code_execution.execute(problems, completions, sandbox=sandbox))["pass@2"] == 1.0
    with pytest.raises(QuarkError, match="temperature"):
        code_execution.sample(problems, complete, n=2, temperature=0.0, stops=())


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


MBPP_ROWS = [
    {"task_id": 1, "text": "Write a function to add two numbers.", "code": "def add(a, b):\n    return a + b",
     "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]},
    {"task_id": 2, "text": "Write a function to find the maximum of a list using a helper constant.",
     "code": "def biggest(xs):\n    return max(xs, default=DEFAULT)",
     "test_setup_code": "DEFAULT = -1", "test_list": ["assert biggest([3, 9, 2]) == 9", "assert biggest([]) == -1"]},
]


def test_mbpp_reference_passes_and_wrong_code_fails(tmp_path: Path, sandbox) -> None:
    problems = mbpp.load_problems(_write_jsonl(tmp_path / "mbpp.jsonl", MBPP_ROWS))
    assert problems[0].prompt == '"""\nWrite a function to add two numbers.\nassert add(1, 2) == 3\n"""\n'
    assert code_execution.score(code_execution.execute(problems, code_execution.references(problems),
                                                       sandbox=sandbox))["pass@1"] == 1.0
    wrong = {"1": ["def add(a, b):\n    return a - b"], "2": ["def biggest(xs):\n    return max(xs)"]}
    assert code_execution.score(code_execution.execute(problems, wrong, sandbox=sandbox))["pass@1"] == 0.0


@pytest.mark.parametrize("row, message", [
    ("{not json", "mbpp.jsonl:2: not valid JSON"),
    ({"text": "t", "code": "c"}, "mbpp.jsonl:2: missing field 'test_list'"),
    ({"text": "t", "code": 3, "test_list": ["assert 1"]}, "mbpp.jsonl:2: field 'code' must be str"),
    ({"text": "t", "code": "c", "test_list": []}, "non-empty list of strings"),
])
def test_bad_mbpp_lines_are_named(tmp_path: Path, row, message: str) -> None:
    with pytest.raises(QuarkError, match=message):
        mbpp.load_problems(_write_jsonl(tmp_path / "mbpp.jsonl", [MBPP_ROWS[0], row]))
