"""What every sandbox backend shares: limits, the result, languages, and running one process.

Backends differ only in how they isolate (a bubblewrap namespace, a Docker container, or nothing
when the user explicitly allows it). Limits are enforced the same way wherever a process runs on
this machine: a small launcher sets the rlimits *inside* the isolation (so RLIMIT_NPROC is
counted in the sandbox's own user namespace), optionally drops to an unprivileged uid, then execs
the interpreter. The wall-clock timeout kills the whole process group from outside.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from quark.errors import QuarkError

NOBODY = 65534
# Longest program passed as one argv string (Linux caps a single argument at 128 KiB).
MAX_CODE_BYTES = 120_000


@dataclass(frozen=True)
class Limits:
    """Resource limits for one run. `cpu_s` defaults to the wall-clock timeout, rounded up.

    `memory_mb` caps writable memory (RLIMIT_DATA) and address space (RLIMIT_AS, plus the
    language's reservation headroom: V8 reserves gigabytes of address space it never touches).
    `cpus` is a share of CPU and only Docker can enforce it; rlimits bound CPU *seconds* instead.
    `pids` counts threads as well as processes. Output keeps the first `output_bytes` of each
    stream and, when `tail_bytes` is set, its last `tail_bytes` too, saying how much was cut.
    """

    timeout_s: float = 10.0
    memory_mb: int = 512
    cpu_s: int | None = None
    pids: int = 64
    file_size_mb: int = 16
    tmpfs_mb: int = 64
    open_files: int = 256
    output_bytes: int = 64_000
    cpus: float = 1.0
    tail_bytes: int = 0  # also keep the last this many bytes of each stream (the middle is cut)

    def __post_init__(self) -> None:
        for name in ("timeout_s", "memory_mb", "pids", "file_size_mb", "tmpfs_mb", "open_files", "output_bytes",
                     "cpus"):
            if not getattr(self, name) > 0:
                raise QuarkError(f"sandbox limit {name} must be positive, got {getattr(self, name)!r}")
        if self.tail_bytes < 0:
            raise QuarkError(f"sandbox limit tail_bytes must not be negative, got {self.tail_bytes!r}")

    @property
    def cpu_seconds(self) -> int:
        return self.cpu_s if self.cpu_s is not None else max(1, math.ceil(self.timeout_s))


@dataclass(frozen=True)
class RunResult:
    """How a sandboxed program ended.

    exit_code: the program's status (a signal N reads 128+N, as in a shell); None when the
    wall-clock timeout killed it. killed: why the sandbox stopped it, or None — "timeout",
    "cpu-time", "memory", "file-size", or "signal NAME".
    """

    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    killed: str | None
    backend: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def to_dict(self) -> dict:
        return {"exit_code": self.exit_code, "stdout": self.stdout, "stderr": self.stderr, "timed_out": self.timed_out,
                "killed": self.killed, "backend": self.backend, "duration_s": round(self.duration_s, 3)}


@dataclass(frozen=True)
class Language:
    """How to run a program of one language: the interpreter, its inline-code flag, an image."""

    name: str
    interpreters: tuple[str, ...]
    code_flag: str
    docker_image: str
    address_headroom_mb: int = 0

    def interpreter(self) -> str:
        """Absolute path of the interpreter on this machine. Python is the running one, so a
        virtual environment's packages are importable (its path is kept as is: resolving a venv's
        symlink would lose the venv)."""
        if self.name == "python":
            return sys.executable
        for candidate in self.interpreters:
            found = shutil.which(candidate)
            if found:
                return os.path.realpath(found)
        raise QuarkError(f"no {self.name} interpreter on this machine (looked for {', '.join(self.interpreters)})")


LANGUAGES: dict[str, Language] = {
    "python": Language("python", ("python3",), "-c", "python:3.12-slim"),
    "javascript": Language("javascript", ("node", "nodejs"), "-e", "node:22-slim", address_headroom_mb=8192),
    "shell": Language("shell", ("sh",), "-c", "debian:bookworm-slim"),
}
_ALIASES = {"py": "python", "python3": "python", "js": "javascript", "node": "javascript", "sh": "shell",
            "bash": "shell"}


def language(name: str) -> Language:
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in LANGUAGES:
        raise QuarkError(f"unknown sandbox language {name!r} (expected one of {', '.join(LANGUAGES)})")
    return LANGUAGES[key]


def check_code(code: str) -> None:
    if len(code.encode("utf-8")) > MAX_CODE_BYTES:
        raise QuarkError(f"program too long for the sandbox: {len(code.encode('utf-8'))} bytes "
                         f"(limit {MAX_CODE_BYTES})")
    if "\x00" in code:
        raise QuarkError("program contains a NUL byte")


# Runs inside the isolation, under the same Python the sandbox binds. argv: uid, then the rlimits
# (0 = leave as is), then the command to exec. Dropping the uid matters when the sandbox is
# entered as root: root is exempt from RLIMIT_NPROC.
LAUNCHER = """\
import os, resource as r, sys
uid, nproc, data, addr, cpu, fsize, nofile = map(int, sys.argv[1:8])
if uid >= 0:
    os.setgroups([]); os.setresgid(uid, uid, uid); os.setresuid(uid, uid, uid)
for key, soft, hard in ((r.RLIMIT_NPROC, nproc, nproc), (r.RLIMIT_DATA, data, data), (r.RLIMIT_AS, addr, addr),
                        (r.RLIMIT_CPU, cpu, cpu + 1), (r.RLIMIT_FSIZE, fsize, fsize), (r.RLIMIT_NOFILE, nofile, nofile),
                        (r.RLIMIT_CORE, 0, 0)):
    if hard or key == r.RLIMIT_CORE:
        r.setrlimit(key, (soft, hard))
os.execv(sys.argv[8], sys.argv[8:])
"""


def launcher_argv(python: str, limits: Limits, lang: Language, command: list[str], *, drop_to: int | None) -> list[str]:
    """`python -c LAUNCHER …` that applies `limits` and then execs `command`."""
    mb = 1024 * 1024
    numbers = [drop_to if drop_to is not None else -1, limits.pids, limits.memory_mb * mb,
               (limits.memory_mb + lang.address_headroom_mb) * mb, limits.cpu_seconds, limits.file_size_mb * mb,
               limits.open_files]
    return [python, "-I", "-S", "-c", LAUNCHER, *map(str, numbers), *command]


def sandbox_env(lang: Language) -> dict[str, str]:
    """A minimal environment: nothing of the caller's (keys, tokens, proxies) reaches the program."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "TMPDIR": "/tmp",
           # One thread per BLAS/OpenMP pool: threads count against the pids limit, and a pool sized
           # to a many-core host would exhaust it on import.
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if lang.name == "python":
        env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    return env


class _Capture(threading.Thread):
    """Drain a pipe, keeping the first `cap` bytes and the last `tail` bytes; the program never
    blocks on a full pipe."""

    def __init__(self, fd: int, cap: int, tail: int = 0) -> None:
        super().__init__(daemon=True)
        self.fd, self.cap, self.tail_cap, self.data, self.total = fd, cap, tail, bytearray(), 0
        self.tail = bytearray()

    def run(self) -> None:
        try:
            while chunk := os.read(self.fd, 65536):
                self.total += len(chunk)
                room = self.cap - len(self.data)
                if room > 0:
                    self.data += chunk[:room]
                    chunk = chunk[room:]
                if self.tail_cap and chunk:
                    self.tail += chunk
                    del self.tail[:-self.tail_cap]
        except OSError:
            pass
        finally:
            os.close(self.fd)

    def text(self) -> str:
        return cut_text(bytes(self.data), bytes(self.tail), self.total)


def cut_text(head: bytes, tail: bytes, total: int) -> str:
    """Captured output as text, saying how many bytes were cut (from the end, or the middle)."""
    cut = total - len(head) - len(tail)
    text = head.decode("utf-8", errors="replace")
    if cut <= 0:
        return text + tail.decode("utf-8", errors="replace")
    if not tail:
        return text + f"\n[output truncated: {cut} more bytes]"
    return (text + f"\n[output truncated: {cut} bytes cut from the middle; the first {len(head)} and the last "
            f"{len(tail)} bytes are kept]\n" + tail.decode("utf-8", errors="replace"))


def classify(exit_code: int | None, timed_out: bool, stderr: str, *, oom: bool = False) -> str | None:
    """Why the sandbox stopped the program, from its status (128+N is signal N) and stderr."""
    last = stderr.rstrip().rsplit("\n", 1)[-1]
    if timed_out:
        return "timeout"
    if oom or last.startswith("MemoryError") or "heap out of memory" in stderr or "Cannot allocate memory" in last:
        return "memory"
    if "File too large" in last:  # Python ignores SIGXFSZ and sees EFBIG instead
        return "file-size"
    if exit_code is not None and exit_code > 128:
        try:
            sig = signal.Signals(exit_code - 128)
        except ValueError:
            return None
        return {signal.SIGXCPU: "cpu-time", signal.SIGXFSZ: "file-size"}.get(sig, f"signal {sig.name}")
    return None


def run_process(argv: list[str], limits: Limits, env: dict[str, str], backend: str, cwd: str = "/") -> RunResult:
    """Run argv in its own process group with capped output; kill the group at the timeout."""
    start = time.monotonic()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w, env=env, cwd=cwd,
                                start_new_session=True, close_fds=True)
    except OSError as exc:
        for fd in (out_r, out_w, err_r, err_w):
            os.close(fd)
        raise QuarkError(f"cannot start the sandbox ({argv[0]}): {exc}") from None
    os.close(out_w)
    os.close(err_w)
    readers = [_Capture(out_r, limits.output_bytes, limits.tail_bytes),
               _Capture(err_r, limits.output_bytes, limits.tail_bytes)]
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        proc.wait(timeout=limits.timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        # Kill the whole group whatever happened (a timeout, or Ctrl-C in the caller).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    for reader in readers:
        reader.join(timeout=5)
    code = None if timed_out else (128 - proc.returncode if proc.returncode < 0 else proc.returncode)
    stdout, stderr = readers[0].text(), readers[1].text()
    return RunResult(exit_code=code, stdout=stdout, stderr=stderr, timed_out=timed_out,
                     killed=classify(code, timed_out, stderr), backend=backend,
                     duration_s=time.monotonic() - start)


class Sandbox(ABC):
    """Runs one program at a time under `limits`; safe to call from many threads at once."""

    name: str

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()

    @abstractmethod
    def run(self, code: str, language: str = "python", *, limits: Limits | None = None,
            workspace: Path | None = None) -> RunResult:
        """Run `code` and return how it ended. Never raises for anything the program does.

        `workspace`: a host folder the program sees read-only at /workspace, its working folder
        (tests to run, files to read); without one it starts in its private /tmp."""

    @staticmethod
    def check_workspace(workspace: Path | None) -> Path | None:
        if workspace is None:
            return None
        path = Path(workspace).resolve()
        if not path.is_dir():
            raise QuarkError(f"sandbox workspace {workspace} is not a folder")
        return path

    @staticmethod
    def resolve(code: str, language_name: str) -> Language:
        check_code(code)
        return language(language_name)
