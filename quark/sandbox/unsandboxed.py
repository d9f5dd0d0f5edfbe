"""No isolation at all, only rlimits and the timeout: for a user who explicitly allows it.

Nothing selects this backend on its own (see `open_sandbox(allow_unsandboxed=True)`): the program
can read and write the user's files and reach the network.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from quark.sandbox.base import Limits, RunResult, Sandbox, launcher_argv, run_process, sandbox_env


class UnsandboxedRunner(Sandbox):
    name = "unsandboxed"

    def run(self, code: str, language: str = "python", *, limits: Limits | None = None,
            workspace: Path | None = None) -> RunResult:
        lang = self.resolve(code, language)
        workspace = self.check_workspace(workspace)
        limits = limits or self.limits
        argv = launcher_argv(sys.executable, limits, lang, [lang.interpreter(), lang.code_flag, code], drop_to=None)
        with tempfile.TemporaryDirectory(prefix="quark-run-") as workdir:
            env = {**sandbox_env(lang), "HOME": workdir, "TMPDIR": workdir}
            return run_process(argv, limits, env, self.name, cwd=str(workspace or workdir))
