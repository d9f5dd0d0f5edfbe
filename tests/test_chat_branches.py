"""The message tree as a chat user drives it: edit and resend, regenerate, move between siblings;
per-conversation settings; feedback on replies and the DPO pairs it yields (library and CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chat_fixtures import FAST, chat_home, session  # noqa: F401  (fixtures)
from quark.align.data import read_pairs
from quark.chat import ChatSession
from quark.chat.feedback import FeedbackStore
from quark.errors import QuarkError
from quark.home import Home


def _prompt_text(result) -> str:
    return json.dumps(result.prompt.messages)


def test_edit_and_resend_keeps_both_branches_and_the_prompt_carries_only_the_edit(session: ChatSession) -> None:
    params = session.params(**FAST, seed=4)
    first = session.send("My favourite colour is turquoise.", params)
    session.send("Tell me about boats.", params)
    edited = session.edit_and_resend(first.user_message_id, "My favourite colour is crimson.", params)
    thread = session.thread()
    assert [m.content for m in thread if m.role == "user"] == ["My favourite colour is crimson."]
    prompt = _prompt_text(edited)
    # The old question is on another branch: neither its text nor the memories learnt from it
    # (the fact, the chunk) reach the new reply's prompt.
    assert "crimson" in prompt and "turquoise" not in prompt and "boats" not in prompt
    assert session.store.count_messages(first.conversation_id) == 6  # the old branch is kept, whole
    siblings, index = session.siblings(edited.user_message_id)
    assert [m.id for m in siblings] == [first.user_message_id, edited.user_message_id] and index == 1
    assert session.branches(thread) == {edited.user_message_id: (2, 2)}

    # Back to the old branch: its newest message is the tip again, and the next prompt has it.
    session.switch_sibling(edited.user_message_id, -1)
    assert [m.content for m in session.thread() if m.role == "user"] == ["My favourite colour is turquoise.",
                                                                         "Tell me about boats."]
    after = session.send("And sails?", params)
    assert "turquoise" in _prompt_text(after) and "crimson" not in _prompt_text(after)

    with pytest.raises(QuarkError, match="only your own messages can be edited"):
        session.edit_and_resend(first.assistant_message_id, "x", params)
    with pytest.raises(QuarkError, match="no message 999"):
        session.edit_and_resend(999, "x", params)


def test_regenerate_makes_a_sibling_and_switching_changes_the_next_prompt(session: ChatSession) -> None:
    params = session.params(**FAST, seed=1)
    first = session.send("Write a word.", params)
    again = session.regenerate(first.assistant_message_id, params)  # same seed: offset, so a new draw
    assert again.user_message_id == first.user_message_id and again.reply != first.reply
    siblings, index = session.siblings(again.assistant_message_id)
    assert [m.id for m in siblings] == [first.assistant_message_id, again.assistant_message_id] and index == 1
    assert session.thread()[-1].id == again.assistant_message_id
    assert first.reply not in _prompt_text(session.send("Next?", params))

    session.switch_sibling(again.assistant_message_id, -1)  # the first reply's branch (it has no later turn)
    assert session.thread()[-1].id == first.assistant_message_id
    following = session.send("Next?", params)
    window = [m["content"] for m in following.prompt.messages if m["role"] == "assistant"]
    assert window == [first.reply]
    # Regenerating the reply to a question can also name the question itself.
    third = session.regenerate(first.user_message_id, params)
    assert len(session.siblings(third.assistant_message_id)[0]) == 3


def test_settings_persist_across_sessions_and_change_sampling(chat_home: Home, quark) -> None:
    chat = ChatSession(chat_home)
    conversation = chat.new_conversation("settings").id
    chat.set_setting("max_tokens", "2")
    chat.set_setting("temperature", "1.0")
    chat.set_setting("seed", 5)
    chat.set_setting("system", "You are terse.")
    with pytest.raises(QuarkError, match=r"setting top_p = 2: must be in \(0, 1\]"):
        chat.set_setting("top_p", "2")
    with pytest.raises(QuarkError, match="unknown setting 'warmth'"):
        chat.set_setting("warmth", "1")
    with pytest.raises(QuarkError, match="model 'tiny' has no adapter 'nope'"):
        chat.set_setting("adapter", "nope")
    chat.close()

    again = ChatSession(chat_home, conversation_id=conversation)  # a new session: read back from quark.db
    assert again.settings().as_dict() == {"max_tokens": 2, "temperature": 1.0, "seed": 5}
    params = again.params()
    assert (params.max_tokens, params.temperature, params.seed) == (2, 1.0, 5)
    replies = [again.send(f"Tell me a long story, take {i}.") for i in range(2)]
    assert all(r.completion_tokens <= 2 for r in replies)
    assert replies[0].prompt.system.startswith("You are terse.")
    assert again.params(max_tokens=4).max_tokens == 4  # an explicit value (a script's --max-tokens) wins
    again.set_setting("max_tokens", None)  # back to config.toml's default
    assert again.params().max_tokens == again.config.max_tokens
    again.close()
    # Scripted chat uses them too.
    out = quark.json("chat", "--conversation", str(conversation), "--message", "Once more, at length.")
    assert out["usage"]["completion_tokens"] <= again.config.max_tokens


def test_a_conversation_adapter_is_merged_for_its_turns_only(session: ChatSession, chat_home: Home) -> None:
    from quark.align.lora import add_lora, save_adapter
    from quark.align.recipe import LoraSettings
    from quark.modelfolder import load_model

    save_adapter(add_lora(load_model(chat_home.model_dir("tiny")), LoraSettings(enabled=True, rank=2), "tiny"),
                 chat_home.model_dir("tiny") / "adapters" / "fresh")
    params = session.params(**FAST)
    session.set_setting("adapter", "fresh")
    tuned = session.conversation_id
    assert session.send("Hello there.", params).model == "tiny+fresh"
    session.start_new()
    assert session.send("Another conversation.", params).model == "tiny"  # it set no adapter
    session.select(tuned)
    assert session.send("Back again.", params).model == "tiny+fresh"


def _rated_home(session: ChatSession) -> dict[str, int]:
    params = session.params(**FAST, seed=2)
    a = session.send("Name a colour.", params)
    b = session.regenerate(a.assistant_message_id, params)
    c = session.regenerate(a.assistant_message_id, params)
    assert len({a.reply, b.reply, c.reply}) == 3 and all(r.reply.strip() for r in (a, b, c))
    session.rate(a.assistant_message_id, 1)
    session.rate(b.assistant_message_id, -1)
    return {"a": a.assistant_message_id, "b": b.assistant_message_id, "c": c.assistant_message_id,
            "user": a.user_message_id}


def test_feedback_pairs_follow_ratings_and_the_better_mark(session: ChatSession) -> None:
    ids = _rated_home(session)
    store = FeedbackStore(session.conn)
    pairs = store.pairs().pairs
    text = {m.id: m.content for m in session.store.children(session.conversation_id, ids["user"])}
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [(text[ids["a"]], text[ids["b"]])]
    assert pairs[0]["prompt"][-1] == {"role": "user", "content": "Name a colour."}
    assert pairs[0]["prompt"][0]["role"] == "system"
    # Marking c better pairs it with each sibling; the +/- pair stays.
    session.mark_best(ids["c"])
    found = {(p["chosen"], p["rejected"]) for p in store.pairs().pairs}
    assert found == {(text[ids["c"]], text[ids["a"]]), (text[ids["c"]], text[ids["b"]]),
                     (text[ids["a"]], text[ids["b"]])}
    session.mark_best(ids["a"])  # one better reply per message
    assert store.get(ids["c"]).best is False and store.get(ids["a"]).best is True
    session.rate(ids["a"], 0)
    assert store.get(ids["a"]).rating == 0
    with pytest.raises(QuarkError, match="only replies"):
        session.rate(ids["user"], 1)
    with pytest.raises(QuarkError, match="a rating is \\+1, -1 or 0"):
        session.rate(ids["a"], 5)
    only = session.send("A lone question.", session.params(**FAST, seed=9))
    with pytest.raises(QuarkError, match="the only reply to its message"):
        session.mark_best(only.assistant_message_id)


def test_feedback_export_and_dpo_from_feedback(chat_home: Home, quark, tmp_path: Path) -> None:
    line = quark("chat", "feedback", "export", "-o", str(tmp_path / "none.jsonl"), expect=1).output.strip()
    assert line.splitlines()[-1].startswith("error: no preference pairs in this home's chat feedback")
    assert not (tmp_path / "none.jsonl").exists()
    line = quark("finetune", "dpo", "--model", "tiny", "--from-feedback", "--name", "fb", expect=1).output
    assert "no preference pairs" in line.strip().splitlines()[-1] and "Traceback" not in line
    assert quark("chat", "feedback", "rate", "999", "good", expect=1).output.strip().splitlines()[-1] == \
        "error: no message 999"

    chat = ChatSession(chat_home)
    ids = _rated_home(chat)
    chat.close()
    assert quark.json("chat", "feedback", "best", str(ids["c"]))["best"] is True
    assert quark.json("chat", "feedback", "rate", str(ids["c"]), "good")["rating"] == 1
    out = quark.json("chat", "feedback", "export", "-o", str(tmp_path / "pairs.jsonl"))
    assert out["pairs"] == 3 and out["rated_replies"] == 3
    pairs = read_pairs(tmp_path / "pairs.jsonl")  # exactly what `quark finetune dpo --data` reads
    assert len(pairs) == 3 and all(set(json.loads(row)) == {"prompt", "chosen", "rejected"}
                                   for row in (tmp_path / "pairs.jsonl").read_text().splitlines())

    trained = quark.json("finetune", "dpo", "--model", "tiny", "--from-feedback", "--name", "fb",
                         "--set", "train.seq_len=64", "--set", "train.micro_batch=3", "--max-steps", "3",
                         "--eval-every", "0", "--save-every", "0")
    assert trained["steps"] == 3 and trained["train_pairs"] == 3
    run = json.loads((chat_home.run_dir("fb") / "run.json").read_text())
    assert run["data"]["train"].endswith("runs/fb/feedback-pairs.jsonl")
    assert (chat_home.model_dir("fb") / "model.safetensors").is_file()
    again = quark("finetune", "dpo", "--model", "tiny", "--from-feedback", "--name", "fb", expect=1).output
    assert "already exists" in again.strip().splitlines()[-1]
    both = quark("finetune", "dpo", "--model", "tiny", "--from-feedback", "--data", "x", "--name", "fb2",
                 expect=1).output
    assert "give one of them" in both.strip().splitlines()[-1]
    no_model = quark("finetune", "dpo", "--from-feedback", "--name", "fb3", expect=1).output
    assert "--from-feedback needs --model" in no_model.strip().splitlines()[-1]
    assert not chat_home.run_dir("fb3").exists()


def test_scripted_regenerate_edit_and_settings(chat_home: Home, quark) -> None:
    sampled = ("--max-tokens", "3", "--temperature", "1.0", "--seed", "1")
    first = quark.json("chat", "--message", "Name a fruit.", *sampled)
    again = quark.json("chat", "--regenerate", str(first["assistant_message_id"]), *sampled)
    assert again["user_message_id"] == first["user_message_id"]
    assert again["assistant_message_id"] != first["assistant_message_id"]
    edited = quark.json("chat", "--edit", str(first["user_message_id"]), "--message", "Name a vegetable.", *sampled)
    assert edited["conversation_id"] == first["conversation_id"] and edited["user_message_id"] > again[
        "assistant_message_id"]
    conversation = str(first["conversation_id"])
    shown = quark.json("chat", "settings", conversation, "temperature=0.3", "system=Be brief.")
    assert shown["settings"] == {"temperature": 0.3} and shown["system_prompt"] == "Be brief."
    assert quark.json("chat", "settings", conversation, "temperature=")["settings"] == {}
    for args, says in [(("chat", "settings", conversation, "temperature"), "give settings as KEY=VALUE"),
                       (("chat", "settings", "99"), "no conversation 99"),
                       (("chat", "--regenerate", "999"), "no message 999"),
                       (("chat", "--regenerate", "1", "--message", "x"), "takes no --message"),
                       (("chat", "--edit", str(first["assistant_message_id"]), "--message", "x"),
                        "only your own messages can be edited")]:
        line = quark(*args, expect=1).output.strip().splitlines()[-1]
        assert says in line, (args, line)


def test_the_summary_follows_the_branch_shown(chat_home: Home) -> None:
    from quark.chat.config import ChatConfig

    chat = ChatSession(chat_home, config=ChatConfig(window_tokens=40))  # a small window: older turns fold
    params = chat.params(**FAST, seed=3)
    try:
        first = chat.send("We talked about sailing boats on the lake.", params)
        for text in ("Then about harbours and their tides.", "Then about anchors and chains.",
                     "Then about knots and ropes."):
            chat.send(text, params)
        assert "sailing boats" in chat.conversation().summary  # folded on the first branch
        edited = chat.edit_and_resend(first.user_message_id, "We talked about mountain hiking.", params)
        assert chat.conversation().summary == "" and not edited.prompt.folded_lines
        assert "sailing" not in _prompt_text(edited)
        chat.switch_sibling(edited.user_message_id, -1)
        back = chat.send("And the weather?", params)
        summary = chat.conversation().summary
        assert "sailing boats" in summary and "hiking" not in summary and "hiking" not in _prompt_text(back)
    finally:
        chat.close()
