"""Every command, fed bad values for its file, number and name parameters, fails cleanly.

The cases come from typer's command registry (tests/fuzz_cases.py), so a new command is covered
the day it lands. Each case must:
- exit 1 (a QuarkError) or 2 (a usage error), with no exception escaping the CLI;
- print one error line on stderr. For exit 1 that is the whole of stderr: exactly one non-empty
  line, starting with "error:". For exit 2 (typer's usage error) stderr is the "Usage: ..." line,
  the "Try '... --help'" line and the error box; the box must hold exactly one line of message
  (the terminal is made wide enough that nothing wraps);
- never print a traceback or "internal error" (the CLI's own name for a bug);
- leave the home as it was: the same files and folders (with sizes) and the same number of rows
  in every table of quark.db.

Sampling keeps it inside the test budget: QUARK_FUZZ_CASES (default 300) cases, at least one per
command, drawn with a seed that is printed in the report header and in every failure. Replay:
`QUARK_FUZZ_SEED=<seed> .venv/bin/python -m pytest -q tests/test_fuzz_cli.py`. All cases:
`QUARK_FUZZ_EXHAUSTIVE=1`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fuzz_cases import Case, build_cases, commands, make_files, sample
from quark.commands import app

CASE_SECONDS = 30  # a case that runs longer is hanging (a FIFO opened, /dev/zero read whole)


def fuzz_seed() -> int:
    """QUARK_FUZZ_SEED, else one seed per test run (the same in every xdist worker, which must
    collect the same cases)."""
    if os.environ.get("QUARK_FUZZ_SEED"):
        return int(os.environ["QUARK_FUZZ_SEED"])
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run_id:
        return int(hashlib.sha256(run_id.encode()).hexdigest()[:8], 16)
    seed = int.from_bytes(os.urandom(4), "big")
    os.environ["QUARK_FUZZ_SEED"] = str(seed)  # so the report header prints the one used
    return seed


SEED = fuzz_seed()
FILES = Path(os.environ.get("QUARK_FUZZ_FILES", "/tmp")) / f"quark-fuzz-{os.getpid()}-{SEED}"
REPLAY = f"replay: QUARK_FUZZ_SEED={SEED} .venv/bin/python -m pytest -q tests/test_fuzz_cli.py"
ALL_CASES = build_cases(FILES)
CASES = ALL_CASES if os.environ.get("QUARK_FUZZ_EXHAUSTIVE") == "1" else sample(
    ALL_CASES, int(os.environ.get("QUARK_FUZZ_CASES", "300")), SEED)


# Tables a refused command may add to by design: every tool call, refused ones included, is written
# to the audit log (SPEC §8).
AUDIT_TABLES = {"tool_calls"}


def snapshot(home: Path) -> dict:
    """Files and folders (with sizes), and row counts of every real table in quark.db."""
    tree = {}
    for path in sorted(home.rglob("*")):
        rel = str(path.relative_to(home))
        if rel.startswith("quark.db"):
            continue
        tree[rel] = "dir" if path.is_dir() else path.stat().st_size
    rows = {}
    if (home / "quark.db").exists():
        conn = sqlite3.connect(home / "quark.db")
        try:
            tables = [name for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
                      if not (sql or "").upper().startswith("CREATE VIRTUAL") and name not in AUDIT_TABLES]
            rows = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
        finally:
            conn.close()
    return {"files": tree, "rows": rows}


@pytest.fixture(scope="module")
def fuzz_home(tiny_model_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """A home with the tiny model and an initialised quark.db, plus the zoo of bad files."""
    pristine = tmp_path_factory.mktemp("fuzz") / "pristine"
    shutil.copytree(tiny_model_home, pristine)
    CliRunner().invoke(app, ["checkpoint", "list", "--home", str(pristine)])  # create and migrate quark.db
    make_files(FILES)
    home = pristine.parent / "home"
    shutil.copytree(pristine, home)
    yield pristine, home, snapshot(pristine)
    shutil.rmtree(FILES, ignore_errors=True)


class Hang(BaseException):
    """Raised by the alarm: a BaseException, so the CLI's own `except Exception` cannot hide it."""


def _alarm(signum, frame):
    raise Hang()


def error_lines(case: Case, code: int, stderr: str) -> list[str]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    if code == 2:
        lines = [line for line in lines if not line.startswith(("Usage:", "Try '", "╭", "╰"))]
    return lines


def _stdin(kind: str | None) -> bytes | None:
    """The runner takes stdin as bytes: /dev/zero becomes one byte more than the cap (a real
    /dev/zero on stdin is test_hardening's subprocess test)."""
    if kind == "zero":
        from quark.inputs import STDIN_CAP

        return b"\0" * (STDIN_CAP + 1)
    return {"nonutf8": b"caf\xe9 \xff\xfe", "empty": b"", None: None}[kind]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_cleanly(case: Case, fuzz_home) -> None:
    pristine, home, before = fuzz_home
    stdin = _stdin(case.stdin)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    try:
        result = CliRunner().invoke(app, [*case.argv, "--home", str(home)], input=stdin,
                                    env={"COLUMNS": "1000", "QUARK_HOME": str(home), "NO_COLOR": "1"})
    except Hang:
        pytest.fail(f"{case.id}: still running after {CASE_SECONDS} s ({REPLAY})")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    after = snapshot(home)
    if after != before:  # put the home back so one failure does not cascade into the next cases
        shutil.rmtree(home)
        shutil.copytree(pristine, home)
    shown = f"$ quark {' '.join(map(repr, case.argv))}\nexit {result.exit_code}\nstderr:\n{result.stderr}\n" \
            f"stdout:\n{result.stdout[-2000:]}\nexception: {result.exception!r}\n{REPLAY} -k '{case.id}'"
    assert result.exit_code in (1, 2), shown
    assert result.exception is None or isinstance(result.exception, SystemExit), shown
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "internal error" not in output, shown
    lines = error_lines(case, result.exit_code, result.stderr)
    assert len(lines) == 1, shown
    if result.exit_code == 1:
        assert lines[0].startswith("error:"), shown
    assert after == before, f"the home changed:\n{_diff(before, after)}\n{shown}"


def _diff(before: dict, after: dict) -> str:
    out = []
    for key in ("files", "rows"):
        for name in sorted(set(before[key]) | set(after[key])):
            if before[key].get(name) != after[key].get(name):
                out.append(f"{key}: {name}: {before[key].get(name)} -> {after[key].get(name)}")
    return "\n".join(out)


def test_every_command_is_covered() -> None:
    """The sample reaches every command of the registry that has a parameter to fuzz."""
    fuzzable = {c.command for c in ALL_CASES}
    assert {c.command for c in CASES} == fuzzable
    assert len(fuzzable) >= 0.8 * len(commands())  # commands with no parameters (`* list`) excepted
