"""Built-in synthetic data: valid chat JSONL, deterministic, disjoint splits, learnable preferences."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
from pathlib import Path

import pytest

from quark.data import synth
from quark.errors import QuarkError
from quark.tokenizer import ROLES


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synth") / "chat"
    synth.write_chat(folder, seed=7, val_fraction=0.1)
    return folder


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_chat_jsonl_is_valid_openai_messages(chat_dir: Path) -> None:
    meta = json.loads((chat_dir / "meta.json").read_text())
    rows = _lines(chat_dir / "train.jsonl") + _lines(chat_dir / "val.jsonl")
    assert len(rows) == meta["counts"]["train"] + meta["counts"]["val"] > 500
    assert set(meta["kinds"]) == {"write", "explain", "dialogue", "tool", "refusal"}
    for row in rows:
        assert list(row) == ["messages"]
        messages = row["messages"]
        assert all(m["role"] in ROLES and isinstance(m["content"], str) and m["content"] for m in messages)
        assert messages[-1]["role"] == "assistant"
        first = 1 if messages[0]["role"] == "system" else 0
        assert messages[first]["role"] == "user"


def test_tool_traces_call_then_answer_with_the_real_result(chat_dir: Path) -> None:
    from quark.tokenizer.chat_template import tools_system_text
    from quark.tools.runner import registry

    rows = [r["messages"] for r in _lines(chat_dir / "train.jsonl")]
    offered = {tools_system_text(registry().schemas(registry().select(spec))) for spec in synth.TOOL_SETS}
    with_tools = [m for m in rows if any(text in m[0]["content"] for text in offered)]
    traces = [m for m in with_tools if any(x["role"] == "tool" for x in m)]
    assert len(traces) > 100 and len(with_tools) - len(traces) > 30  # some offer tools and need none
    backends = set()
    for messages in traces:
        roles = [m["role"] for m in messages]
        assert roles == ["system", "user", "assistant", "tool", "assistant"]
        call = json.loads(messages[2]["content"])
        assert call["name"] == "run_code" and list(call["arguments"]) == ["language", "code"]
        assert messages[2]["tool_calls"][0]["id"] == messages[3]["tool_call_id"]
        assert json.loads(messages[2]["tool_calls"][0]["function"]["arguments"]) == call["arguments"]
        result = json.loads(messages[3]["content"])  # a ToolResult's content, as the agent loop appends it
        assert result["ok"] and result["result"]["exit_code"] == 0
        backends.add(result["result"]["backend"])
        namespace: dict = {}
        exec(call["arguments"]["code"].replace("print(", "__result = ("), namespace)
        assert result["result"]["stdout"] == f"{namespace['__result']}\n"  # what the code prints
        assert result["result"]["stdout"].strip() in messages[4]["content"]
    assert backends and "unsandboxed" not in backends


def test_write_examples_answer_with_the_functions_real_source(chat_dir: Path) -> None:
    rows = [r["messages"] for r in _lines(chat_dir / "train.jsonl") + _lines(chat_dir / "val.jsonl")
            if r["messages"][-1]["content"].startswith("```python\n")]
    assert len(rows) > 100
    for messages in rows:
        source = messages[-1]["content"].removeprefix("```python\n").removesuffix("```")
        defined = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef))
        assert f"`{defined.name}(" in messages[-2]["content"]
    import shlex

    asked = [m for m in rows if "`quote(s)`" in m[-2]["content"]]
    assert asked and asked[0][-1]["content"] == f"```python\n{inspect.getsource(shlex.quote)}```"


def test_refusals_decline_unsafe_requests(chat_dir: Path) -> None:
    rows = _lines(chat_dir / "train.jsonl") + _lines(chat_dir / "val.jsonl")
    refusals = [r["messages"] for r in rows if "ransomware" in r["messages"][-2]["content"]]
    assert refusals and all(m[-1]["content"].startswith(synth.REFUSALS) for m in refusals)


def test_same_seed_same_bytes_other_seed_differs(chat_dir: Path, tmp_path: Path) -> None:
    synth.write_chat(tmp_path / "again", seed=7, val_fraction=0.1)
    synth.write_chat(tmp_path / "other", seed=8, val_fraction=0.1)
    for name in ("train.jsonl", "val.jsonl"):
        assert (tmp_path / "again" / name).read_bytes() == (chat_dir / name).read_bytes()
    assert (tmp_path / "other" / "train.jsonl").read_bytes() != (chat_dir / "train.jsonl").read_bytes()


def test_splits_are_disjoint_by_function(chat_dir: Path) -> None:
    def functions(path: Path) -> set[str]:
        names = set()
        for row in _lines(path):
            for message in row["messages"]:
                if message["role"] == "user" and message["content"].startswith("What does `"):
                    names.add(message["content"].split("`")[1])
        return names

    train, val = functions(chat_dir / "train.jsonl"), functions(chat_dir / "val.jsonl")
    assert val and train and not train & val
    train_lines = set((chat_dir / "train.jsonl").read_text().splitlines())
    assert not train_lines & set((chat_dir / "val.jsonl").read_text().splitlines())


def test_preferences_prefer_the_true_answer(tmp_path: Path) -> None:
    meta = synth.write_preferences(tmp_path / "prefs", seed=3, val_fraction=0.1)
    rows = _lines(tmp_path / "prefs" / "train.jsonl") + _lines(tmp_path / "prefs" / "val.jsonl")
    assert len(rows) == sum(meta["counts"].values()) > 300
    explained = 0
    for row in rows:
        assert set(row) == {"prompt", "chosen", "rejected"} and row["chosen"] != row["rejected"]
        if row["prompt"].startswith("What does `"):
            module, _, name = row["prompt"].split("`")[1].rpartition(".")
            doc = inspect.getdoc(getattr(importlib.import_module(module), name))
            assert row["chosen"] == " ".join(doc.split("\n\n")[0].split())
            explained += 1
    assert explained > 50


def test_nothing_is_written_when_generation_fails(tmp_path: Path) -> None:
    with pytest.raises(QuarkError, match="no documented functions"):
        synth.write_chat(tmp_path / "chat", modules=["no_such_module_anywhere"])
    with pytest.raises(QuarkError, match="validation fraction"):
        synth.write_chat(tmp_path / "chat", val_fraction=1.5)
    assert list(tmp_path.iterdir()) == []


def test_data_synth_command_writes_one_kind_per_dataset(quark) -> None:
    tools = quark.json("data", "synth", "--kind", "tools", "--name", "tools", "--seed", "7")
    folder = quark.home / "data" / "tools"
    assert tools["path"] == str(folder) and set(tools["kinds"]) == {"tool"}
    rows = _lines(folder / "train.jsonl") + _lines(folder / "val.jsonl")
    assert len(rows) == sum(tools["counts"].values()) == 300
    assert all("You can call tools" in row["messages"][0]["content"] for row in rows)
    # The tool traces are those of a full run with the same seed: asking for one kind changes nothing else.
    everything = [e.messages for e in synth.chat_examples(seed=7) if e.kind == "tool"]
    assert sorted(map(json.dumps, (r["messages"] for r in rows))) == sorted(map(json.dumps, everything))

    prefs = quark.json("data", "synth", "--kind", "preferences", "--name", "prefs", "--val-fraction", "0.2")
    assert prefs["format"] == "preference" and prefs["counts"]["val"] > 0.1 * prefs["counts"]["train"]
    assert set(_lines(quark.home / "data" / "prefs" / "val.jsonl")[0]) == {"prompt", "chosen", "rejected"}

    again = quark("data", "synth", "--kind", "all", "--name", "tools", expect=1)
    assert "dataset 'tools' already exists" in again.output
    assert quark("data", "synth", "--kind", "poems", "--name", "p", expect=2).exit_code == 2  # not a kind: usage error
