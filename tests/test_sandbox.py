"""The code sandbox: untrusted programs run, fail or get killed without touching the machine."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import docker
import pytest

from quark.errors import QuarkError
from quark.sandbox import Limits, open_sandbox, run_code
from quark.sandbox import select as sandbox_select
from quark.sandbox.base import LANGUAGES
from quark.sandbox.container import container_spec

QUICK = Limits(timeout_s=3)


@pytest.fixture(scope="module")
def sandbox():
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    return open_sandbox("bubblewrap", limits=QUICK)


def test_python_program_output_and_status(sandbox) -> None:
    result = sandbox.run("import sys\nprint('hello', 6 * 7)\nprint('oops', file=sys.stderr)\nsys.exit(3)")
    assert (result.exit_code, result.stdout, result.stderr.strip(), result.timed_out, result.killed) == \
        (3, "hello 42\n", "oops", False, None)
    assert not result.ok and sandbox.run("print(1)").ok


def test_no_network_not_even_the_hosts_loopback(sandbox) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        result = sandbox.run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), "
                             "timeout=2)\nprint('connected')")
    finally:
        server.close()
    assert result.exit_code == 1 and "connected" not in result.stdout
    assert "ConnectionRefusedError" in result.stderr or "unreachable" in result.stderr
    outside = sandbox.run("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)")
    assert outside.exit_code == 1 and "OSError" in outside.stderr


def test_infinite_loop_is_killed_at_the_wall_clock_timeout(sandbox) -> None:
    start = time.monotonic()
    result = sandbox.run("while True:\n    pass", limits=Limits(timeout_s=1.5))
    assert result.timed_out and result.killed == "timeout" and result.exit_code is None
    assert time.monotonic() - start < 6


def test_cpu_seconds_limit(sandbox) -> None:
    result = sandbox.run("while True:\n    pass", limits=Limits(timeout_s=20, cpu_s=1))
    assert not result.timed_out and result.killed == "cpu-time" and result.duration_s < 15


def test_unbounded_allocation_fails_cleanly(sandbox) -> None:
    result = sandbox.run("chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))", limits=Limits(timeout_s=10,
                                                                                                        memory_mb=200))
    assert result.killed == "memory" and result.exit_code != 0 and not result.timed_out


def test_file_size_limit(sandbox) -> None:
    result = sandbox.run("open('/tmp/big', 'wb').write(b'x' * 3_000_000)", limits=Limits(file_size_mb=1))
    assert result.killed == "file-size" and result.exit_code != 0


def test_root_is_read_only_tmp_is_private_and_host_files_are_hidden(sandbox, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    program = f"""
import os
for path in ('/usr/evil', '/evil', '/etc/evil'):
    try:
        open(path, 'w').write('x')
        print('wrote', path)
    except OSError as exc:
        print('refused', path, exc.errno)
open('/tmp/scratch', 'w').write('ok')
print('tmp', open('/tmp/scratch').read())
print('secret visible', os.path.exists({str(secret)!r}))
print('uid', os.getuid())
"""
    result = sandbox.run(program)
    assert result.ok, result.stderr
    assert "wrote" not in result.stdout and result.stdout.count("refused") == 3
    assert "tmp ok" in result.stdout and "secret visible False" in result.stdout
    assert "uid 0" not in result.stdout


def test_process_count_is_limited(sandbox) -> None:
    program = """
import os, time
forked = 0
for _ in range(100):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(2)
        os._exit(0)
    forked += 1
print(forked)
"""
    result = sandbox.run(program, limits=Limits(timeout_s=10, pids=8))
    assert result.ok, result.stderr
    assert int(result.stdout) < 8


def test_timeout_kills_every_process_of_the_program(sandbox) -> None:
    marker = f"quark-sandbox-marker-{os.getpid()}-{time.time_ns()}"
    program = f"""
import os, signal, subprocess, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen([sys.executable, '-c',
                  'import time, signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)', {marker!r}],
                 start_new_session=True)
while True:
    pass
"""
    result = sandbox.run(program, limits=Limits(timeout_s=2))
    assert result.timed_out
    time.sleep(0.5)
    survivors = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                survivors.append(pid)
        except OSError:
            pass
    assert survivors == []


def test_output_is_capped(sandbox) -> None:
    result = sandbox.run("import sys\nsys.stdout.write('x' * 1_000_000)", limits=Limits(output_bytes=1000))
    assert result.ok and result.stdout.startswith("x" * 1000) and "output truncated: 999000 more bytes" in result.stdout


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_javascript(sandbox) -> None:
    assert sandbox.run("console.log([1, 2, 3].map(x => x * 2).join(','))", "js").stdout == "2,4,6\n"
    failing = sandbox.run("require('net').connect(80, '1.1.1.1').on('error', e => { console.error(e.code); "
                          "process.exit(4) })",
                          "javascript")
    assert failing.exit_code == 4 and failing.stderr.strip() in {"ENETUNREACH", "EACCES"}


def test_shell(sandbox) -> None:
    result = sandbox.run("echo $((6 * 7)); touch /usr/x 2>/dev/null || echo refused", "shell")
    assert result.stdout == "42\nrefused\n"


def test_bad_requests_are_user_errors(sandbox) -> None:
    with pytest.raises(QuarkError, match="unknown sandbox language 'cobol'"):
        sandbox.run("x", "cobol")
    with pytest.raises(QuarkError, match="program too long"):
        sandbox.run("#" * 200_000)
    with pytest.raises(QuarkError, match="must be positive"):
        Limits(timeout_s=0)


def test_never_unsandboxed_without_permission(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(QuarkError, match="refusing to run code unsandboxed"):
        open_sandbox("unsandboxed")
    monkeypatch.setattr(sandbox_select, "docker_available", lambda: False)
    monkeypatch.setattr("quark.sandbox.bubblewrap.shutil.which", lambda name: None)
    with pytest.raises(QuarkError, match="apt-get install bubblewrap"):
        run_code("print(1)")
    result = run_code("import os\nprint(6 * 7)", allow_unsandboxed=True, limits=QUICK)
    assert result.backend == "unsandboxed" and result.stdout == "42\n"
    # The CPU limit defaults to the timeout, so on an idle core either could stop the loop first;
    # a wider CPU limit makes this the wall-clock timeout's case.
    assert run_code("while True: pass", allow_unsandboxed=True, limits=Limits(timeout_s=1, cpu_s=10)).timed_out


def test_docker_container_spec_isolates() -> None:
    """The container config as the Docker API receives it (built by the SDK, no daemon needed)."""
    api = docker.APIClient(base_url="unix:///nonexistent/docker.sock", version="1.45")
    spec = container_spec(api, "print(1)", LANGUAGES["python"], Limits(memory_mb=256, pids=16), "python:3.12-slim")
    host = spec["host_config"]
    assert spec["command"] == ["python3", "-c", "print(1)"] and spec["user"] == "65534:65534"
    assert spec["network_disabled"] and host["NetworkMode"] == "none" and host["ReadonlyRootfs"]
    assert host["Memory"] == host["MemorySwap"] == 256 * 2**20 and host["PidsLimit"] == 16
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
    assert "size=64m" in host["Tmpfs"]["/tmp"]
    assert {u["Name"] for u in host["Ulimits"]} == {"cpu", "fsize", "nofile", "core"}


@pytest.mark.skipif(not sandbox_select.docker_available(), reason="no Docker daemon answers")
def test_docker_backend_runs_isolated() -> None:
    box = open_sandbox("docker", limits=Limits(timeout_s=20))
    try:
        result = box.run("import socket\nprint('hi')\nsocket.create_connection(('1.1.1.1', 80), timeout=2)")
    except QuarkError as exc:  # the image is not pulled on this machine
        pytest.skip(str(exc))
    assert result.stdout == "hi\n" and result.exit_code == 1
    assert box.run("while True: pass", limits=Limits(timeout_s=2, cpu_s=10)).timed_out
