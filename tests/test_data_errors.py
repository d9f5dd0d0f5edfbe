"""Bad input to `quark data`: one clear line naming the culprit, exit 1, and the home untouched."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def _home_is_untouched(home: Path) -> None:
    leftovers = [str(path.relative_to(home)) for path in home.rglob("*")]
    assert leftovers == [], f"left behind: {leftovers}"


def _one_line_error(result, *fragments: str) -> None:
    """The error is one line (the progress bar's last frame may precede it on stderr), no traceback."""
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


def test_unreadable_file(quark, home: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "fine.py").write_text("def fine():\n    return 1\n")
    os.symlink(tmp_path / "gone.py", corpus / "dangling.py")  # a file no one can read
    result = quark("data", "ingest", str(corpus), "--name", "c", "--workers", "1", expect=1)
    _one_line_error(result, "cannot read", "dangling.py")
    _home_is_untouched(home)


def test_malformed_jsonl_line_names_file_and_line(quark, home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "notes.jsonl"
    bad.write_text('{"text": "a fine first record about apples"}\n{"text": "broken\n{"text": "third"}\n')
    result = quark("data", "ingest", str(bad), "--name", "notes", "--workers", "1", expect=1)
    _one_line_error(result, f"{bad}:2", "malformed JSON")
    _home_is_untouched(home)
    missing = tmp_path / "fields.jsonl"
    missing.write_text('{"body": "no text field here"}\n')
    _one_line_error(quark("data", "ingest", str(missing), "--workers", "1", expect=1), f"{missing}:1", "'text'",
                    "--text-field")
    _home_is_untouched(home)


def test_parquet_without_text_column(quark, home: Path, tmp_path: Path) -> None:
    table = tmp_path / "table.parquet"
    pq.write_table(pa.table({"body": ["some words"]}), table)
    _one_line_error(quark("data", "ingest", str(table), "--name", "t", expect=1), str(table), "no 'text' column",
                    "body")
    _home_is_untouched(home)
    quark("data", "ingest", str(table), "--name", "t", "--text-field", "body", "--workers", "1")
    assert (home / "data" / "t" / "train").is_dir()


@pytest.mark.parametrize("command", [
    ("data", "stats", "nope"),
    ("data", "export", "nope", "-o", "out.jsonl"),
    ("data", "mix", "--ratio", "nope=1", "--name", "blend"),
])
def test_unknown_dataset(quark, home: Path, command: tuple[str, ...]) -> None:
    _one_line_error(quark(*command, expect=1), "unknown dataset 'nope'")
    _home_is_untouched(home)


@pytest.mark.parametrize("name", ["../escape", "a/b", "/etc/passwd", ".hidden"])
def test_names_with_path_separators_are_refused(quark, home: Path, tmp_path: Path, name: str) -> None:
    corpus = tmp_path / "doc.md"
    corpus.write_text("# A document\n\nWith a sentence in it.\n")
    _one_line_error(quark("data", "ingest", str(corpus), "--name", name, expect=1), "invalid dataset name")
    _one_line_error(quark("data", "stats", name, expect=1), "invalid dataset name")
    _home_is_untouched(home)
    assert not (tmp_path / "escape").exists()
