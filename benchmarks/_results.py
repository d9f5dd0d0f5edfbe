"""benchmarks/RESULTS.md: each benchmark script owns one `## ` section and rewrites only that."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def write_section(section: str, text: str) -> None:
    """Replace (or append) the section headed `section`, leaving other sections alone."""
    existing = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    start = existing.find(section)
    if start < 0:
        updated = existing.rstrip("\n") + "\n\n" + text
    else:
        end = existing.find("\n## ", start + len(section))
        updated = existing[:start] + text + (existing[end:] if end >= 0 else "")
    RESULTS.write_text(updated)
