"""run_code and run_tests: programs in the sandbox (quark.sandbox: Docker or bubblewrap, no
network, bounded memory/processes/CPU, the process group killed at the wall clock).

The workspace, when the conversation has one, is visible read-only at /workspace and is the
working folder; programs write scratch files in their private /tmp, and files the model means to
keep go through write_file. Output keeps its head and tail and says how much was cut.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from quark.errors import QuarkError
from quark.sandbox import Limits, open_sandbox
from quark.tools.base import Tool, ToolInput, ToolOutput
from quark.tools.context import ToolContext
from quark.tools.errors import ToolError
from quark.tools.workspace import inside, relative

MAX_TIMEOUT_S = 60.0


class RunCodeInput(ToolInput):
    language: Literal["python", "javascript", "shell"] = "python"
    code: str = Field(min_length=1, description="The program's source.")
    timeout_s: float = Field(10.0, gt=0, le=MAX_TIMEOUT_S, description="Wall-clock limit in seconds.")


class RunCodeOutput(ToolOutput):
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    killed: str | None  # why the sandbox stopped it: timeout, memory, cpu-time, file-size, signal …
    backend: str


def _run(ctx: ToolContext, code: str, language: str, timeout_s: float, memory_mb: int = 512):
    half = max(1, ctx.settings.output_bytes // 2)
    limits = Limits(timeout_s=timeout_s, memory_mb=memory_mb, output_bytes=half, tail_bytes=half)
    try:
        sandbox = open_sandbox(ctx.settings.sandbox, limits=limits, allow_unsandboxed=ctx.settings.allow_unsandboxed)
        return sandbox.run(code, language, limits=limits,
                           workspace=ctx.workspace.resolve() if ctx.workspace else None)
    except QuarkError as exc:
        raise ToolError(str(exc)) from None


def run_code(args: RunCodeInput, ctx: ToolContext) -> RunCodeOutput:
    result = _run(ctx, args.code, args.language, args.timeout_s)
    fields = result.to_dict()
    del fields["duration_s"]  # the audit log times the call; the output stays reproducible for replays
    return RunCodeOutput(**fields)


class RunTestsInput(ToolInput):
    path: str = Field(".", description="Test file or folder, relative to the workspace.")
    args: list[str] = Field([], max_length=20, description="Extra pytest arguments, e.g. [\"-k\", \"parse\"].")
    timeout_s: float = Field(60.0, gt=0, le=MAX_TIMEOUT_S)


class RunTestsOutput(ToolOutput):
    exit_code: int | None
    passed: int
    failed: int
    errors: int
    skipped: int
    output: str
    timed_out: bool
    backend: str


_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped)")


def run_tests(args: RunTestsInput, ctx: ToolContext) -> RunTestsOutput:
    workspace = ctx.require_workspace()
    target = relative(workspace, inside(workspace, args.path))
    for arg in args.args:
        if arg.startswith("/") or ".." in arg.split("/"):
            raise ToolError(f"pytest argument {arg!r} refused: paths stay inside the workspace")
    program = ("import sys, pytest\n"
               f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '--color=no', *{args.args!r}, {target!r}]))\n")
    result = _run(ctx, program, "python", args.timeout_s, memory_mb=1024)
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    summary = result.stdout.strip().rsplit("\n", 1)[-1]
    for number, word in _COUNT.findall(summary):
        counts["errors" if word.startswith("error") else word] = int(number)
    output = result.stdout + (("\n" + result.stderr) if result.stderr.strip() else "")
    return RunTestsOutput(exit_code=result.exit_code, output=output, timed_out=result.timed_out,
                          backend=result.backend, **counts)


TOOLS = [
    Tool("run_code", "Run a Python, JavaScript or shell program in a sandbox without network; returns its output.",
         RunCodeInput, RunCodeOutput, run_code, timeout_s=MAX_TIMEOUT_S + 15),
    Tool("run_tests", "Run pytest on the workspace (or a file/folder in it) in the sandbox; returns the counts and "
                      "output.",
         RunTestsInput, RunTestsOutput, run_tests, timeout_s=MAX_TIMEOUT_S + 15),
]
