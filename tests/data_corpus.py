"""A planted corpus for the data tests: distinct files, near and exact duplicates, GPL sources,
secrets, vendored, generated and binary files, JSONL and Parquet, each with a known fate."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

_VOCABULARY = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ru", "si", "ta", "vo", "ze", "bri", "dra")
               for b in ("mop", "lin", "sek", "vat", "rud", "gor", "pix", "fen", "hal", "tur", "wob", "yel")]

SECRETS = {
    "email": "jane.doe@example.org",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": "ghp_" + "a1B2c3D4e5F6g7H8i9J0" * 2,
    "openai": "sk-proj-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2",
    "ipv4": "81.2.69.160",
    "ipv6": "2607:f8b0:4004:800::200e",
    "phone": "+1 415-555-0132",
    "password": "Tr0ub4dor3xyz",
    "pem_body": "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun",
}


def python_module(seed: int, lines: int = 80) -> str:
    """A Python file of random made-up words: distinct seeds give unrelated files."""
    rng = random.Random(seed)
    out = [f'"""Module {seed}: {" ".join(rng.choices(_VOCABULARY, k=8))}."""', ""]
    for index in range(lines):
        words = rng.choices(_VOCABULARY, k=6)
        out.append(f"def {words[0]}_{words[1]}_{index}({words[2]}, {words[3]}):")
        out.append(f"    return {words[2]} + {words[3]}  # {words[4]} {words[5]}")
    return "\n".join(out) + "\n"


def with_lines_changed(text: str, every: int = 40) -> str:
    """The same file with a few lines edited (one line in `every`)."""
    lines = text.split("\n")
    for index in range(5, len(lines), every):
        lines[index] = lines[index].replace("return", "return -1 *") + "  # edited"
    return "\n".join(lines)


@dataclass
class Planted:
    root: Path
    distinct: list[Path] = field(default_factory=list)
    near_pairs: list[tuple[Path, Path]] = field(default_factory=list)
    exact_pair: tuple[Path, Path] | None = None
    copyleft: list[Path] = field(default_factory=list)
    secrets_file: Path | None = None
    markdown: Path | None = None
    crlf: Path | None = None
    jsonl: Path | None = None
    parquet: Path | None = None
    toxic: dict[str, Path] = field(default_factory=dict)    # category -> abusive post
    clean_twins: list[Path] = field(default_factory=list)   # the same posts, written civilly


# Forum posts in two versions: an abusive one (its category first) and a civil twin on the same
# topic. The twins share their topic sentences but not their tone, so the toxicity filter must
# tell them apart, and they are not near duplicates of each other.
FORUM_POSTS = [
    ("insult", "The release notes for the garden planner say the watering schedule now follows the weather "
               "forecast and the soil sensors.",
     "Whoever wrote this is an idiot and every moron who installed it deserves the flooded lawn they got.",
     "I installed it last week and the schedule skipped a dry day, so I have opened an issue with the logs."),
    ("threat", "The neighbourhood meeting about the new cycle lane on the high street is on Thursday evening "
               "at the library.",
     "If you vote for that lane again, watch your back, because I will find you and I will hurt you.",
     "If you vote for the lane again, please bring the traffic counts, because I would like to see them."),
    ("hate", "Our town has taken in families from the coast after the storms flooded their villages this "
             "winter.",
     "They are animals and vermin, they do not deserve rights here, so go back to your country.",
     "They are neighbours now and many have found work here, so please welcome them at the school fair."),
    ("profanity", "The bakery on the corner changed its sourdough recipe and the crust is much thinner than "
                  "before.",
     "Honestly this new loaf is shit, and the old one was far better for toast in the morning.",
     "Honestly this new loaf is weaker, and the old one was far better for toast in the morning."),
]


def plant(root: Path) -> Planted:
    planted = Planted(root)
    src = root / "src"
    src.mkdir(parents=True)
    for seed in range(6):
        path = src / f"module_{seed}.py"
        path.write_text(python_module(seed))
        planted.distinct.append(path)
    for seed in (100, 101, 102):
        base, variant = src / f"base_{seed}.py", src / f"base_{seed}_edited.py"
        base.write_text(python_module(seed))
        variant.write_text(with_lines_changed(python_module(seed)))
        planted.near_pairs.append((base, variant))
    original, copy = src / "original.py", src / "copy_of_original.py"
    original.write_text(python_module(200))
    copy.write_text(python_module(200))
    planted.exact_pair = (original, copy)

    spdx = src / "gpl_tool.py"
    spdx.write_text("# SPDX-License-Identifier: GPL-3.0-or-later\n" + python_module(300))
    notice = src / "gpl_notice.c"
    notice.write_text("/* This program is free software; you can redistribute it and/or modify it under the terms of\n"
                      " * the GNU General Public License as published by the Free Software Foundation. */\n"
                      "int main(void) { return 0; }\n")
    gpl_repo = root / "gpl_lib"
    gpl_repo.mkdir()
    (gpl_repo / "COPYING").write_text("GNU GENERAL PUBLIC LICENSE\nVersion 2, June 1991\n\nEveryone is permitted ...\n")
    inside = gpl_repo / "helper.py"
    inside.write_text(python_module(301))
    (gpl_repo / "sub").mkdir()
    deeper = gpl_repo / "sub" / "deep.py"
    deeper.write_text(python_module(302))
    planted.copyleft += [spdx, notice, inside, deeper]

    secrets = src / "settings.py"
    secrets.write_text(
        f'"""Deployment settings maintained by {SECRETS["email"]}, call {SECRETS["phone"]}."""\n'
        f'AWS_ACCESS_KEY_ID = "{SECRETS["aws"]}"\n'
        f'GITHUB_TOKEN = "{SECRETS["github"]}"\n'
        f'OPENAI_API_KEY = "{SECRETS["openai"]}"\n'
        f'DB_PASSWORD = "{SECRETS["password"]}"\n'
        f'SERVERS = ["{SECRETS["ipv4"]}", "{SECRETS["ipv6"]}"]\n'
        f'LOCAL = "127.0.0.1"\n'
        f'KEY = """-----BEGIN RSA PRIVATE KEY-----\n{SECRETS["pem_body"]}\n-----END RSA PRIVATE KEY-----"""\n')
    planted.secrets_file = secrets

    markdown = root / "guide.md"
    markdown.write_text("# Guide\n\nThis guide explains how the widgets are assembled by hand in the workshop.\n\n"
                        "```python\nprint('one')\n```\n\nThen the second step follows.\n\n~~~\nmake all\n~~~\n")
    planted.markdown = markdown
    crlf = src / "windows.py"
    crlf.write_bytes(b"def indented():   \r\n    if True:\t\r\n        return 1\r\n\r\n\r\n\r\n")
    planted.crlf = crlf

    (root / "node_modules" / "left-pad").mkdir(parents=True)
    (root / "node_modules" / "left-pad" / "index.js").write_text("module.exports = function leftPad() {}\n")
    (root / "vendor").mkdir()
    (root / "vendor" / "six.py").write_text(python_module(400))
    (src / "messages_pb2.py").write_text(python_module(401))
    (src / "schema.py").write_text("# Code generated by schemagen. DO NOT EDIT.\n" + python_module(402))
    (src / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    (src / "blob.dat2").write_bytes(b"header\0\0\0binary")

    jsonl = root / "notes.jsonl"
    records = [{"text": "The first note describes the harbour at dawn and the boats leaving.", "source": "https://notes.example/1"},
               {"text": "A GPL snippet that must not be kept in the corpus at all.", "license": "GPL-2.0-only"},
               {"text": "The third note is about bread, flour, water and a long slow rise.", "url": "https://notes.example/3"}]
    jsonl.write_text("".join(json.dumps(record) + "\n" for record in records))
    planted.jsonl = jsonl
    parquet = root / "rows.parquet"
    pq.write_table(pa.table({"text": ["Parquet row one talks about mountains and snow.",
                                      "Parquet row two talks about rivers and the sea."],
                             "license": ["MIT", "CC-BY-4.0"]}), parquet)
    planted.parquet = parquet

    forum = root / "forum"
    forum.mkdir()
    for index, (category, topic, abusive, civil) in enumerate(FORUM_POSTS):
        toxic, twin = forum / f"post_{index}_a.txt", forum / f"post_{index}_b.txt"
        toxic.write_text(f"{topic} {abusive}\n")
        twin.write_text(f"{topic} {civil} The skilled classic assassin in the film was my favourite part.\n")
        planted.toxic[category] = toxic
        planted.clean_twins.append(twin)
    return planted


def rows(home: Path, dataset: str) -> list[dict]:
    """Every row of a dataset's Parquet shards."""
    return duckdb.sql(f"SELECT * FROM read_parquet('{home}/data/{dataset}/train/*.parquet') ORDER BY source") \
        .to_arrow_table().to_pylist()
