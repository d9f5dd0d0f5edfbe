"""The chat app never loses what the user typed, keeps focus where they expect it, and its search,
memory panel and help behave: driven by the Textual pilot with the tiny model (256-token context)."""

from __future__ import annotations

import asyncio

from textual import events
from textual.widgets import Footer, Input

from chat_fixtures import chat_home  # noqa: F401  (fixture)
from quark.home import Home
from quark.tui.app import ChatApp
from quark.tui.widgets import Composer, ConversationItem, HelpScreen, MessageView
from test_tui import SIZE, _config, _first_paint, _ready, _send, _type, _views


def test_a_74_line_paste_arrives_whole_and_enter_sends_while_ctrl_j_adds_a_line(chat_home: Home) -> None:
    _config(chat_home)
    pasted = "\n".join("ab"[i % 2] for i in range(74))

    async def run() -> None:
        app = ChatApp(chat_home)
        async with app.run_test(size=SIZE) as pilot:
            await _ready(app, pilot)
            prompt = app.query_one("#prompt", Composer)
            assert app.focused is prompt
            app.post_message(events.Paste(pasted))  # what the driver posts for a bracketed paste
            await pilot.pause()
            assert prompt.text == pasted, (len(prompt.text), len(pasted), repr(prompt.text[-20:]))
            assert prompt.document.line_count == 74
            await pilot.press("enter")
            await _ready(app, pilot)
            sent = app.session.thread()[-2]
            assert sent.role == "user" and sent.content == pasted and _views(app)[0].text == pasted
            assert prompt.text == ""
            await pilot.press(*"one", "ctrl+j", *"two")  # a line break that does not send
            assert prompt.text == "one\ntwo" and len(app.session.thread()) == 2
            await pilot.press("enter")
            await _ready(app, pilot)
            assert app.session.thread()[-2].content == "one\ntwo"

    asyncio.run(run())


def test_text_typed_during_a_stream_is_kept_and_a_refused_message_stays_in_the_box(chat_home: Home) -> None:
    _config(chat_home, max_tokens=200)

    async def run() -> None:
        app = ChatApp(chat_home)
        async with app.run_test(size=SIZE) as pilot:
            await _ready(app, pilot)
            prompt = app.query_one("#prompt", Composer)
            prompt.value = "Tell me a very long story about the sea."
            prompt.action_send()
            await _first_paint(app)
            prompt.value = "and then?"
            # Enter while the reply streams, posted as the driver does (pilot.press would wait
            # for the app to go idle, that is for the whole reply).
            app.post_message(events.Key("enter", None))
            for _ in range(500):
                if app._notifications:
                    break
                await asyncio.sleep(0.01)
            assert app._cancel is not None, "the reply ended before Enter was handled"
            assert prompt.text == "and then?"
            assert any("stays in the box" in n.message for n in app._notifications)
            await _ready(app, pilot)
            assert prompt.text == "and then?" and len(app.session.thread()) == 2  # not sent, not lost

            too_long = "word " * 250  # far beyond the 256-token context
            prompt.value = too_long
            await pilot.press("enter")
            await _ready(app, pilot)
            assert prompt.text == too_long  # given back
            assert len(_views(app)) == 2 and all(v.text for v in _views(app))  # no empty bubble
            assert any("shorten the message" in n.message for n in app._notifications)
            assert len(app.session.thread()) == 2

            prompt.value = "word " * 250
            await pilot.press("enter")
            await pilot.press(*"typed meanwhile")  # typed while the session refused it
            await _ready(app, pilot)
            assert prompt.text.startswith("word word") and prompt.text.endswith("typed meanwhile")

    asyncio.run(run())


def test_new_conversation_focus_search_and_no_empty_rows(chat_home: Home) -> None:
    _config(chat_home)

    async def run() -> None:
        app = ChatApp(chat_home)
        async with app.run_test(size=SIZE) as pilot:
            await _ready(app, pilot)
            await _send(app, pilot, "My name is Ada and I like sailing boats.")
            first = app.session.conversation_id
            assert "nothing yet" not in str(app.query_one("#memory").render())
            await pilot.press("ctrl+e")  # export as Markdown
            exported = chat_home.root / "exports" / f"conversation-{first}.md"
            assert "My name is Ada and I like sailing boats." in exported.read_text()
            app.query_one("#conversations").focus()
            for _ in range(3):
                await pilot.press("ctrl+n")
            await pilot.pause()
            prompt = app.query_one("#prompt", Composer)
            assert app.focused is prompt  # back in the box after Ctrl+N
            assert [c.id for c in app.session.conversations()] == [first]  # no empty rows stored
            assert "nothing yet" in str(app.query_one("#memory").render())
            status = str(app.query_one("#status").render())
            assert "context -" in status and "conversation new" in status
            app.query_one("#conversations").focus()
            await pilot.press("f6")  # the key that jumps to the box
            assert app.focused is prompt
            app.query_one("#conversations").focus()
            await pilot.press("escape")  # with nothing to stop, Escape also goes back to the box
            assert app.focused is prompt

            await pilot.press("ctrl+f", *"sailing")
            await pilot.pause()
            assert [i.conversation_id for i in app.query(ConversationItem)] == [first]
            assert isinstance(app.focused, Input)
            await pilot.press("enter")  # opens the result
            await pilot.pause()
            assert app.session.conversation_id == first and app.focused is prompt
            assert _views(app)[0].text.startswith("My name is Ada")

    asyncio.run(run())


def test_search_load_forget_scope_help_and_footer(chat_home: Home) -> None:
    _config(chat_home)

    async def run() -> None:
        app = ChatApp(chat_home)
        async with app.run_test(size=(120, 40)) as pilot:
            await _ready(app, pilot)
            footer = app.query_one(Footer)
            assert footer.virtual_size.width <= footer.size.width == 120  # nothing cut at 120 columns
            await _send(app, pilot, "I prefer tabs. The harbour project uses `pytest` daily.")
            harbour = app.session.conversation_id
            await _type(pilot, "/save harbour")
            await pilot.pause()
            await pilot.press("ctrl+n")
            await _send(app, pilot, "Gardening notes: tomatoes need sun.")
            other = app.session.conversation_id

            await _type(pilot, "/search pytest")  # this conversation only
            await pilot.pause()
            panel = str(app.query_one("#memory").render())
            assert "no memories found" in panel and "pytest" not in panel.split("\n", 1)[1]
            await _type(pilot, "/search --all pytest")
            await pilot.pause()
            panel = str(app.query_one("#memory").render())
            assert "all conversations" in panel and "`pytest`" in panel
            await _type(pilot, "/search --all zzzqqq")  # no word in common: at most the 3 nearest
            await pilot.pause()
            assert str(app.query_one("#memory").render()).count("\n[m") <= 3

            await _type(pilot, "/load harbour new")  # restored messages are found by the list search
            await pilot.pause()
            restored = app.session.conversation_id
            assert restored not in (other, None)
            app.query_one("#conversation-search", Input).value = "harbour project"
            await pilot.pause()
            found = [i.conversation_id for i in app.query(ConversationItem)]
            assert restored in found

            fact = next(m for m in app.session.memories.list(conversation_id=harbour) if m.text == "user prefers tabs")
            source = fact.source_message_id
            before = app.session.search("tabs", everywhere=True)
            assert any(h.memory.kind == "chunk" and h.memory.source_message_id == source for h in before)
            await _type(pilot, f"/forget {fact.ref}")
            await pilot.pause()
            hits = app.session.search("tabs", everywhere=True)
            left = [(h.memory.kind, h.memory.text) for h in hits if h.memory.source_message_id == source]
            assert all(kind != "chunk" and text != "user prefers tabs" for kind, text in left)  # its chunk went too

            await _type(pilot, "/help")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            text = str(app.screen.query_one("#help-text").render())
            assert "/search [--all] QUERY" in text and "ctrl+j" in text and "f8" in text
            await pilot.pause(0.5)
            assert isinstance(app.screen, HelpScreen)  # stays until closed
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen) and isinstance(app.focused, (Composer, MessageView))

    asyncio.run(run())
