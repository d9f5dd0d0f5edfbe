"""mix (with a manifest that rebuilds the same blend), remove (a takedown that reaches blends),
export, on two small ingested datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_corpus import python_module, rows


@pytest.fixture
def two_datasets(quark, tmp_path: Path) -> Path:
    code = tmp_path / "code"
    (code / "secret_project").mkdir(parents=True)
    for seed in range(5):
        (code / f"lib_{seed}.py").write_text(python_module(seed, lines=12))
    for seed in (50, 51):
        (code / "secret_project" / f"leak_{seed}.py").write_text(python_module(seed, lines=12))
    prose = tmp_path / "prose"
    prose.mkdir()
    for index, topic in enumerate(["harbours and boats", "bread and flour", "mountains and snow", "rivers and seas"]):
        (prose / f"note_{index}.md").write_text(f"# Note {index}\n\nA short essay about {topic}, written for the tests "
                                                f"of the blending command, number {index}.\n")
    quark("data", "ingest", str(code), "--name", "code", "--workers", "1")
    quark("data", "ingest", str(prose), "--name", "prose", "--workers", "1")
    return tmp_path


def _shards(home: Path, name: str) -> list[Path]:
    return sorted((home / "data" / name / "train").glob("shard-*.parquet"))


def test_mix_manifest_rebuilds_the_identical_blend(quark, home: Path, two_datasets: Path) -> None:
    manifest = quark.json("data", "mix", "--ratio", "code=0.7", "--ratio", "prose=0.3", "--name", "blend", "--seed",
                          "7")
    on_disk = json.loads((home / "data" / "blend" / "manifest.json").read_text())
    assert on_disk == {key: value for key, value in manifest.items()}
    assert manifest["ratios"] == {"code": 0.7, "prose": 0.3} and manifest["seed"] == 7
    inputs = {entry["dataset"]: entry for entry in manifest["inputs"]}
    for name in ("code", "prose"):
        assert [shard["file"] for shard in inputs[name]["shards"]] == [f"train/{p.name}" for p in _shards(home, name)]
        assert all(len(shard["sha256"]) == 64 for shard in inputs[name]["shards"])
        assert inputs[name]["sources"]
    blend_rows = rows(home, "blend")
    assert len(blend_rows) == manifest["output"]["docs"]
    shares = {name: inputs[name]["chars_taken"] / manifest["output"]["chars"] for name in inputs}
    assert abs(shares["code"] - 0.7) < 0.15 and abs(shares["prose"] - 0.3) < 0.15

    rebuilt = quark.json("data", "mix", "--from-manifest", str(home / "data" / "blend" / "manifest.json"),
                         "--name", "blend-again")
    assert rebuilt["identical"] is True
    assert [pq.read_table(p).to_pylist() for p in _shards(home, "blend")] == \
           [pq.read_table(p).to_pylist() for p in _shards(home, "blend-again")]

    # A different seed is a different blend; a changed input refuses an "identical" rebuild.
    other = quark.json("data", "mix", "--ratio", "code=0.7", "--ratio", "prose=0.3", "--name", "blend-other", "--seed",
                       "8")
    assert other["output"]["shards"] != manifest["output"]["shards"]
    (two_datasets / "prose" / "note_9.md").write_text("# Extra\n\nA new note about deserts and camels for the test.\n")
    quark("data", "ingest", str(two_datasets / "prose"), "--name", "prose", "--workers", "1")
    refused = quark("data", "mix", "--from-manifest", str(home / "data" / "blend" / "manifest.json"), "--name", "x",
                    expect=1)
    assert "dataset 'prose' changed since" in refused.output
    assert not (home / "data" / "x").exists()


def test_remove_source_drops_it_everywhere_and_rebuilds_blends(quark, home: Path, two_datasets: Path) -> None:
    quark("data", "mix", "--ratio", "code=0.5", "--ratio", "prose=0.5", "--name", "blend")
    leak = str(two_datasets / "code" / "secret_project")
    assert any(row["source"].startswith(leak) for row in rows(home, "code"))
    before = quark.json("data", "stats", "code")["docs"]

    result = quark.json("data", "remove", "--source", "*/secret_project/*")
    assert result["removed"] == {"code": 2} and result["rebuilt_blends"] == ["blend"]
    for dataset in ("code", "blend"):
        assert not any(row["source"].startswith(leak) for row in rows(home, dataset)), dataset
    after = quark.json("data", "stats", "code")
    assert after["docs"] == before - 2 and after["dropped"]["removed"] == 2
    manifest = json.loads((home / "data" / "blend" / "manifest.json").read_text())
    code_input = next(entry for entry in manifest["inputs"] if entry["dataset"] == "code")
    assert code_input["docs"] == before - 2
    # The rebuilt blend's manifest describes the current inputs: it rebuilds identically again.
    assert quark.json("data", "mix", "--from-manifest", str(home / "data" / "blend" / "manifest.json"),
                      "--name", "blend-check")["identical"] is True

    nothing = quark("data", "remove", "--source", "*/no_such_thing/*", expect=1)
    assert "no document's source matches" in nothing.output


def test_export_writes_every_document(quark, home: Path, two_datasets: Path, tmp_path: Path) -> None:
    docs = quark.json("data", "stats", "code")["docs"]
    jsonl = quark.json("data", "export", "code", "--format", "jsonl", "-o", str(tmp_path / "code.jsonl"))
    lines = (tmp_path / "code.jsonl").read_text().splitlines()
    assert jsonl["docs"] == len(lines) == docs
    first = json.loads(lines[0])
    assert set(first) == {"id", "text", "source", "license", "language", "code_blocks", "chars", "sha256"}
    quark("data", "export", "code", "--format", "parquet", "-o", str(tmp_path / "code.parquet"))
    exported = pq.read_table(tmp_path / "code.parquet").to_pylist()
    assert exported == [json.loads(line) for line in lines]


ENGLISH = ["The harbour wakes at dawn when the fishing boats leave and the gulls follow them out past the lighthouse.",
           "Bread needs flour, water, salt and time; the long slow rise gives the crumb its open, even texture.",
           "Snow closed the mountain pass for a week, so the village lived on what the cellars had stored."]
GERMAN = ["Der Hafen erwacht im Morgengrauen, wenn die Fischerboote auslaufen und die Möwen ihnen folgen.",
          "Brot braucht Mehl, Wasser, Salz und Zeit; die lange, langsame Gare gibt der Krume ihre Struktur.",
          "Der Schnee hat den Bergpass eine Woche lang gesperrt, also lebte das Dorf von den Vorräten im Keller."]


def test_language_buckets_split_and_weight_a_blend(quark, home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "multi"
    folder.mkdir()
    for index, text in enumerate(ENGLISH):
        (folder / f"en_{index}.md").write_text(f"{text} {text}\n")
    for index, text in enumerate(GERMAN):
        (folder / f"de_{index}.md").write_text(f"{text} {text}\n")
    for seed in range(3):
        (folder / f"code_{seed}.py").write_text(python_module(seed, lines=4))
    quark("data", "ingest", str(folder), "--name", "multi", "--workers", "1")
    buckets = quark.json("data", "stats", "multi", "--by-language")["by_language"]
    assert {language: bucket["docs"] for language, bucket in buckets.items()} == {"python": 3, "en": 3, "de": 3}
    assert abs(sum(bucket["share"] for bucket in buckets.values()) - 1) < 1e-3

    german = quark.json("data", "filter", "multi", "--lang", "de", "--name", "multi-de")
    assert german["docs"] == 3 and {row["language"] for row in rows(home, "multi-de")} == {"de"}

    manifest = quark.json("data", "mix", "--ratio", "multi=1", "--language-weight", "python=0",
                          "--language-weight", "de=3", "--name", "weighted", "--chars", "4000")
    taken = manifest["inputs"][0]["chars_by_language"]
    assert "python" not in taken and {row["language"] for row in rows(home, "weighted")} == {"en", "de"}
    expected = 3 * buckets["de"]["chars"] / (3 * buckets["de"]["chars"] + buckets["en"]["chars"])
    assert abs(taken["de"] / (taken["de"] + taken["en"]) - expected) < 0.1
    assert manifest["language_weights"] == {"python": 0.0, "de": 3.0}
    again = quark.json("data", "mix", "--from-manifest", str(home / "data" / "weighted" / "manifest.json"),
                       "--name", "weighted-again")
    assert again["identical"] is True
    bad = quark("data", "mix", "--ratio", "multi=1", "--language-weight", "en", "--name", "x", expect=1)
    assert "bad --language-weight 'en'" in bad.output
