"""Acting on earlier messages in the chat app, driven by the Textual pilot with the tiny model:
select, copy, regenerate, move between branches, edit and resend, rate; the settings dialog and
/set; what is shown and what the next prompt carries follow the branch."""

from __future__ import annotations

import asyncio
import json

from chat_fixtures import chat_home  # noqa: F401  (fixture)
from quark.chat import ChatSession
from quark.home import Home
from quark.tui.app import ChatApp
from quark.tui.widgets import Composer, MessageView, SettingsScreen
from test_tui import SIZE, _config, _ready, _send, _views


def _label(view: MessageView) -> str:
    return view._label()


def test_select_copy_regenerate_switch_edit_and_rate(chat_home: Home) -> None:
    _config(chat_home, max_tokens=4)

    async def run() -> None:
        app = ChatApp(chat_home)
        async with app.run_test(size=SIZE) as pilot:
            await _ready(app, pilot)
            await _send(app, pilot, "Name a colour for a boat.")
            first = app.last_result
            prompt = app.query_one("#prompt", Composer)

            user_view, reply_view = _views(app)
            await pilot.press("shift+tab")  # Shift+Tab from the box also lands on the newest message
            assert app.focused is reply_view
            prompt.focus()
            await pilot.press("ctrl+up")  # from the box: the newest message is selected
            assert app.focused is reply_view and reply_view.message_id == first.assistant_message_id
            assert "r regenerate" in str(app.query_one("#status").render())  # the keys, as a cue
            await pilot.press("c")
            assert app.clipboard == first.reply

            await pilot.press("r")  # regenerate: a sibling under the same question
            await _ready(app, pilot)
            second = app.last_result
            assert second.user_message_id == first.user_message_id and second.reply != first.reply
            user_view, reply_view = _views(app)
            assert reply_view.text == second.reply and "2/2" in _label(reply_view)
            assert [m.id for m in app.session.thread()] == [first.user_message_id, second.assistant_message_id]

            reply_view.focus()
            await pilot.press("left")  # the previous branch: the first reply is shown again
            await pilot.pause()
            shown = _views(app)[1]
            assert shown.text == first.reply and "1/2" in _label(shown) and app.focused is shown
            await pilot.press("right_square_bracket")  # and ] goes forward again
            await pilot.pause()
            assert _views(app)[1].text == second.reply
            await pilot.press("left_square_bracket")
            await pilot.pause()
            await pilot.press("plus")  # rate the shown (first) reply +
            await pilot.pause()
            assert app.session.feedback_of([first.assistant_message_id])[first.assistant_message_id].rating == 1
            assert "rated +" in _label(_views(app)[1])
            await pilot.press("b")  # and mark it better than its sibling
            assert app.session.feedback_of([first.assistant_message_id])[first.assistant_message_id].best

            app.query_one("#prompt").focus()
            await _send(app, pilot, "Why that one?")  # continues the branch shown
            carried = json.dumps(app.session.last_prompt.messages)
            assert first.reply in carried and second.reply not in carried

            # Edit and resend the first question: a new branch beside it, the old one kept.
            prompt.value = "half-typed"
            await pilot.press("ctrl+up", "up", "up", "up")  # ↑ walks back to the first message
            assert app.focused is _views(app)[0]
            await pilot.press("e")
            assert app.focused is prompt and prompt.text == "Name a colour for a boat."
            assert "editing" in str(app.query_one("#status").render())
            await pilot.press("escape")  # Esc stops editing: the box gets back what it had
            assert prompt.text == "half-typed"
            _views(app)[0].focus()
            await pilot.press("e")
            prompt.value = "Name a colour for a kite."
            await pilot.press("enter")
            await _ready(app, pilot)
            edited = app.last_result
            views = _views(app)
            assert [v.text for v in views] == ["Name a colour for a kite.", edited.reply]
            assert "2/2" in _label(views[0])
            carried = json.dumps(edited.prompt.messages)
            assert "kite" in carried and "boat" not in carried
            assert app.session.store.count_messages(app.session.conversation_id) == 7  # both branches kept
            views[0].focus()
            await pilot.press("left")  # the old question's branch, with its later turn, comes back
            await pilot.pause()
            assert [v.text for v in _views(app)][::2] == ["Name a colour for a boat.", "Why that one?"]
            assert prompt.text == "half-typed"  # given back once the edit was sent

            # An edit the session refuses (too long for the context) stays in the box, still an
            # edit, and the branch shown is untouched.
            shown = [v.text for v in _views(app)]
            _views(app)[0].focus()
            await pilot.press("e")
            prompt.value = "word " * 250
            await pilot.press("enter")
            await _ready(app, pilot)
            assert prompt.text == "word " * 250 and [v.text for v in _views(app)] == shown
            assert "editing" in str(app.query_one("#status").render())
            await pilot.press("escape")
            assert app.focused is prompt and prompt.text == "half-typed"
            _views(app)[0].focus()
            await pilot.press("e", "ctrl+n")  # another conversation stops the edit, nothing lost
            await pilot.pause()
            assert prompt.text == "half-typed" and app._editing is None and _views(app) == []

    asyncio.run(run())


def test_settings_dialog_and_set_persist_and_cap_the_reply(chat_home: Home) -> None:
    _config(chat_home, max_tokens=40)

    async def run() -> int:
        app = ChatApp(chat_home)
        async with app.run_test(size=SIZE) as pilot:
            await _ready(app, pilot)
            await _send(app, pilot, "/set max_tokens 2")
            assert "set max 2" in str(app.query_one("#status").render())
            await _send(app, pilot, "Tell me a long story about the sea.")
            assert app.last_result.completion_tokens <= 2
            await _send(app, pilot, "/set temperature hot")
            assert any("'hot' is not a number" in n.message for n in app._notifications)

            await pilot.press("f5")
            await pilot.pause()
            assert isinstance(app.screen, SettingsScreen)
            app.screen.query_one("#setting-top_p").value = "7"
            app.screen.query_one("#setting-top_p").focus()
            await pilot.press("enter")  # refused in the dialog, which stays open
            await pilot.pause()
            assert isinstance(app.screen, SettingsScreen)
            assert "must be in (0, 1]" in str(app.screen.query_one("#settings-error").render())
            app.screen.query_one("#setting-top_p").value = "0.5"
            app.screen.query_one("#setting-system").value = "You are terse."
            await pilot.press("enter")
            await pilot.pause()
            assert not isinstance(app.screen, SettingsScreen)
            assert "set top-p 0.5, max 2" in str(app.query_one("#status").render())
            await pilot.press("ctrl+q")
            return app.session.conversation_id

    conversation = asyncio.run(run())
    again = ChatSession(chat_home, conversation_id=conversation)  # kept in quark.db
    try:
        assert again.settings().as_dict() == {"max_tokens": 2, "top_p": 0.5}
        assert again.conversation().system_prompt == "You are terse."
        assert again.params().top_p == 0.5
    finally:
        again.close()
