"""The bubblewrap backend: Linux namespaces without a daemon.

The program sees a read-only root holding only /usr (and the /bin, /lib* links), a few loader
files from /etc, the interpreter's prefix, a size-capped tmpfs at /tmp (its working folder), a
fresh /proc and a minimal /dev. It has no network (its own empty network namespace), its own pid,
ipc and uts namespaces, and dies with its parent.

Entered as root, bwrap mounts without a user namespace and the launcher drops to `nobody` before
exec (root is exempt from RLIMIT_NPROC, and a uid-0 program could undo its limits); RLIMIT_NPROC
then counts every `nobody` process on the machine, so concurrent sandboxes share that budget. Entered as an
ordinary user, bwrap creates a user namespace, so RLIMIT_NPROC counts only the sandbox's processes.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

from quark.errors import QuarkError
from quark.sandbox.base import NOBODY, Language, Limits, RunResult, Sandbox, launcher_argv, run_process, sandbox_env

INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`, Fedora: `dnf install bubblewrap`, "
                "Arch: `pacman -S bubblewrap`) or start a Docker daemon")
_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime")


class BubblewrapSandbox(Sandbox):
    name = "bubblewrap"

    def __init__(self, limits: Limits | None = None, *, bwrap: str | None = None, probe: bool = True) -> None:
        super().__init__(limits)
        found = bwrap or shutil.which("bwrap")
        if not found:
            raise QuarkError(f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}")
        self.bwrap = found
        self.as_root = os.geteuid() == 0
        problem = _probe(self.bwrap) if probe else None
        if problem:
            raise QuarkError(f"bubblewrap cannot create a sandbox here: {problem}")

    def run(self, code: str, language: str = "python", *, limits: Limits | None = None,
            workspace: Path | None = None) -> RunResult:
        lang = self.resolve(code, language)
        workspace = self.check_workspace(workspace)
        limits = limits or self.limits
        interpreter = lang.interpreter()
        inner = launcher_argv(sys.executable, limits, lang, [interpreter, lang.code_flag, code],
                              drop_to=NOBODY if self.as_root else None)
        return run_process(self.command(inner, limits, lang, interpreter, workspace), limits, sandbox_env(lang),
                           self.name)

    def command(self, inner: list[str], limits: Limits, lang: Language, interpreter: str,
                workspace: Path | None = None) -> list[str]:
        """The full bwrap argv around `inner`; a workspace is bound read-only at /workspace."""
        bind = ["--ro-bind", str(workspace), "/workspace"] if workspace else []
        if self.as_root:
            isolation = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                         "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            isolation = ["--unshare-all", "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY)]
        return [self.bwrap, *isolation, "--die-with-parent", "--new-session",
                "--perms", "1777", "--size", str(limits.tmpfs_mb * 1024 * 1024), "--tmpfs", "/tmp",
                *_mounts(_runtime_prefixes(interpreter)),
                *bind, "--proc", "/proc", "--dev", "/dev", "--remount-ro", "/",
                "--chdir", "/workspace" if workspace else "/tmp", *inner]


def _runtime_prefixes(interpreter: str) -> list[Path]:
    """Folders the program's runtime lives in: Python's prefixes (the launcher is Python too) and the
    interpreter's own prefix (…/bin/node → …)."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent.parent,
             Path(os.path.realpath(interpreter)).parent.parent}
    return sorted(paths)


def _mounts(prefixes: Iterable[Path]) -> list[str]:
    args: list[str] = []
    for top in _TOP_LEVEL:
        path = Path(top)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), top]
        elif path.is_dir():
            args += ["--ro-bind", top, top]
    args += ["--ro-bind", "/usr", "/usr", "--perms", "0755", "--dir", "/etc"]
    for etc in _ETC:
        args += ["--ro-bind-try", etc, etc]
    # Bind each prefix not already visible; bwrap would create missing parents 0700 (unreadable to
    # the unprivileged uid), so create them explicitly 0755 first. A prefix under /tmp (a virtual
    # environment in a checkout there) is bound on top of the private tmpfs, read-only.
    bound = [Path("/usr"), *map(Path, _TOP_LEVEL)]
    created = {Path("/"), Path("/tmp"), Path("/usr"), Path("/etc")}
    for prefix in prefixes:
        prefix = prefix.resolve()
        if any(prefix == b or b in prefix.parents for b in bound) or not prefix.is_dir():
            continue
        for parent in reversed(prefix.parents):
            if parent not in created:
                args += ["--perms", "0755", "--dir", str(parent)]
                created.add(parent)
        args += ["--ro-bind", str(prefix), str(prefix)]
        bound.append(prefix)
    return args


@functools.cache
def _probe(bwrap: str) -> str | None:
    """Run a trivial program once per process; return bwrap's complaint if it cannot sandbox here
    (no user namespaces, a seccomp/AppArmor policy, a container without CAP_SYS_ADMIN)."""
    result = BubblewrapSandbox(Limits(timeout_s=30), bwrap=bwrap, probe=False).run("pass")
    if result.ok:
        return None
    message = (result.stderr.strip().splitlines() or [f"exit status {result.exit_code}"])[-1]
    return message[:300]
