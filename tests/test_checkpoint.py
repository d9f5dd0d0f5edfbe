"""Checkpoints: save, show, list, diff, load into a new or the current conversation, export and
import into a fresh home, delete, and the errors for bad names and malformed files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from chat_fixtures import FAST, chat_home, copy_models, session  # noqa: F401  (fixtures)
from conftest import Quark
from quark.chat import ChatSession
from quark.db import transaction
from quark.home import Home


@pytest.fixture
def worked(session: ChatSession) -> ChatSession:
    """A conversation with facts, a pinned note, a summary, a retrieved memory and a tool output."""
    params = session.params(**FAST, seed=7)
    session.send("My name is Ada. We decided to use sqlite for quark/db.py.", params)
    session.pin("always answer in English")
    for i in range(8):
        session.send(f"Filler turn {i} about rivers, bridges and the weather in the valley.", params)
    session.send("What did we decide about sqlite?", params)
    with transaction(session.conn):
        session.conn.execute("INSERT INTO tool_calls(conversation_id, tool, arguments, result, ok, created_at) "
                             "VALUES (?, 'run_tests', '{\"path\": \"tests\"}', '12 passed', 1, ?)",
                             (session.conversation_id, time.time()))
    return session


def test_save_show_list_and_the_snapshot_content(worked: ChatSession, quark: Quark) -> None:
    assert quark.json("checkpoint", "save", "work", "--conversation", str(worked.conversation_id))["name"] == "work"
    shown = quark.json("checkpoint", "show", "work")
    thread = worked.thread()
    assert [m["content"] for m in shown["messages"]] == [m.content for m in thread]
    assert shown["tip"] == thread[-1].id and shown["summary"] == worked.conversation().summary != ""
    assert {"user's name is Ada", "decision: use sqlite for quark/db.py"} <= {e["text"] for e in shown["entities"]}
    assert [p["text"] for p in shown["pinned"]] == ["always answer in English"]
    last_prompt = worked.last_prompt
    assert [r["text"] for r in shown["retrieved"]] == [m.memory.text for m in last_prompt.memories
                                                        if m.source == "retrieved"] != []
    tool_output = shown["tool_outputs"][0]
    assert tool_output["result"] == "12 passed" and tool_output["arguments"] == {"path": "tests"}
    assert [c["name"] for c in quark.json("checkpoint", "list")["checkpoints"]] == ["work"]
    human = quark("checkpoint", "show", "work").output
    assert "user's name is Ada" in human and "12 passed" in human
    assert "already exists" in quark("checkpoint", "save", "work", expect=1).output
    quark("checkpoint", "save", "work", "--force")


def test_load_into_a_new_conversation_and_the_next_prompt_carries_it(worked: ChatSession, quark: Quark) -> None:
    quark("checkpoint", "save", "work")
    loaded = quark.json("checkpoint", "load", "work")
    new_id = loaded["conversation_id"]
    assert new_id != worked.conversation_id
    assert f"restored work into conversation {new_id + 1}" in quark("checkpoint", "load", "work").output
    chat = ChatSession(worked.home, conversation_id=new_id)
    assert [m.content for m in chat.thread()] == [m.content for m in worked.thread()]
    result = chat.send("Where were we?", chat.params(**FAST, seed=8))
    prompt = result.prompt
    assert prompt.checkpoint == "work" and "Restored from checkpoint work." in prompt.system
    assert prompt.memories[0].memory.text == "always answer in English" and prompt.memories[0].source == "pinned"
    assert prompt.memories[1].source == "checkpoint"
    carried = {m.memory.text for m in prompt.memories + prompt.omitted_memories if m.source == "checkpoint"}
    assert {"user's name is Ada", "decision: use sqlite for quark/db.py"} <= carried  # in, or reported as left out
    restored_summary = chat.conversation().summary
    assert restored_summary.startswith(worked.conversation().summary)  # the snapshot's, then what this turn folded
    assert prompt.summary and set(prompt.summary) <= set(restored_summary.splitlines())
    following = chat.send("And then?", chat.params(**FAST, seed=9))  # carried once, then memory as usual
    assert following.prompt.checkpoint is None
    chat.close()


def test_load_into_the_current_conversation_branches_to_the_snapshot(worked: ChatSession) -> None:
    worked.save_snapshot("early")
    tip_before = worked.conversation().tip_id
    worked.send("Something said after the checkpoint.", worked.params(**FAST, seed=10))
    worked.load_snapshot("early", into="current")
    thread = worked.thread()
    assert thread[-1].id != tip_before and "Something said after the checkpoint." not in [m.content for m in thread]
    assert len(thread) == len(worked.store.thread(tip_before))
    assert worked.store.message(tip_before).content == thread[-1].content  # a copy of the same tip


def test_export_then_import_into_a_fresh_home_shows_the_same(worked: ChatSession, quark: Quark, tmp_path: Path,
                                                             tiny_model_home: Path) -> None:
    quark("checkpoint", "save", "work")
    out = tmp_path / "export" / "work.json"
    quark("checkpoint", "export", "work", "-o", str(out))
    fresh_home = copy_models(tiny_model_home, tmp_path / "fresh")
    fresh = Quark(fresh_home.root)
    assert fresh.json("checkpoint", "import", str(out))["name"] == "work"
    assert fresh.json("checkpoint", "show", "work") == quark.json("checkpoint", "show", "work")
    conversation = fresh.json("checkpoint", "load", "work")["conversation_id"]
    chat = ChatSession(fresh_home, conversation_id=conversation)
    assert [m.content for m in chat.thread()] == [m.content for m in worked.thread()]
    result = chat.send("What did we decide?", chat.params(**FAST, seed=11))
    assert result.prompt.checkpoint == "work"
    assert "decision: use sqlite for quark/db.py" in {m.memory.text for m in result.prompt.memories
                                                     + result.prompt.omitted_memories}
    assert chat.memories.missing_vectors(chat.embedder.name, 100) == []  # restored memories got embedded
    chat.close()
    assert "already exists" in fresh("checkpoint", "import", str(out), expect=1).output
    assert fresh.json("checkpoint", "import", str(out), "--name", "work-2")["name"] == "work-2"


def test_diff_and_delete(worked: ChatSession, quark: Quark) -> None:
    quark("checkpoint", "save", "before")
    worked.send("Also, I prefer dark mode.", worked.params(**FAST, seed=12))
    worked.pin("use metric units")
    quark("checkpoint", "save", "after")
    diff = quark.json("checkpoint", "diff", "before", "after")
    assert not diff["same"]
    assert "user prefers dark mode" in diff["changes"]["entities"]["added"]
    assert diff["changes"]["pinned"] == {"added": ["use metric units"], "removed": []}
    assert diff["changes"]["messages"]["only_b"] == 2 and diff["changes"]["messages"]["only_a"] == 0
    assert quark.json("checkpoint", "diff", "before", "before")["same"] is True
    quark("checkpoint", "delete", "before")
    assert [c["name"] for c in quark.json("checkpoint", "list")["checkpoints"]] == ["after"]
    assert "no checkpoint 'before'" in quark("checkpoint", "show", "before", expect=1).output


@pytest.mark.parametrize("args", [
    ["checkpoint", "save", "../escape"], ["checkpoint", "save", "a/b"], ["checkpoint", "save", "bad\x07name"],
    ["checkpoint", "show", ".."], ["checkpoint", "load", "x\ny"], ["checkpoint", "delete", "missing"],
    ["checkpoint", "load", "work", "--into", "sideways"],
])
def test_bad_names_exit_1_with_one_line(worked: ChatSession, quark: Quark, args) -> None:
    result = quark(*args, expect=1)
    assert result.output.startswith("error:") and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "(top level)"),
    (json.dumps({"format": "quark-checkpoint", "version": 1, "name": "x/y", "created_at": 1.0,
                 "conversation": {"title": "t"}}), "field name: invalid checkpoint name"),
    (json.dumps({"format": "quark-checkpoint", "version": 1, "name": "x", "created_at": 1.0,
                 "conversation": {"title": "t"}, "tip": 5}), "tip is 5 but the last message is None"),
    (json.dumps({"format": "quark-checkpoint", "version": 1, "name": "x", "created_at": "soon",
                 "conversation": {"title": "t"}}), "field created_at"),
    (json.dumps({"format": "other", "version": 1, "name": "x", "created_at": 1.0, "conversation": {"title": "t"}}),
     "field format"),
])
def test_malformed_imports_exit_1_with_one_line_and_store_nothing(quark: Quark, tmp_path: Path, content,
                                                                  message) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = quark("checkpoint", "import", str(path), expect=1)
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert quark.json("checkpoint", "list")["checkpoints"] == []
    assert "no such file" in quark("checkpoint", "import", str(tmp_path / "missing.json"), expect=1).output


def test_fresh_home_without_conversations(quark: Quark, home: Path) -> None:
    assert "no conversations yet" in quark("checkpoint", "save", "x", expect=1).output
    Home.open(home)
    assert quark.json("checkpoint", "list") == {"checkpoints": []}
