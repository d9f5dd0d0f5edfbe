"""Run untrusted code (Python, JavaScript, shell) with no network and bounded resources.

`open_sandbox()` picks Docker when a daemon answers, otherwise bubblewrap; it never runs code
unsandboxed unless the caller passes `allow_unsandboxed=True` (the user said so).
"""

from quark.sandbox.base import LANGUAGES, Limits, RunResult, Sandbox, language
from quark.sandbox.select import BACKENDS, open_sandbox, run_code

__all__ = ["BACKENDS", "LANGUAGES", "Limits", "RunResult", "Sandbox", "language", "open_sandbox", "run_code"]
