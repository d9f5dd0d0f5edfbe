"""A short run of the serve soak (benchmarks/serve_soak.py): concurrent clients on loopback,
streamed, plain and cancelled requests, no error, and the server still healthy afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_soak.py"


def test_short_soak_has_no_errors_and_no_runaway_memory() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(SCRIPT), "--clients", "4", "--requests", "8", "--max-tokens", "8",
                          "--json"], capture_output=True, text=True, env=env, timeout=300, check=True)
    result = json.loads(out.stdout)
    assert result["requests"] == 32 and result["errors"] == 0, result["first_errors"]
    assert set(result["latency"]) == {"chat", "stream", "cancel", "completion"}
    assert result["health_after"] == 200
    assert result["rss_growth_pct"] < 20  # the 1,000-request soak holds it under 5%; 32 requests are noisier
