"""`quark data ingest` end to end: the built-in corpus, and a planted corpus whose every file has a
known fate (kept, near/exact duplicate, GPL, vendored, generated, binary, secrets scrubbed)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from data_corpus import SECRETS, plant, rows
from quark.commands import app
from quark.data.shards import COLUMNS


def test_builtin_stdlib_ingests_into_two_catalogued_datasets(quark, home: Path) -> None:
    result = quark.json("data", "ingest", "--builtin", "stdlib", "--limit", "25", "--workers", "1")
    by_name = {entry["dataset"]: entry for entry in result["datasets"]}
    assert set(by_name) == {"stdlib-code", "stdlib-text"}
    for name, language in (("stdlib-code", "python"), ("stdlib-text", "en")):
        shards = sorted((home / "data" / name / "train").glob("shard-*.parquet"))
        assert shards and tuple(pq.read_schema(shards[0]).names) == COLUMNS
        table = rows(home, name)
        assert len(table) == by_name[name]["docs"] > 0
        licenses = [row["license"] for row in table]
        # PSF by default; a module whose own header says otherwise (a few carry an MIT notice) keeps that
        assert licenses.count("PSF-2.0") > len(licenses) / 2 and "GPL" not in " ".join(licenses)
        assert language in {row["language"] for row in table}
        assert all(row["chars"] == len(row["text"]) for row in table)
    assert all(row["source"].endswith(".py") for row in rows(home, "stdlib-code"))
    assert all(row["source"].startswith("pydoc_data.topics:") for row in rows(home, "stdlib-text"))
    # The catalog has a row per document and answers stats.
    catalogued = duckdb.connect(str(home / "corpus.duckdb"), read_only=True).execute(
        "SELECT dataset, count(*) FROM documents GROUP BY dataset ORDER BY dataset").fetchall()
    assert catalogued == [("stdlib-code", by_name["stdlib-code"]["docs"]), ("stdlib-text",
                                                                            by_name["stdlib-text"]["docs"])]
    stats = quark.json("data", "stats", "stdlib-code")
    assert stats["docs"] == by_name["stdlib-code"]["docs"] and sum(stats["licenses"].values()) == stats["docs"]
    assert stats["languages"] == {"python": stats["docs"]}
    assert "stdlib-code" in quark("data", "stats").stdout


@pytest.fixture(scope="module")
def planted_ingest(tmp_path_factory):
    """Ingest the planted corpus once for the assertions below."""
    root = tmp_path_factory.mktemp("planted")
    planted = plant(root / "corpus")
    home = root / "home"
    result = CliRunner().invoke(app, ["data", "ingest", str(planted.root), "--name", "planted", "--workers", "1",
                                      "--home", str(home), "--json"])
    assert result.exit_code == 0, result.output
    return planted, home, json.loads(result.stdout)["datasets"][0]


def test_near_duplicates_are_dropped_and_distinct_files_kept(planted_ingest) -> None:
    planted, home, summary = planted_ingest
    sources = {row["source"] for row in rows(home, "planted")}
    for path in planted.distinct:
        assert str(path) in sources, f"distinct file {path.name} was dropped"
    for base, edited in planted.near_pairs:
        assert (str(base) in sources) != (str(edited) in sources), f"near duplicates {base.name}/{edited.name}"
    original, copy = planted.exact_pair
    assert (str(original) in sources) != (str(copy) in sources)
    assert summary["dropped"]["near_duplicate"] == len(planted.near_pairs)
    assert summary["dropped"]["exact_duplicate"] == 1


def test_gpl_sources_are_excluded(planted_ingest) -> None:
    planted, home, summary = planted_ingest
    table = rows(home, "planted")
    sources = {row["source"] for row in table}
    assert not sources & {str(path) for path in planted.copyleft}
    assert not any("GPL" in row["text"] for row in table)  # the GPL JSONL record too
    # own tag or notice (2 files + the JSONL record); no licence of their own, in the GPL folder (2)
    assert summary["dropped"]["copyleft_license"] == 3 and summary["dropped"]["copyleft_folder"] == 2
    assert {row["license"] for row in table if row["source"].endswith("rows.parquet#0")} == {"MIT"}
    # A folder inside the GPL library is under the library's COPYING even when ingested alone.
    alone = CliRunner().invoke(app, ["data", "ingest", str(planted.root / "gpl_lib" / "sub"), "--name", "sub",
                                     "--workers", "1", "--home", str(home), "--json"])
    assert alone.exit_code == 0, alone.output
    summary = json.loads(alone.stdout)["datasets"][0]
    assert summary["docs"] == 0 and summary["dropped"] == {"copyleft_folder": 1}


def test_secrets_and_personal_data_are_scrubbed(planted_ingest) -> None:
    planted, home, summary = planted_ingest
    table = rows(home, "planted")
    everything = "\n".join(row["text"] for row in table)
    for kind, secret in SECRETS.items():
        assert secret not in everything, f"{kind} survived scrubbing"
    settings = next(row["text"] for row in table if row["source"] == str(planted.secrets_file))
    for placeholder in ("<EMAIL>", "<PHONE>", "<AWS_ACCESS_KEY>", "<GITHUB_TOKEN>", "<OPENAI_KEY>", "<SECRET>",
                        "<IP_ADDRESS>", "<PRIVATE_KEY>"):
        assert placeholder in settings
    assert '"127.0.0.1"' in settings  # a loopback address is configuration, not personal data
    assert summary["scrubbed"]["IP_ADDRESS"] == 2


def test_skipped_files_whitespace_code_blocks_and_languages(planted_ingest) -> None:
    planted, home, summary = planted_ingest
    table = {row["source"]: row for row in rows(home, "planted")}
    assert not any("node_modules" in source or "/vendor/" in source or source.endswith(("_pb2.py", "schema.py"))
                   for source in table)
    assert summary["dropped"]["vendored"] == 2
    assert summary["dropped"]["generated"] == 2
    assert summary["dropped"]["binary"] == 2
    # CRLF -> LF, trailing spaces and blank lines gone, indentation untouched.
    assert table[str(planted.crlf)]["text"] == "def indented():\n    if True:\n        return 1\n"
    guide = table[str(planted.markdown)]
    assert guide["code_blocks"] == 2 and guide["language"] == "en"
    assert table["https://notes.example/1"]["language"] == "en"
    assert table[str(planted.distinct[0])]["language"] == "python"
    for row in table.values():
        assert row["sha256"] == hashlib.sha256(row["text"].encode()).hexdigest() and row["id"] == row["sha256"][:16]


def test_git_checkout_contributes_only_tracked_files(quark, home: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "tracked.py").write_text("def tracked_function():\n    return 'kept in the corpus'\n")
    (repo / "scratch.py").write_text("def untracked_scratch():\n    return 'never committed'\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "tracked.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    quark("data", "ingest", str(repo), "--workers", "1")
    assert [Path(row["source"]).name for row in rows(home, "repo")] == ["tracked.py"]
