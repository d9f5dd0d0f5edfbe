"""run_code and run_tests through the tool runner: escapes stay contained in the sandbox."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest

from quark.home import Home
from quark.tools.context import ToolContext
from quark.tools.runner import run_tool_call
from quark.tools.settings import ToolSettings

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    path.chmod(0o755)  # the sandboxed program runs as an unprivileged uid and must read it
    return path


@pytest.fixture
def ctx(home: Path, workspace: Path) -> ToolContext:
    return ToolContext(home=Home.open(home), workspace=workspace,
                       settings=ToolSettings(sandbox="bubblewrap", output_bytes=4000))


def run(ctx: ToolContext, code: str, language: str = "python", timeout_s: float = 5.0) -> dict:
    result = run_tool_call("run_code", {"language": language, "code": code, "timeout_s": timeout_s}, ctx)
    assert result.ok, result.error
    return result.output


def test_a_program_runs_and_sees_the_workspace_read_only(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "data.txt").write_text("forty-two\n")
    out = run(ctx, "import os\nprint(os.getcwd(), open('data.txt').read().strip())")
    assert out["exit_code"] == 0 and out["stdout"] == "/workspace forty-two\n" and out["backend"] == "bubblewrap"
    assert run(ctx, "echo $((6 * 7))", "shell")["stdout"] == "42\n"


def test_fork_bomb_is_contained(ctx: ToolContext) -> None:
    marker = f"quark-fork-bomb-{os.getpid()}-{time.time_ns()}"
    start = time.monotonic()
    out = run(ctx, f"import os\n{marker!r}\n"
                   "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
              timeout_s=3)
    assert out["timed_out"] and out["killed"] == "timeout" and time.monotonic() - start < 15
    time.sleep(0.3)
    left = [p for p in filter(str.isdigit, os.listdir("/proc")) if _cmdline_has(p, marker)]
    assert left == []


def _cmdline_has(pid: str, marker: str) -> bool:
    try:
        return marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_memory_bomb_is_killed(ctx: ToolContext) -> None:
    out = run(ctx, "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 * 1024))", timeout_s=10)
    assert out["killed"] == "memory" and out["exit_code"] != 0 and not out["timed_out"]


def test_infinite_loop_times_out(ctx: ToolContext) -> None:
    start = time.monotonic()
    out = run(ctx, "while True:\n    pass", timeout_s=1.5)
    assert out["timed_out"] and out["exit_code"] is None and time.monotonic() - start < 8


def test_output_flood_is_capped_keeping_head_and_tail(ctx: ToolContext) -> None:
    out = run(ctx, "import sys\nsys.stdout.write('HEAD' + 'x' * 5_000_000 + 'TAIL')")
    assert out["stdout"].startswith("HEAD") and out["stdout"].endswith("TAIL")
    assert "bytes cut from the middle" in out["stdout"] and len(out["stdout"]) < 4000 + 200


def test_outbound_socket_fails_even_to_the_hosts_loopback(ctx: ToolContext) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        out = run(ctx, f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')")
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()
    assert out["exit_code"] == 1 and "connected" not in out["stdout"] and "ConnectionRefusedError" in out["stderr"]


def test_host_home_is_invisible_and_nothing_outside_the_workspace_is_writable(ctx: ToolContext, tmp_path: Path,
                                                                              workspace: Path) -> None:
    home = Path.home()
    # The interpreter's own prefix may live under the home (pyenv): only that path is bound.
    runtime = {Path(p).resolve().relative_to(home).parts[0] for p in (sys.prefix, sys.base_prefix)
               if Path(p).resolve().is_relative_to(home)}
    private = sorted(set(os.listdir(home)) - runtime) if home.is_dir() else []
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    outside = tmp_path / "planted.txt"
    program = f"""
import os
visible = set(os.listdir({str(home)!r})) if os.path.isdir({str(home)!r}) else set()
print('home', sorted(visible & set({private!r})))
print('secret', os.path.exists({str(secret)!r}))
for path in ({str(outside)!r}, '/workspace/new.txt', '/usr/planted', '/etc/planted'):
    try:
        open(path, 'w').write('x')
        print('wrote', path)
    except OSError as exc:
        print('refused', path)
"""
    out = run(ctx, program)
    assert "home []" in out["stdout"] and "secret False" in out["stdout"]
    assert "wrote" not in out["stdout"] and out["stdout"].count("refused") == 4
    assert not outside.exists() and not (workspace / "new.txt").exists()


def test_run_tests_counts_passes_and_failures(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "test_sample.py").write_text("def test_ok():\n    assert 1 + 1 == 2\n\n"
                                              "def test_bad():\n    assert 2 * 2 == 5\n")
    result = run_tool_call("run_tests", {"timeout_s": 30}, ctx)
    assert result.ok, result.error
    out = result.output
    assert (out["passed"], out["failed"], out["exit_code"]) == (1, 1, 1), out["output"]
    assert "FAILED test_sample.py::test_bad" in out["output"]
    refused = run_tool_call("run_tests", {"path": "../"}, ctx)
    assert refused.outcome == "error" and "'..' may not leave the workspace" in refused.error
