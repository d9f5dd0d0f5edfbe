"""The pieces every command stands on: names, atomic writes, quark.db and the CLI conventions."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from quark import atomic, db
from quark.commands._cli import group, quark_command
from quark.errors import QuarkError
from quark.home import Home, validate_name


@pytest.mark.parametrize("bad", ["../x", "a/b", "a\\b", "", ".hidden", "x\x00", "a..b", "x" * 200, "tab\tname"])
def test_names_that_could_escape_the_home_are_refused(bad: str) -> None:
    with pytest.raises(QuarkError):
        validate_name(bad)


def test_atomic_dir_leaves_nothing_when_interrupted(tmp_path: Path) -> None:
    final = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_dir(final) as tmp:
            (tmp / "weights").write_text("half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with atomic.atomic_dir(final) as tmp:
        (tmp / "weights").write_text("whole")
    assert (final / "weights").read_text() == "whole"


def test_db_is_wal_with_sqlite_vec_and_migrated(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "quark.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(db.MIGRATIONS)
    assert conn.execute("select vec_version()").fetchone()[0].startswith("v")
    # A failed transaction leaves no row behind.
    with pytest.raises(RuntimeError):
        with db.transaction(conn):
            conn.execute("INSERT INTO eval_results(model, task, metrics, created_at) VALUES ('m','t','{}',0)")
            raise RuntimeError
    assert conn.execute("SELECT count(*) FROM eval_results").fetchone()[0] == 0


def _write_runs(path: str, prefix: str) -> None:
    conn = db.connect(path)
    for i in range(40):
        db.record_run(conn, f"{prefix}-{i}", "pretrain", None, {"i": i})


def test_two_processes_writing_quark_db_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "quark.db")
    procs = [multiprocessing.get_context("spawn").Process(target=_write_runs, args=(path, p)) for p in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert db.connect(path).execute("SELECT count(*) FROM runs").fetchone()[0] == 80


def _demo_app() -> typer.Typer:
    root = typer.Typer()
    sub = group("thing", "A test group.")

    @quark_command(sub, "show")
    def show(cli, name: str) -> dict:
        if name == "bad":
            raise QuarkError("unknown thing 'bad'")
        if name == "boom":
            raise ZeroDivisionError("boom")
        cli.print(f"thing {name}")
        return {"name": name, "home": str(cli.home.root)}

    root.add_typer(sub)
    return root


def test_shared_options_json_errors_and_exit_codes(tmp_path: Path) -> None:
    runner, app = CliRunner(), _demo_app()
    ok = runner.invoke(app, ["thing", "show", "x", "--json", "--home", str(tmp_path)])
    assert ok.exit_code == 0 and '"name": "x"' in ok.stdout and "thing x" not in ok.stdout
    bad = runner.invoke(app, ["thing", "show", "bad", "--home", str(tmp_path)])
    assert bad.exit_code == 1 and "unknown thing 'bad'" in bad.output and "Traceback" not in bad.output
    bug = runner.invoke(app, ["thing", "show", "boom", "--home", str(tmp_path)])
    assert bug.exit_code == 1 and "--debug" in bug.output and "Traceback" not in bug.output
    debug = runner.invoke(app, ["thing", "show", "boom", "--debug", "--home", str(tmp_path)])
    assert isinstance(debug.exception, ZeroDivisionError)
    usage = runner.invoke(app, ["thing", "show", "--no-such-flag", "--home", str(tmp_path)])
    assert usage.exit_code == 2


def test_home_env_var_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUARK_HOME", str(tmp_path / "elsewhere"))
    assert Home.open().root == (tmp_path / "elsewhere").resolve()
