"""The Textual app driven by its pilot with the tiny model: streamed replies, slash commands,
checkpoints across restarts, stopping, the conversation list, copying and configurable keys."""

from __future__ import annotations

import asyncio

import pytest

from chat_fixtures import chat_home  # noqa: F401  (fixture)
from quark.errors import QuarkError
from quark.home import Home
from quark.tui.app import SHOW_WITHIN, STREAM_AHEAD, ChatApp, check_keys
from quark.tui.slash import parse_slash
from quark.tui.widgets import CheckpointPicker, ConversationItem, HelpScreen, MessageView, code_blocks

SIZE = (140, 40)


def _config(home: Home, extra: str = "", max_tokens: int = 6) -> None:
    home.config_path.write_text(f"[chat]\nmax_tokens = {max_tokens}\ntemperature = 1.0\nseed = 1\n{extra}")


async def _ready(app: ChatApp, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()


async def _type(pilot, text: str, *, keys: bool = False) -> None:
    """Enter `text` in the prompt: key by key, or (faster, for long texts) set it, then Enter."""
    if keys:
        await pilot.press(*text, "enter")
        return
    pilot.app.query_one("#prompt").value = text
    await pilot.press("enter")


async def _send(app: ChatApp, pilot, text: str, *, keys: bool = False) -> None:
    await _type(pilot, text, keys=keys)
    await _ready(app, pilot)


async def _first_paint(app: ChatApp) -> float | None:
    """The turn's first-text latency, which the app records after the screen paints that text: on
    a loaded machine the paint can come after the worker and the queue are done (5 s at most)."""
    for _ in range(500):
        if app.first_token_latency is not None:
            break
        await asyncio.sleep(0.01)
    return app.first_token_latency


def _views(app: ChatApp) -> list[MessageView]:
    return list(app.query(MessageView))


def test_stream_a_reply_save_quit_then_restart_load_and_the_prompt_carries_it(chat_home: Home) -> None:
    _config(chat_home)

    async def first_run() -> int:
        app = ChatApp(chat_home)
        async with app.run_test(size=SIZE) as pilot:
            await _ready(app, pilot)
            assert app.session.model_name == "tiny"
            await _send(app, pilot, "My name is Ada and we decided to use sqlite.", keys=True)
            reply = app.last_result.reply
            user, assistant = _views(app)
            assert user.text == "My name is Ada and we decided to use sqlite." and user.message_id is not None
            assert reply and assistant.markdown.source == reply  # streamed into the markdown view
            latency = await _first_paint(app)
            assert latency is not None and latency > 0
            stored = app.session.thread()
            assert stored[-1].content == reply and assistant.message_id == stored[-1].id
            await _type(pilot, "/save work", keys=True)
            await pilot.pause()
            assert [c["name"] for c in app.session.snapshots()] == ["work"]
            await pilot.press("ctrl+q")
            await pilot.pause()
            return app.session.conversation_id
        return -1

    async def second_run(saved_from: int) -> None:
        app = ChatApp(chat_home)
        async with app.run_test(size=SIZE) as pilot:
            await _ready(app, pilot)
            assert app.session.conversation_id == saved_from  # reopened where the last run quit
            assert _views(app)[0].text == "My name is Ada and we decided to use sqlite."
            await pilot.press("ctrl+n")
            await _type(pilot, "/load work")
            await pilot.pause()
            assert [v.text for v in _views(app)][0] == "My name is Ada and we decided to use sqlite."
            await _send(app, pilot, "What is my name?")
            prompt = app.session.last_prompt
            assert prompt.checkpoint == "work" and "Restored from checkpoint work." in prompt.system
            ada = next(m for m in prompt.memories if m.memory.text == "user's name is Ada")
            assert ada.source == "checkpoint" and f"[{ada.memory.ref}] user's name is Ada" in prompt.system
            assert app.session.conversation_id != saved_from
            status = str(app.query_one("#status").render())
            assert "model tiny" in status and f"context {prompt.tokens}+" in status and "/256" in status
            panel = str(app.query_one("#memory").render())
            assert "checkpoint work" in panel and "user's name is Ada" in panel

    asyncio.run(second_run(asyncio.run(first_run())))


def test_escape_stops_generation_and_the_partial_reply_is_kept(chat_home: Home) -> None:
    _config(chat_home, max_tokens=200)

    async def run() -> None:
        app = ChatApp(chat_home)
        async with app.run_test(size=SIZE) as pilot:
            await _ready(app, pilot)
            prompt = app.query_one("#prompt")
            prompt.value = "Tell me a very long story about the sea."
            # Submit without pilot.press: it waits for the app to go idle, i.e. for the whole reply.
            prompt.action_send()
            await _first_paint(app)
            await pilot.press("escape")
            await _ready(app, pilot)
            result = app.last_result
            assert result.finish_reason == "cancelled" and result.completion_tokens < 150
            stored = app.session.thread()[-1]
            assert stored.content == result.reply and stored.meta["finish_reason"] == "cancelled"
            assert "stopped" in str(app.query_one("#status").render())

    asyncio.run(run())


def test_the_message_shows_within_show_within_when_the_first_text_is_slow(chat_home: Home) -> None:
    """A turn's bubbles normally appear with the reply's first text (one layout); when that text
    is held back (here: the screen's back-pressure permits are all taken, as when it lags), the
    user's message still shows, with an empty reply under it, and the reply streams into it later."""
    _config(chat_home)

    async def run() -> None:
        app = ChatApp(chat_home)
        async with app.run_test(size=SIZE) as pilot:
            await _ready(app, pilot)
            for _ in range(STREAM_AHEAD):
                app._ahead.acquire()
            prompt = app.query_one("#prompt")
            prompt.value = "Hello there, what is sqlite?"
            prompt.action_send()
            for _ in range(int(SHOW_WITHIN * 100) + 300):
                if _views(app):
                    break
                await asyncio.sleep(0.01)
            await pilot.pause()
            user, reply = _views(app)
            assert user.text == "Hello there, what is sqlite?" and user.message_id is not None
            assert reply.markdown.source == "" and app.first_token_latency is None
            for _ in range(STREAM_AHEAD):
                app._ahead.release()
            await _ready(app, pilot)
            assert [v.role for v in _views(app)] == ["user", "assistant"]
            assert reply.markdown.source == app.last_result.reply and await _first_paint(app) is not None

    asyncio.run(run())


def test_slash_commands_memory_panel_and_history(chat_home: Home) -> None:
    _config(chat_home)

    async def run() -> None:
        app = ChatApp(chat_home)
        async with app.run_test(size=SIZE) as pilot:
            await _ready(app, pilot)
            await _send(app, pilot, "I prefer tabs. Let's use `pytest` for quark/chat.")
            await _type(pilot, "/pin answer in English")
            await _type(pilot, "/system You are terse.")
            await _type(pilot, "/search pytest")
            await pilot.pause()
            panel = str(app.query_one("#memory").render())
            assert "Search: pytest" in panel and "code referenced: `pytest`" in panel
            fact = next(m for m in app.session.memory_list() if m.text == "user prefers tabs")
            await _type(pilot, f"/forget {fact.ref}")
            await _type(pilot, "/frobnicate")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)  # a panel that stays, saying what was wrong
            assert "unknown command /frobnicate" in str(app.screen.query_one("#help-text").render())
            await pilot.press("escape")
            assert "user prefers tabs" not in {m.text for m in app.session.memory_list()}
            assert app.session.conversation().system_prompt == "You are terse."
            await _send(app, pilot, "second message")
            prompt = app.session.last_prompt
            assert prompt.system.startswith("You are terse.") and "answer in English" in prompt.system
            await _type(pilot, "/save picked")
            await _type(pilot, "/checkpoints")
            await pilot.pause()
            assert isinstance(app.screen, CheckpointPicker)
            before = app.session.conversation_id
            await pilot.press("enter")  # load the highlighted (only) checkpoint into this conversation
            await pilot.pause()
            assert len(app.screen_stack) == 1 and app.session.conversation_id == before
            assert app.session.conversation().restored["checkpoint"] == "picked"  # carried into the next prompt
            await _type(pilot, "/model nope")
            await pilot.pause()
            assert any("unknown model 'nope'" in n.message for n in app._notifications)
            assert app.session.model_name == "tiny"
            # Up walks back through what was sent, commands included.
            await pilot.press("up")
            assert app.query_one("#prompt").value == "/model nope"
            await pilot.press("up", "up", "up")
            assert app.query_one("#prompt").value == "second message"
            await pilot.press("down")
            assert app.query_one("#prompt").value == "/save picked"
            await pilot.press("down", "down", "down")
            assert app.query_one("#prompt").value == ""

    asyncio.run(run())


def test_conversation_list_keys_from_config_and_copy_actions(chat_home: Home) -> None:
    _config(chat_home, '[keys]\nnew_conversation = "ctrl+t"\ncopy_code = "ctrl+g"\n')

    async def run() -> None:
        app = ChatApp(chat_home)
        async with app.run_test(size=SIZE) as pilot:
            await _ready(app, pilot)
            await _send(app, pilot, "Here is code:\n\n```python\nprint('hi')\n```\n")
            first = app.session.conversation_id
            await pilot.press("ctrl+y")  # copy the last reply
            assert app.clipboard == app.last_result.reply
            _views(app)[0].focus()
            await pilot.pause()
            await pilot.press("ctrl+g")  # copy_code, rebound in config.toml
            assert app.clipboard == "print('hi')\n"
            await pilot.press("ctrl+t")  # new_conversation, rebound in config.toml
            await pilot.pause()
            assert app.session.conversation_id != first and _views(app) == []
            app.query_one("#prompt").focus()
            await _send(app, pilot, "a second conversation about gardening")
            items = list(app.query(ConversationItem))
            assert [i.conversation_id for i in items] == [app.session.conversation_id, first]
            await pilot.press("f2", "escape")  # Escape closes the dialog (Stop steps aside when idle)
            await pilot.pause()
            assert len(app.screen_stack) == 1
            await pilot.press("f2")  # rename
            await pilot.pause()
            await pilot.press("ctrl+a", "ctrl+k", *"Gardening", "enter")
            await pilot.pause()
            assert app.session.conversation().title == "Gardening"
            await pilot.press("ctrl+f", *"code")  # search the list: titles and what was said
            await pilot.pause()
            assert [i.conversation_id for i in app.query(ConversationItem)] == [first]
            app.query_one("#conversations").focus()
            await pilot.press("enter")  # open it
            await pilot.pause()
            assert app.session.conversation_id == first and _views(app)[0].text.startswith("Here is code:")
            await pilot.press("f8", "y")  # delete it, after confirming
            await pilot.pause()
            assert first not in [c.id for c in app.session.conversations()]

    asyncio.run(run())


def test_slash_parsing_and_code_blocks() -> None:
    assert parse_slash("hello") is None and parse_slash("//not a command") is None
    assert parse_slash("/save  work ").argument == "work" and parse_slash("/LOAD x new").name == "load"
    assert parse_slash("/nope").name == "help"
    assert code_blocks("text\n```py\na = 1\n```\n\n    indented\n") == ["a = 1\n", "indented\n"]


def test_key_bindings_in_config_must_name_a_binding(chat_home: Home) -> None:
    check_keys({"stop": "ctrl+s", "new_conversation": "ctrl+t"}, chat_home.config_path)
    with pytest.raises(QuarkError, match=r"unknown key binding keys.stpo \(bindings: .*stop"):
        check_keys({"stpo": "ctrl+s"}, chat_home.config_path)
