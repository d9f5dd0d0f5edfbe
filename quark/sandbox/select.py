"""Choosing a backend: Docker when a daemon answers, otherwise bubblewrap, never nothing by default."""

from __future__ import annotations

import functools

from quark.errors import QuarkError
from quark.sandbox.base import Limits, RunResult, Sandbox
from quark.sandbox.bubblewrap import INSTALL_HINT, BubblewrapSandbox

BACKENDS = ("auto", "docker", "bubblewrap", "unsandboxed")


def open_sandbox(backend: str = "auto", *, limits: Limits | None = None, allow_unsandboxed: bool = False) -> Sandbox:
    """The sandbox to run code in.

    "auto" tries Docker (if the SDK is installed and a daemon answers a ping), then bubblewrap.
    "unsandboxed" runs programs with rlimits and a timeout but no isolation; it is refused unless
    `allow_unsandboxed` is true, and "auto" falls back to it only then.
    """
    if backend not in BACKENDS:
        raise QuarkError(f"unknown sandbox backend {backend!r} (expected one of {', '.join(BACKENDS)})")
    if backend == "unsandboxed":
        return _unsandboxed(limits, allow_unsandboxed)
    if backend == "docker":
        return _docker(limits)
    if backend == "bubblewrap":
        return BubblewrapSandbox(limits)
    problems = []
    for make in (_docker, BubblewrapSandbox):
        try:
            return make(limits)
        except QuarkError as exc:
            problems.append(str(exc))
    if allow_unsandboxed:
        return _unsandboxed(limits, True)
    raise QuarkError(f"no sandbox to run code in ({'; '.join(problems)}): {INSTALL_HINT}; "
                     "or allow unsandboxed execution explicitly")


def run_code(code: str, language: str = "python", *, limits: Limits | None = None, backend: str = "auto",
             allow_unsandboxed: bool = False) -> RunResult:
    """Run one program in the chosen sandbox (see `open_sandbox`)."""
    return open_sandbox(backend, limits=limits, allow_unsandboxed=allow_unsandboxed).run(code, language)


def _docker(limits: Limits | None) -> Sandbox:
    if not docker_available():
        raise QuarkError("no Docker daemon answers (or the docker SDK is missing)")
    from quark.sandbox.container import DockerSandbox

    return DockerSandbox(limits)


@functools.lru_cache(maxsize=1)
def docker_available() -> bool:
    """Whether a Docker daemon answers a ping; asked once per process (a missing socket fails fast)."""
    try:
        import docker
        import requests

        docker.from_env(timeout=3).ping()
    except ImportError:
        return False
    except (docker.errors.DockerException, requests.RequestException):
        return False
    return True


def _unsandboxed(limits: Limits | None, allowed: bool) -> Sandbox:
    if not allowed:
        raise QuarkError("refusing to run code unsandboxed without explicit permission (allow_unsandboxed=True)")
    from quark.sandbox.unsandboxed import UnsandboxedRunner

    return UnsandboxedRunner(limits)
