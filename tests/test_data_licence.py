"""The licence policy inside a copyleft repository: files without a licence of their own inherit the
repository's, a notice anywhere in a file counts, and `unknown` is a stated, reported policy."""

from __future__ import annotations

import subprocess
from pathlib import Path

from data_corpus import python_module, rows
from quark.data import licenses

AGPL_NOTICE = ("# This program is free software: you can redistribute it and/or modify it under the terms of the\n"
               "# GNU Affero General Public License as published by the Free Software Foundation, version 3.\n")
APACHE_HEADER = ("# Copyright 2021 Example Authors\n#\n# Licensed under the Apache License, Version 2.0 (the "
                 "\"License\");\n"
                 "# you may not use this file except in compliance with the License.\n")


def _git_repo(root: Path) -> dict[str, Path]:
    """An AGPL project checked out with git: its root LICENSE is copyleft."""
    root.mkdir(parents=True)
    (root / "LICENSE").write_text("                    GNU AFFERO GENERAL PUBLIC LICENSE\n"
                                  "                       Version 3, 19 November 2007\n\n Everyone is permitted ...\n")
    files = {
        "template": root / "app" / "templates" / "page.html",
        "deep_notice": root / "app" / "views.py",
        "third_party": root / "app" / "extern" / "markdown_lite.py",
        "unknown": root / "contrib" / "tool.py",
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    files["template"].write_text("<html><body><h1>{{ title }}</h1>\n{% for item in items %}<p>{{ item }}</p>"
                                 "{% endfor %}</body></html>\n")
    # the notice sits past the header lines a header scan reads
    files["deep_notice"].write_text(python_module(1) + AGPL_NOTICE + "def tail():\n    return 1\n")
    files["third_party"].write_text(APACHE_HEADER + python_module(2))
    (root / "contrib" / "LICENSE").write_text("These contributions are under terms the author will tell you.\n")
    files["unknown"].write_text(python_module(3))
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    return files


def test_copyleft_repository_policy(quark, home: Path, tmp_path: Path) -> None:
    files = _git_repo(tmp_path / "agpl-project")
    result = quark.json("data", "ingest", str(tmp_path / "agpl-project"), "--name", "agpl", "--workers", "1")
    summary = result["datasets"][0]
    assert result["unknown_license"] == "auto"
    kept = {row["source"]: row["license"] for row in rows(home, "agpl")}
    assert kept == {str(files["third_party"]): "Apache-2.0"}
    # each dropped file has its own reason in the summary
    assert summary["dropped"] == {"copyleft_folder": 1, "copyleft_license": 1, "unknown_license": 1}
    assert summary["licenses"] == {"Apache-2.0": 1}

    # --unknown-licence keep keeps the file whose licence could not be read, and only that one
    kept_unknown = quark.json("data", "ingest", str(tmp_path / "agpl-project"), "--name", "agpl-keep",
                              "--workers", "1", "--unknown-licence", "keep")["datasets"][0]
    assert {row["source"]: row["license"] for row in rows(home, "agpl-keep")} == {
        str(files["third_party"]): "Apache-2.0", str(files["unknown"]): "unknown"}
    assert kept_unknown["dropped"] == {"copyleft_folder": 1, "copyleft_license": 1}


def test_unknown_licence_outside_copyleft_is_kept_unless_asked(quark, home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "plain.py").write_text(python_module(4))
    (folder / "script.sh").write_text("#!/bin/sh\necho hello\n" + "echo line\n" * 60 + AGPL_NOTICE)
    auto = quark.json("data", "ingest", str(folder), "--name", "auto", "--workers", "1")["datasets"][0]
    assert auto["docs"] == 1 and auto["dropped"] == {"copyleft_license": 1}  # the body notice counts anywhere
    dropped = quark.json("data", "ingest", str(folder), "--name", "strict", "--workers", "1",
                         "--unknown-licence", "drop")["datasets"][0]
    assert dropped["docs"] == 0 and dropped["dropped"] == {"copyleft_license": 1, "unknown_license": 1}
    bad = quark("data", "ingest", str(folder), "--unknown-licence", "maybe", expect=2)
    assert "maybe" in bad.output


def test_notices_are_found_anywhere_in_a_text() -> None:
    body = "x = 1\n" * 5_000
    assert licenses.find_notice(body) is None
    assert licenses.find_notice(body + AGPL_NOTICE) == "AGPL-3.0"
    assert licenses.find_notice(APACHE_HEADER + body + AGPL_NOTICE) == "Apache-2.0"  # the first notice wins
    assert licenses.spdx_tag(body + "// SPDX-License-Identifier: GPL-2.0-only\n") == "GPL-2.0-only"
    assert licenses.drops_unknown("auto", ["MIT", "AGPL-3.0"]) and not licenses.drops_unknown("auto", ["MIT"])
    assert licenses.drops_unknown("drop", []) and not licenses.drops_unknown("keep", ["GPL-3.0"])
