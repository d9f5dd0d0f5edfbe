"""`quark data dedup` and `quark data filter` as stages of their own, on the planted corpus ingested
without dedup: MinHash and SimHash each find the planted near duplicates, exact finds only the copy."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from data_corpus import plant, python_module, rows, with_lines_changed
from quark.commands import app
from quark.data import simhash


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """The planted corpus ingested with --dedup none: every duplicate still there."""
    root = tmp_path_factory.mktemp("dedup")
    planted = plant(root / "corpus")
    home = root / "home"
    result = CliRunner().invoke(app, ["data", "ingest", str(planted.root), "--name", "raw", "--dedup", "none",
                                      "--workers", "2", "--home", str(home), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["datasets"][0]
    assert "near_duplicate" not in summary["dropped"] and "exact_duplicate" not in summary["dropped"]
    return planted, home


def _run(home: Path, *args: str, expect: int = 0) -> dict:
    result = CliRunner().invoke(app, [*args, "--home", str(home), "--json"])
    assert result.exit_code == expect, result.output
    return json.loads(result.stdout) if expect == 0 else {"output": result.stderr, "json": json.loads(result.stdout)}


@pytest.mark.parametrize("method", ["minhash", "simhash"])
def test_near_duplicate_methods_find_the_planted_pairs(raw, method: str) -> None:
    planted, home = raw
    result = _run(home, "data", "dedup", "raw", "--method", method, "--name", f"raw-{method}", "--workers", "2")
    assert result["dropped"] == {"near_duplicate": len(planted.near_pairs), "exact_duplicate": 1}
    assert result["docs"] == result["input_docs"] - len(planted.near_pairs) - 1
    sources = {row["source"] for row in rows(home, f"raw-{method}")}
    for base, edited in planted.near_pairs:
        assert (str(base) in sources) != (str(edited) in sources), (method, base.name)
    assert all(str(path) in sources for path in planted.distinct)
    # provenance: the input shards' hashes, the method, the drops; catalogued as a dedup
    manifest = json.loads(Path(result["manifest"]).read_text())
    assert manifest["kind"] == "dedup" and manifest["dedup"] == {"method": method, "threshold": None}
    for shard in manifest["input"]["shards"]:
        assert shard["sha256"] == hashlib.sha256((home / "data" / "raw" / shard["file"]).read_bytes()).hexdigest()
    assert manifest["output"]["docs"] == result["docs"] and manifest["dropped"] == result["dropped"]
    listing = {entry["name"]: entry for entry in _run(home, "data", "stats")["datasets"]}
    assert listing[f"raw-{method}"]["kind"] == "dedup"


def test_exact_method_and_a_strict_threshold_keep_the_near_pairs(raw) -> None:
    planted, home = raw
    exact = _run(home, "data", "dedup", "raw", "--method", "exact", "--name", "raw-exact", "--workers", "1")
    assert exact["dropped"] == {"exact_duplicate": 1}
    strict = _run(home, "data", "dedup", "raw", "--method", "simhash", "--threshold", "1.0", "--name", "raw-strict")
    assert strict["dropped"].get("near_duplicate", 0) < len(planted.near_pairs)
    bad = _run(home, "data", "dedup", "raw", "--threshold", "0.2", "--name", "raw-bad", expect=1)
    assert "--threshold" in bad["output"]
    assert _run(home, "data", "dedup", "raw", "--name", "raw", expect=1)["output"].count("new name") == 1


def test_filter_drops_by_reason_and_records_provenance(raw) -> None:
    planted, home = raw
    python = _run(home, "data", "filter", "raw", "--lang", "python", "--name", "raw-python")
    kept = rows(home, "raw-python")
    assert kept and {row["language"] for row in kept} == {"python"}
    assert python["dropped"]["language"] == python["input_docs"] - python["docs"] > 0
    sized = _run(home, "data", "filter", "raw", "--min-chars", "100", "--max-chars", "2000", "--name", "raw-sized")
    assert set(sized["dropped"]) == {"too_short", "too_long"}
    assert all(100 <= row["chars"] <= 2000 for row in rows(home, "raw-sized"))
    licensed = _run(home, "data", "filter", "raw", "--licence-deny", "mit", "--licence-deny", "GPL-*",
                    "--name", "raw-lic")
    assert licensed["dropped"] == {"license_denied": 1}  # the MIT Parquet row
    manifest = json.loads(Path(licensed["manifest"]).read_text())
    assert manifest["filter"]["license_deny"] == ["mit", "GPL-*"] and manifest["filter"]["min_chars"] is None
    assert "nothing to filter" in _run(home, "data", "filter", "raw", "--name", "x", expect=1)["output"]
    # a takedown reaches filtered datasets too
    removed = _run(home, "data", "remove", "--source", str(planted.distinct[0]))
    assert removed["removed"].get("raw-python") == 1


def test_simhash_fingerprints_and_banded_lookup() -> None:
    base = python_module(7)
    near, other = with_lines_changed(base), python_module(8)
    assert simhash.distance(simhash.fingerprint(base), simhash.fingerprint(near)) <= 3
    assert simhash.distance(simhash.fingerprint(base), simhash.fingerprint(other)) > 12
    assert simhash.fingerprint(base) == simhash.fingerprint(base) and simhash.fingerprint("") == 0
    config = simhash.SimhashConfig(max_distance=3)
    assert sum(width for _, width in config.bands) == 64 and len(config.bands) == 4
    # a pair 3 bits apart is always found (pigeonhole); 4+ bits apart never joins a cluster
    import numpy as np
    prints = np.array([0, 0b111, 0b1111 << 40, (0b1111 << 40) | (1 << 63)], dtype=np.uint64)
    assert simhash.near_duplicate_clusters(prints, config).tolist() == [0, 0, 2, 2]


def test_toxicity_filter_drops_toxic_posts_and_keeps_their_clean_twins(raw) -> None:
    planted, home = raw
    result = _run(home, "data", "filter", "raw", "--toxicity", "0.5", "--name", "raw-civil")
    assert result["dropped"] == {"toxic_hate": 1, "toxic_insult": 1, "toxic_threat": 1}
    sources = {row["source"] for row in rows(home, "raw-civil")}
    assert all(str(twin) in sources for twin in planted.clean_twins)
    assert str(planted.toxic["profanity"]) in sources  # one mild swear word scores 0.3: under the threshold
    assert not sources & {str(planted.toxic[c]) for c in ("insult", "threat", "hate")}
    manifest = json.loads(Path(result["manifest"]).read_text())
    assert manifest["filter"]["toxicity"] == 0.5 and manifest["dropped"] == result["dropped"]

    strict = _run(home, "data", "filter", "raw", "--toxicity", "0.5", "--profanity", "--name", "raw-clean")
    assert strict["dropped"] == {"toxic_hate": 1, "toxic_insult": 1, "toxic_threat": 1, "profanity": 1}
    assert all(str(twin) in {row["source"] for row in rows(home, "raw-clean")} for twin in planted.clean_twins)


def test_toxicity_scores_are_explained_by_their_terms(tmp_path: Path) -> None:
    from quark.data import toxicity
    from quark.errors import QuarkError

    assert toxicity.score("A skilled, classic assassin; Scunthorpe; hello").matches == {}
    one = toxicity.score("What an idiot.")
    assert one.category == "insult" and one.matches == {"idiot*": 1} and one.score < toxicity.DEFAULT_THRESHOLD
    assert toxicity.score("You idiots, you morons.").score >= toxicity.DEFAULT_THRESHOLD
    threat = toxicity.score("I  will\nkill you")  # any whitespace inside a phrase
    assert threat.category == "threat" and threat.score >= 0.9
    own = tmp_path / "terms.tsv"
    own.write_text("# mine\nbroccoli\tinsult\t0.9\n")
    assert toxicity.load_lexicon(own).score("Broccoli again").score == 0.9
    own.write_text("broccoli\tvegetable\t0.9\n")
    with pytest.raises(QuarkError, match="terms.tsv:1: category"):
        toxicity.load_lexicon(own)
