"""The chat session, the prompt builder's budget, the scripted `quark chat`, and two processes
chatting into one home."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from chat_fixtures import FAST, chat_home, session  # noqa: F401  (fixtures)
from quark.chat import ChatSession
from quark.chat.prompt import PromptInputs, PromptMemory, build_prompt
from quark.chat.store import Message
from quark.db import connect
from quark.errors import QuarkError
from quark.home import Home
from quark.memory.store import Memory
from quark.modelfolder import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tiny_model_home: Path):
    return load_tokenizer(tiny_model_home / "models" / "tiny")


def _turns(n: int) -> list[Message]:
    roles = ["user", "assistant"]
    return [Message(i + 1, 1, i or None, roles[i % 2], f"Turn {i}: we talked about topic {i} and its many details.",
                    None) for i in range(n)]


def test_prompt_fits_the_context_folds_the_oldest_turns_and_reports_them(tokenizer) -> None:
    memories = [PromptMemory(Memory(i, "fact", "name", f"fact number {i} about the user", None, 1, 0.0), "retrieved")
                for i in range(1, 30)]
    inputs = PromptInputs(system_prompt="You are Quark.", user_message="What did we say about topic 3?",
                          profile_line="User profile: tone neutral.", memories=memories,
                          summary=["- user: an older line"], window=_turns(20))
    prompt = build_prompt(tokenizer, inputs, context_length=256, reply_tokens=32)
    assert prompt.tokens <= 256 - 32
    assert prompt.ids == tokenizer.encode_chat(prompt.messages)
    assert prompt.folded and prompt.window  # oldest turns folded, newest kept, in order
    assert [m.id for m in prompt.folded + prompt.window] == list(range(1, 21))
    assert len(prompt.folded_lines) == len(prompt.folded)
    assert prompt.folded_lines[0] == "- user: Turn 0: we talked about topic 0 and its many details."
    # Everything that did not make it in is accounted for, nothing vanishes silently.
    assert len(prompt.memories) + len(prompt.omitted_memories) == len(memories) and prompt.omitted_memories
    assert len(prompt.summary) + prompt.omitted_summary_lines == 1 + len(prompt.folded)
    for memory in prompt.memories:
        assert f"[m{memory.memory.id}] {memory.memory.text}" in prompt.system


def test_window_budget_and_a_message_too_long_for_the_context(tokenizer) -> None:
    window = _turns(6)
    small = build_prompt(tokenizer, PromptInputs("S", "hi", window=window), context_length=256, reply_tokens=16,
                         window_tokens=40)
    assert 0 < len(small.folded) < 6 and small.sections["window"] <= 40
    roomy = build_prompt(tokenizer, PromptInputs("S", "hi", window=window), context_length=4096, reply_tokens=16)
    assert roomy.folded == [] and len(roomy.window) == 6
    with pytest.raises(QuarkError,
                       match=r"tokens, but the model's context of 256 tokens leaves 192 after reserving 64"):
        build_prompt(tokenizer, PromptInputs("S", "word " * 400), context_length=256, reply_tokens=64)


def test_a_turn_stores_the_thread_memories_and_profile(session: ChatSession) -> None:
    result = session.send("My name is Ada. We decided to use sqlite.", session.params(**FAST, seed=1))
    second = session.send("And I prefer tabs over spaces.", session.params(**FAST, seed=2))
    assert second.conversation_id == result.conversation_id
    thread = session.thread()
    assert [m.role for m in thread] == ["user", "assistant", "user", "assistant"]
    assert [m.parent_id for m in thread] == [None, thread[0].id, thread[1].id, thread[2].id]
    assert thread[1].content == result.reply and thread[1].reply_to == thread[0].id
    assert thread[1].meta["finish_reason"] == result.finish_reason
    facts = {m.text for m in session.memory_list() if m.kind == "fact"}
    assert {"user's name is Ada", "decision: use sqlite", "user prefers tabs over spaces"} <= facts
    assert session.profile()["turns"] == 2
    assert [m.id for m in second.prompt.window] == [thread[0].id, thread[1].id]


def test_stopping_a_reply_keeps_what_was_generated(session: ChatSession) -> None:
    cancel = threading.Event()
    turn = session.begin("Tell me a long story.", session.params(max_tokens=40, temperature=1.0, seed=3))
    pieces = []
    for piece in session.stream(turn, cancel):
        pieces.append(piece)
        cancel.set()
    result = session.finish(turn)
    assert result.finish_reason == "cancelled" and result.reply == "".join(pieces)
    assert session.thread()[-1].content == result.reply and session.thread()[-1].meta["finish_reason"] == "cancelled"


def test_fork_continues_from_an_earlier_message_and_keeps_the_other_branch(session: ChatSession) -> None:
    params = session.params(**FAST, seed=4)
    first = session.send("first question", params)
    session.send("second question", params)
    session.fork(first.assistant_message_id)
    branch = session.send("a different second question", params)
    thread = session.thread()
    assert [m.content for m in thread if m.role == "user"] == ["first question", "a different second question"]
    assert thread[2].parent_id == first.assistant_message_id and branch.conversation_id == first.conversation_id
    assert session.store.count_messages(first.conversation_id) == 6  # the old branch is still there


def _chat_worker(home: str, conversation_id: int, worker: int, turns: int, start, errors) -> None:
    import torch

    torch.set_num_threads(1)
    try:
        chat = ChatSession(Home.open(home), conversation_id=conversation_id)
        chat.use_model()
        start.wait(timeout=120)  # both processes write at the same time, not one after the other
        for i in range(turns):
            chat.send(f"worker {worker} message {i}", chat.params(max_tokens=2, temperature=1.0, seed=i))
        chat.close()
    except BaseException as exc:  # reported to the parent, which fails the test
        errors.put(f"worker {worker}: {type(exc).__name__}: {exc}")


def test_two_processes_chatting_into_one_conversation_lose_nothing(chat_home: Home) -> None:
    setup = ChatSession(chat_home)
    conversation = setup.new_conversation("shared").id
    setup.close()
    context = mp.get_context("spawn")
    errors, start = context.Queue(), context.Barrier(2)
    workers = [context.Process(target=_chat_worker, args=(str(chat_home.root), conversation, w, 50, start, errors))
               for w in range(2)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=240)
    assert errors.empty(), errors.get()
    assert all(p.exitcode == 0 for p in workers)
    conn = connect(chat_home.db_path)
    users = [r[0] for r in conn.execute("SELECT content FROM messages WHERE role = 'user' ORDER BY id")]
    assert sorted(users) == sorted(f"worker {w} message {i}" for w in range(2) for i in range(50))
    replies = conn.execute("SELECT count(*), count(DISTINCT reply_to) FROM messages "
                           "WHERE role = 'assistant'").fetchone()
    assert tuple(replies) == (100, 100)
    chat = ChatSession(chat_home, conversation_id=conversation)
    assert len(chat.thread()) == 200  # one linear thread: every message attached to the tip of its time
    assert conn.execute("SELECT count(DISTINCT source_message_id) FROM memories WHERE kind = 'chunk' AND "
                        "tag = 'user'").fetchone()[0] == 100
    chat.close()
    conn.close()


def test_quark_chat_json_reports_reply_conversation_memories_and_summary(chat_home: Home, quark) -> None:
    first = quark.json("chat", "--message", "My name is Ada and I like sqlite.", "--max-tokens", "3",
                       "--temperature", "1", "--seed", "1")
    assert first["conversation_id"] == 1 and isinstance(first["reply"], str)
    assert {"memories", "checkpoint", "summarized", "usage"} <= set(first)
    again = quark.json("chat", "--message", "What is my name?", "--conversation", "1", "--max-tokens", "3",
                       "--seed", "2")
    assert again["conversation_id"] == 1 and again["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"]
    assert quark.json("chat", "--message", "x", "--max-tokens", "2", "--seed", "3")["conversation_id"] == 2


@pytest.mark.parametrize("args, message", [
    (["--message", "  "], "the message is empty"),
    (["--message", "hi", "--conversation", "99"], "no conversation 99"),
    (["--message", "hi", "--model", "../etc"], "invalid model name"),
    (["--message", "hi", "--model", "nope"], "unknown model 'nope'"),
    (["--message", "word " * 600], "shorten the message (nothing was cut)"),
    (["--message", "hi", "--checkpoint", "missing"], "no checkpoint 'missing'"),
])
def test_quark_chat_bad_input_is_one_line_and_exit_1(chat_home: Home, quark, args, message) -> None:
    result = quark("chat", *args, expect=1)
    assert message in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("config, message", [
    ("[chat]\nmax_token = 5\n", "unknown key chat.max_token"),
    ('[chat]\ntemperature = "hot"\n', "chat.temperature = 'hot' should be int"),
    ("[keys]\nstop = 3\n", "keys.stop = 3 should be a key name"),
    ("[chat\n", "line 1"),
])
def test_a_bad_config_file_is_one_line_naming_file_and_key(chat_home: Home, quark, config, message) -> None:
    chat_home.config_path.write_text(config)
    result = quark("chat", "--message", "hi", expect=1)
    assert message in result.output and str(chat_home.config_path) in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_python_m_quark_chat_reads_the_message_from_stdin(chat_home: Home) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "quark", "chat", "--home", str(chat_home.root), "--max-tokens", "3",
                           "--temperature", "1", "--seed", "5"], input="My name is Grace.\n", capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "conversation 1" in done.stderr
    conn = connect(chat_home.db_path)
    assert conn.execute("SELECT content FROM messages WHERE role = 'user'").fetchone()[0] == "My name is Grace.\n"
    assert conn.execute("SELECT text FROM memories WHERE kind = 'fact'").fetchone()[0] == "user's name is Grace"
    conn.close()
