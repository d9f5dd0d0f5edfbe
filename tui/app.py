"""`quark chat`: the Textual app. It owns widgets and key handling only; every chat operation is a
call on the same `ChatSession` that the scripted `quark chat --message` uses.

Generation runs in a thread worker (the event loop stays responsive) and streams into a Markdown
widget; Escape (configurable) sets the session's cancel event and the partial reply is stored.
A turn's bubbles are mounted with the reply's first text, so Enter → first token costs one screen
layout (each is a full re-layout and repaint, tens of ms), or SHOW_WITHIN after the message is
stored when that text is slower; generation waits for that first paint (FIRST_PAINT_WAIT at most),
so decoding does not compete with it for the GIL.
Key bindings have ids; the home's config.toml `[keys]` table maps ids to keys (Textual keymap).

Tools (`quark chat --tools …`): the model's tool calls appear as collapsible panels (tool, status,
duration; arguments and result inside) between the user's message and the answer; a risky tool
waits for the user's answer in a confirmation dialog. `/search`, `/fetch` and `/run` run a tool
by hand into the same panels (audited like the model's calls).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, ListView, Markdown

from quark.agent.events import ToolCallFinished, ToolCallStarted
from quark.chat import ChatSession, Turn, TurnResult
from quark.chat.config import load_config
from quark.errors import QuarkError
from quark.home import Home
from quark.tools.builtin.mesh import use_mesh_model
from quark.tui.slash import SlashCommand, parse_slash
from quark.tui.widgets import (
    CheckpointPicker,
    Composer,
    Confirm,
    ConversationItem,
    HelpScreen,
    MemoryPanel,
    MessageView,
    SettingsScreen,
    StatusBar,
    TextPrompt,
    ToolConfirm,
    ToolPanel,
    code_blocks,
    message_views,
)

SHOWN_MESSAGES = 200  # the newest messages of a thread rendered when a conversation is opened
STREAM_AHEAD = 8  # streamed pieces allowed to wait for the screen before generation pauses
FIRST_PAINT_WAIT = 0.25  # seconds generation may wait for the first piece to be painted (see _turn)
SHOW_WITHIN = 0.1  # seconds after the message is stored by which its bubbles show, reply text or not
WIDE = 120  # columns from which the memory panel is shown at start
OPEN_CONVERSATION = "tui.open_conversation"  # preference: reopened at the next start


class TurnStarted(Message):
    def __init__(self, turn: Turn) -> None:
        super().__init__()
        self.turn = turn


class TurnText(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class TurnFinished(Message):
    def __init__(self, result: TurnResult) -> None:
        super().__init__()
        self.result = result


class ToolStarted(Message):
    def __init__(self, event: ToolCallStarted, by: str = "model") -> None:
        super().__init__()
        self.event, self.by = event, by


class ToolFinished(Message):
    def __init__(self, event: ToolCallFinished, by: str = "model") -> None:
        super().__init__()
        self.event, self.by = event, by


class AssetReady(Message):
    """/image or /mesh made an asset: the picture to show inline (the PNG, or the mesh's preview)
    and the Markdown under it (where it was saved; a mesh's faces, watertight, volume, bounds)."""

    def __init__(self, command: str, prompt: str, picture: str, caption: str, asset: dict) -> None:
        super().__init__()
        self.command, self.prompt, self.picture, self.caption, self.asset = command, prompt, picture, caption, asset


class TurnFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class ChatApp(App):
    TITLE = "quark chat"
    CSS = """
    #sidebar { width: 30; border-right: solid $panel; }
    #conversation-search { margin: 0; }
    #conversations { height: 1fr; }
    #main { width: 1fr; }
    #messages { height: 1fr; padding: 0 1; }
    #messages:focus-within { scrollbar-color: $accent; }
    #conversations:focus { border-left: thick $accent; }
    #conversation-search:focus { border: tall $accent; }
    #prompt { margin: 0; }
    .generated-image { width: 32; height: 16; }
    """
    # The footer shows the first few (it must fit 120 columns); F1 lists them all.
    BINDINGS = [
        Binding("escape", "stop", "Stop", id="stop", priority=True),
        Binding("ctrl+n", "new_conversation", "New", id="new_conversation", priority=True),
        Binding("f6", "focus_composer", "Compose", id="focus_composer", priority=True),
        Binding("ctrl+f", "search_conversations", "Search", id="search_conversations", priority=True),
        Binding("f3", "toggle_memory", "Memory", id="toggle_memory", priority=True),
        Binding("f4", "checkpoints", "Checkpoints", id="checkpoints", priority=True),
        Binding("f1", "help", "Help", id="help", priority=True),
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True),
        Binding("f2", "rename_conversation", "Rename", id="rename_conversation", priority=True, show=False),
        Binding("f8", "delete_conversation", "Delete", id="delete_conversation", priority=True, show=False),
        Binding("ctrl+y", "copy_message", "Copy message", id="copy_message", priority=True, show=False),
        Binding("ctrl+b", "copy_code", "Copy code", id="copy_code", priority=True, show=False),
        Binding("ctrl+e", "export", "Export as Markdown", id="export", priority=True, show=False),
        Binding("ctrl+up,alt+up", "select_message(-1)", "Select a message (then e, r, [/], +/-, b, c)",
                id="select_message", priority=True, show=False),
        Binding("f5", "settings", "Conversation settings", id="settings", priority=True, show=False),
    ]

    def __init__(self, home: Home, *, model: str | None = None, conversation_id: int | None = None,
                 checkpoint: str | None = None, adapter: str | None = None, device: str = "auto",
                 quantize: str | None = None, index: str | None = None, reranker: str | None = None,
                 tools: str | None = None, workspace: str | None = None, allow_risky: bool = False,
                 max_steps: int = 4, prefix_cache_mb: float = 512.0, compile: str = "auto",
                 image_model: str | None = None, mesh_model: str | None = None,
                 mesh_adapter: str | None = None) -> None:
        super().__init__()
        self.session = ChatSession(home, model=model, adapter=adapter, device=device, quantize=quantize, index=index,
                                   reranker=reranker, prefix_cache_mb=prefix_cache_mb, compile=compile)
        if tools:
            self.session.enable_tools(tools, workspace=workspace, allow_risky=allow_risky, confirm=self._confirm_tool,
                                      max_steps=max_steps)
            use_mesh_model(self.session.tools, mesh_model, mesh_adapter)
        self.tool_choice: Any = "auto"  # OpenAI tool_choice for the model's turns (see quark.agent.choice)
        self._panels: dict[str, ToolPanel] = {}
        self.home, self.image_model_name, self._asset_device = home, image_model, device
        self._image_model = None  # loaded on the first /image
        self.mesh_model_name, self.mesh_adapter = mesh_model, mesh_adapter  # /mesh (default: the chat's model)
        self._start_conversation, self._start_checkpoint = conversation_id, checkpoint
        self._engine_lock = threading.Lock()  # one model load or turn at a time
        self._cancel: threading.Event | None = None
        self._ahead = threading.Semaphore(STREAM_AHEAD)
        self._first_shown = threading.Event()  # the turn's first piece is on screen (see _turn)
        self._started: Turn | None = None  # the turn whose message the session stored
        self._show_timer: Any = None  # shows its bubbles if the reply's first text is slow to come
        self._sent: MessageView | None = None
        self._reply: MessageView | None = None
        self._stream = None
        self._state = "ready"
        self._pending = ""  # the text of the message being sent, given back if it is refused
        self._editing: tuple[int, str] | None = None  # (user message being edited, what the box held before)
        self._cut: Any = None  # the first widget a branching turn replaces (removed once the turn starts)
        self._sent_at = 0.0
        self.first_token_latency: float | None = None  # Enter → first streamed text on screen, seconds
        self.last_result: TurnResult | None = None
        self.last_image: str | None = None  # the path of the latest /image
        self.last_mesh: dict | None = None  # the latest /mesh's asset (path, preview, checks, program)

    # ---- layout ------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="sidebar"):
                yield Input(placeholder="search conversations", id="conversation-search")
                yield ListView(id="conversations")
            with Vertical(id="main"):
                yield VerticalScroll(id="messages")
                yield Composer(placeholder="Message, or /help  (Enter sends, Ctrl+J or Shift+Enter adds a line)",
                               id="prompt")
            yield MemoryPanel(id="memory")
        yield StatusBar(id="status")
        yield Footer()

    async def on_mount(self) -> None:
        self.set_keymap(self.session.config.keys)
        try:
            if self._start_conversation is not None:
                self.session.select(self._start_conversation)
            elif self._start_checkpoint:
                self.session.load_snapshot(self._start_checkpoint, into="new")
            elif (last := self.session.preference(OPEN_CONVERSATION)) is not None:
                self._reopen(last)  # the conversation that was open when the app last quit
        except QuarkError as exc:
            self.notify(str(exc), severity="error")
        await self._show_conversation()
        self.refresh_conversations()
        memory = self.query_one("#memory", MemoryPanel)
        memory.show_prompt(None)
        memory.display = self.size.width >= WIDE  # F3 shows it on a narrow terminal
        self.action_focus_composer()
        self._load_model(None)

    def _status(self, state: str | None = None) -> None:
        self._state = state or self._state
        settings = self.session.settings()
        state = self._state
        if isinstance(self.focused, MessageView) and self.focused.message_id is not None and state == "ready":
            state = f"#{self.focused.message_id}: {MessageView.HINT}"
        elif self._editing is not None:
            state = f"editing #{self._editing[0]}: Enter resends it as a new branch, Esc cancels"
        self.query_one("#status", StatusBar).show(
            model=self.session.model_name, adapter=settings.adapter or self.session.adapter,
            prompt=self.session.last_prompt, conversation=self.session.conversation_id, state=state,
            settings=settings.describe(), route=self._route_line())

    def _route_line(self) -> str | None:
        """The last turn's route, and what the next follows when /route pinned one."""
        session = self.session
        last = session.last_route.describe() if session.last_route is not None else None
        if session.routing is None:
            return None
        pinned = f"next: {session.route_choice}" if session.route_choice != "auto" else None
        return " · ".join(filter(None, [last or "auto", pinned]))

    def refresh_conversations(self, search: str | None = None) -> None:
        view = self.query_one("#conversations", ListView)
        view.clear()
        found = self.session.conversations(search or None)
        view.extend(ConversationItem(c) for c in found)
        ids = [c.id for c in found]
        if ids:
            view.index = ids.index(self.session.conversation_id) if self.session.conversation_id in ids else 0

    async def _show_conversation(self) -> None:
        messages = self.query_one("#messages", VerticalScroll)
        await messages.remove_children()
        thread = self.session.thread()[-SHOWN_MESSAGES:]
        await messages.mount_all(message_views(thread))
        prompt = self.query_one("#prompt", Composer)
        if not prompt.sent:  # at start, Up recalls what was said in the conversation opened
            for message in thread:
                if message.role == "user":
                    prompt.remember(message.content)
        messages.scroll_end(animate=False)
        self._mark_views(thread)
        self.query_one("#memory", MemoryPanel).show_prompt(self.session.last_prompt)
        self._status()

    def _mark_views(self, thread=None) -> None:
        """Each shown message's place among its alternatives ("2/3") and its feedback."""
        thread = self.session.thread() if thread is None else thread
        branches = self.session.branches(thread)
        feedback = self.session.feedback_of([m.id for m in thread if m.role == "assistant"])
        for view in self.query(MessageView):
            if view.message_id is not None:
                view.set_marks(branches.get(view.message_id), feedback.get(view.message_id))

    # ---- the model ---------------------------------------------------------------------------
    @work(thread=True, group="engine")
    def _load_model(self, name: str | None) -> None:
        self.call_from_thread(self._status, f"loading model {name or ''}".strip() + "…")
        try:
            with self._engine_lock:
                self.session.use_model(name)
            self.call_from_thread(self._status, "ready")
        except QuarkError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error", timeout=10)
            self.call_from_thread(self._status, "no model")

    # ---- sending -----------------------------------------------------------------------------
    @on(Composer.Submitted, "#prompt")
    async def _submitted(self, event: Composer.Submitted) -> None:
        """Send the box's text. What the user typed is never thrown away: while a reply streams
        the text stays in the box (and a notice says so); a message the session refuses comes
        back into the box, and its bubbles are removed."""
        text = event.text
        prompt = self.query_one("#prompt", Composer)
        if not text.strip():
            return
        command = parse_slash(text)
        if command is not None:
            prompt.remember(text)
            prompt.value = ""
            await self.run_slash(command)
            return
        if self._cancel is not None:
            self.notify("still generating: your message stays in the box; send it when the reply ends "
                        "(Esc stops the reply)", severity="warning")
            return
        prompt.remember(text)
        prompt.value = ""
        self._pending = text
        text = text[1:] if text.lstrip().startswith("//") else text  # '//' escapes a leading slash
        if self._editing is not None:  # Enter after e on a message: a new branch beside it
            edited, held = self._editing
            prompt.value = held  # what the box held before the edit comes back
            self._cut = self._view_of(edited)
            self._start_turn(lambda: self.session.begin_edit(edited, text, tool_choice=self.tool_choice))
        else:
            self._cut = None
            self._start_turn(lambda: self.session.begin(text, tool_choice=self.tool_choice))

    def _start_turn(self, begin: Callable[[], Turn]) -> None:
        self._sent_at = time.perf_counter()
        self.first_token_latency = None
        self._cancel = threading.Event()
        self._first_shown = threading.Event()
        self._started = self._sent = self._reply = None
        self._turn(begin, self._cancel, self._first_shown)
        self._status("thinking…")

    @work(thread=True, group="turn")
    def _turn(self, begin: Callable[[], Turn], cancel: threading.Event, first_shown: threading.Event) -> None:
        """The whole turn, off the UI thread. It posts messages rather than waiting on the UI, so
        generation never stalls behind rendering; the queue keeps them in order. `begin` is the
        session's begin, begin_edit or begin_regenerate.

        The one wait: after the first piece, generation pauses until the screen has painted it
        (FIRST_PAINT_WAIT at most). Mounting the bubbles and the first layout are the UI thread's
        biggest job of the turn, and decoding the next tokens meanwhile only competes with it for
        the GIL; those tokens follow a few milliseconds later, behind the text the user waits for."""
        try:
            with self._engine_lock:
                turn = begin()
                self.post_message(TurnStarted(turn))
                for piece in self.session.events(turn, cancel):
                    if isinstance(piece, ToolCallStarted):
                        self.post_message(ToolStarted(piece))
                        continue
                    if isinstance(piece, ToolCallFinished):
                        self.post_message(ToolFinished(piece))
                        continue
                    # Back-pressure: at most STREAM_AHEAD pieces wait for the screen, so a key
                    # press (Escape) is never queued behind a whole reply.
                    while not self._ahead.acquire(timeout=0.1):
                        if cancel.is_set():
                            break
                    self.post_message(TurnText(piece))
                    if not first_shown.is_set():
                        first_shown.wait(FIRST_PAINT_WAIT)
                        first_shown.set()
                result = self.session.finish(turn)
            self.post_message(TurnFinished(result))
        except QuarkError as exc:
            self.post_message(TurnFailed(str(exc)))

    @on(TurnStarted)
    def _turn_started(self, event: TurnStarted) -> None:
        """The session stored the message (a refused message never gets bubbles). Its bubbles wait
        for the reply's first text, so that one layout shows both: mounting them now would hold
        the UI thread (and the GIL) while the worker's prefill runs. A slow model gets them
        SHOW_WITHIN seconds from now instead."""
        self._started = event.turn
        self._show_timer = self.set_timer(SHOW_WITHIN, self._show_turn)

    async def _show_turn(self) -> None:
        """The started turn's bubbles (its message, unless already shown, and the reply), the
        memory in its prompt and the status, in one batch; once per turn."""
        if self._started is None or self._reply is not None:
            return
        if self._show_timer is not None:
            self._show_timer.stop()
            self._show_timer = None
        turn, messages = self._started, self.query_one("#messages", VerticalScroll)
        self._reply = MessageView("assistant", "")
        with self.batch_update():
            if self._cut is not None:  # an edit or a regeneration: the branch shown from here on is replaced
                children = list(messages.children)
                if self._cut in children:
                    await messages.remove_children(children[children.index(self._cut):])
                self._cut = None
            self._end_editing()
            self._sent = self._view_of(turn.user_message.id)  # a regenerated reply's question is shown
            if self._sent is None:
                self._sent = MessageView("user", turn.user_message.content, turn.user_message.id)
                await messages.mount_all([self._sent, self._reply])
            else:
                await messages.mount(self._reply)
            messages.anchor()
            self.query_one("#memory", MemoryPanel).show_prompt(turn.prompt)
            self._status("generating… (Esc stops)")

    @on(TurnText)
    async def _piece(self, event: TurnText) -> None:
        if self._stream is None:  # the first text: shown with the bubbles, in one refresh
            with self.batch_update():
                await self._show_turn()
                await self._reply.markdown.append(event.text)
            self._stream = Markdown.get_stream(self._reply.markdown)
            self.call_after_refresh(self._first_painted, self._sent_at)
        else:
            await self._stream.write(event.text)
        self._ahead.release()

    def _first_painted(self, sent_at: float) -> None:
        if sent_at == self._sent_at:  # not a later turn's
            self.first_token_latency = time.perf_counter() - sent_at
            self._first_shown.set()

    @on(TurnFinished)
    async def _turn_finished(self, event: TurnFinished) -> None:
        result = event.result
        await self._show_turn()  # a reply that ended before any text
        if self._stream is not None:
            await self._stream.stop()
        self._reply.text = result.reply
        self._reply.set_id(result.assistant_message_id, "stopped" if result.finish_reason == "cancelled" else "")
        self.last_result, self._cancel, self._stream, self._sent, self._started = result, None, None, None, None
        self.query_one("#memory", MemoryPanel).show_prompt(result.prompt, cited=result.citations())
        self._mark_views()
        self.refresh_conversations(self.query_one("#conversation-search", Input).value)
        self._status("stopped" if result.finish_reason == "cancelled" else "ready")

    # ---- tool calls ----------------------------------------------------------------------------
    @on(ToolStarted)
    async def _tool_started(self, event: ToolStarted) -> None:
        await self._show_turn()  # a tool called before any text: under the turn's message
        panel = ToolPanel(event.event.name, event.event.arguments, by=event.by)
        self._panels[event.event.call_id] = panel
        messages = self.query_one("#messages", VerticalScroll)
        before = self._reply if event.by == "model" and self._reply is not None and self._reply.parent else None
        await messages.mount(panel, before=before)
        self._status(f"running {event.event.name}…")

    @on(ToolFinished)
    def _tool_finished(self, event: ToolFinished) -> None:
        call = event.event
        panel = self._panels.pop(call.call_id, None)
        if panel is not None:
            panel.finish(call.outcome, call.duration_s, call.result.output if call.result.ok else call.result.error)
        self._status("generating… (Esc stops)" if event.by == "model" else "ready")

    def _confirm_tool(self, name: str, arguments) -> bool:
        """The policy's confirm callback: called on the turn's worker thread, it shows the dialog
        on the UI thread and waits for the answer (a stopped turn counts as no)."""
        answer: dict[str, bool] = {}
        answered = threading.Event()

        def ask() -> None:
            def chosen(yes: bool | None) -> None:
                answer["yes"] = bool(yes)
                answered.set()

            self.push_screen(ToolConfirm(name, json.dumps(arguments.model_dump(mode="json"))), chosen)

        self.call_from_thread(ask)
        while not answered.wait(0.1):
            if self._cancel is not None and self._cancel.is_set():
                return False
        return answer["yes"]

    @work(thread=True, group="tool")
    def _run_tool(self, name: str, arguments: dict) -> None:
        """A tool run by hand (/search, /fetch, /run) into a panel, off the UI thread."""
        started = ToolCallStarted(0, f"user-{time.monotonic_ns()}", name, json.dumps(arguments))
        self.post_message(ToolStarted(started, by="you"))
        finished = self.session.run_tool(name, arguments)
        self.post_message(ToolFinished(ToolCallFinished(0, started.call_id, name, started.arguments,
                                                        finished.result), by="you"))

    def _last_code(self) -> str | None:
        for view in reversed(list(self.query(MessageView))):
            blocks = code_blocks(view.text) if view.role == "assistant" else []
            if blocks:
                return blocks[-1]
        return None

    @on(TurnFailed)
    async def _turn_failed(self, event: TurnFailed) -> None:
        """A refusal before anything was stored gives the text back to the box (ahead of
        anything typed since, so no keystroke is lost either); a failure later leaves no empty
        reply bubble."""
        await self._show_turn()  # the stored message is shown, the empty reply removed below
        if self._stream is not None:
            await self._stream.stop()
        if self._reply is not None and not self._reply.markdown.source:
            await self._reply.remove()
        prompt = self.query_one("#prompt", Composer)
        if self._sent is None and self._editing is not None:  # a refused edit stays an edit, nothing lost
            self._editing = (self._editing[0], prompt.text)
            prompt.value = self._pending
        elif self._sent is None:  # begin() refused it: no bubbles were made
            prompt.value = "\n".join(text for text in (self._pending, prompt.text) if text.strip())
        self._cancel, self._stream, self._sent, self._reply, self._cut = None, None, None, None, None
        self._started = None
        self.notify(event.error, severity="error", timeout=10)
        self._status("ready")

    # ---- slash commands ----------------------------------------------------------------------
    async def run_slash(self, command: SlashCommand) -> None:
        try:
            await self._slash(command)
        except QuarkError as exc:
            self.notify(str(exc), severity="error", timeout=8)

    async def _slash(self, command: SlashCommand) -> None:
        session, arg = self.session, command.argument
        if command.name == "save":
            name, _, flag = arg.partition(" ")
            snapshot = session.save_snapshot(name.strip(), force=flag.strip() == "--force")
            self.notify(f"saved checkpoint {snapshot.name} ({len(snapshot.messages)} messages)")
        elif command.name == "load":
            name, _, into = arg.partition(" ")
            self._require_idle()
            session.load_snapshot(name.strip(), into=into.strip() or "current")
            await self._show_conversation()
            self.refresh_conversations()
            self.notify(f"loaded checkpoint {name.strip()}: the next prompt carries it")
        elif command.name == "checkpoints":
            self.action_checkpoints()
        elif command.name == "forget":
            memory = session.forget(arg)
            self.notify(f"forgot [{memory.ref}] {memory.text[:60]}")
        elif command.name == "pin":
            memory = session.pin(arg)
            self.notify(f"pinned [{memory.ref}]: it goes into every prompt of this conversation")
        elif command.name == "system":
            session.set_system(arg)
            self.refresh_conversations()
            self.notify("system prompt set" if arg.strip() else "system prompt cleared")
        elif command.name == "model":
            self._require_idle()
            if not arg.strip():
                raise QuarkError(f"usage: /model NAME (available: {', '.join(session.available_models()) or 'none'})")
            self._load_model(arg.strip())
        elif command.name == "route":
            choice = session.set_route(arg)
            self._status()
            self.notify(f"route {choice}: " + ("the router picks each turn's adapter" if choice == "auto"
                                                else f"the next turns use {choice}"))
        elif command.name == "search":
            everywhere = arg.startswith("--all")
            query = arg.removeprefix("--all").strip() if everywhere else arg.strip()
            if not query:
                raise QuarkError("usage: /search [--all] QUERY (--all: every conversation, not only this one)")
            self._run_tool("web_search", {"query": query})
            hits = session.search(query, everywhere=everywhere)
            self.query_one("#memory", MemoryPanel).show_hits(query + ("  (all conversations)" if everywhere else ""),
                                                             hits)
            self.query_one("#memory").display = True
        elif command.name == "index":
            name = session.use_index(arg.strip() or None)
            self.notify(f"answers are grounded in index {name}: sources are cited as [n]" if name
                        else "no document index: answers are not grounded")
        elif command.name == "fetch":
            if not arg.strip():
                raise QuarkError("usage: /fetch URL")
            self._run_tool("fetch_url", {"url": arg.strip()})
        elif command.name == "run":
            code = arg.strip() or self._last_code()
            if not code:
                raise QuarkError("usage: /run CODE, or /run alone to run the last code block of a reply")
            self._run_tool("run_code", {"language": "python", "code": code})
        elif command.name == "fork":
            self._require_idle()
            target = arg.strip().lstrip("#")
            if not target.isdigit():
                raise QuarkError("usage: /fork MESSAGE_ID (the #number shown above each message)")
            session.fork(int(target))
            await self._show_conversation()
            self.notify(f"continuing from message #{target}; the other branch is kept")
        elif command.name == "set":
            if not arg.strip():
                self.action_settings()
                return
            key, _, value = arg.partition(" ")
            session.set_setting(key, value.strip() or None)
            self._status()
            self.notify(f"{key} = {value.strip()} for this conversation" if value.strip()
                        else f"{key}: back to the default")
        elif command.name in ("image", "mesh"):
            if not arg.strip():
                raise QuarkError(f"usage: /{command.name} PROMPT")
            self._status("drawing…" if command.name == "image" else "modelling…")
            self._make_asset(command.name, arg.strip(), self._draw if command.name == "image" else self._model_mesh)
        else:  # help, or an unknown command: the help panel, saying which was unknown
            self.action_help(arg)

    @work(thread=True, group="asset")
    def _make_asset(self, command: str, prompt: str, make: Callable[[str], tuple[str, str, dict]]) -> None:
        """/image and /mesh: `make` runs off the UI thread (loading its model on first use), saves
        the asset, and the result is shown inline (AssetReady)."""
        try:
            picture, caption, asset = make(prompt)
            self.post_message(AssetReady(command, prompt, picture, caption, asset))
        except QuarkError as exc:  # not TurnFailed: a chat turn may be streaming meanwhile
            self.call_from_thread(self.notify, str(exc), severity="error", timeout=10)
            self.call_from_thread(self._status, "ready")

    def _draw(self, prompt: str) -> tuple[str, str, dict]:
        """/image: one PNG from the image model."""
        from quark.device import resolve_device
        from quark.image.generate import ImageModel

        if self._image_model is None:
            self._image_model = ImageModel(self.home, self.image_model_name, device=resolve_device(self._asset_device))
        asset = self._image_model.generate(prompt)[0]
        return asset.path, f"saved `{asset.path}`", asset.as_dict()

    def _model_mesh(self, prompt: str) -> tuple[str, str, dict]:
        """/mesh: the mesh model (--mesh-model, else the chat's; with --mesh-adapter) writes a scene
        program, Quark builds it; the preview is shown with the mesh's checks."""
        from quark.mesh.text_to_mesh import generator, summary

        model = self.mesh_model_name or self.session.resolve_model()
        asset = generator(self.home, model, self.mesh_adapter, self._asset_device).generate(prompt)
        return asset["preview"], f"{summary(asset)}\n\nsaved `{asset['path']}`", asset

    @on(AssetReady)
    async def _asset_ready(self, event: AssetReady) -> None:
        from textual_image.widget import Image as ImageWidget

        messages = self.query_one("#messages", VerticalScroll)
        view = ImageWidget(event.picture, classes="generated-image")
        await messages.mount_all([MessageView("user", f"/{event.command} {event.prompt}"), view,
                                  MessageView("assistant", event.caption)])
        messages.scroll_end(animate=False)
        if event.command == "image":
            self.last_image = event.picture
        else:
            self.last_mesh = event.asset
        self._status("ready")

    def _require_idle(self) -> None:
        if self._cancel is not None:
            raise QuarkError("a reply is being generated: wait, or press Escape to stop it first")

    # ---- actions -----------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """App keys step aside while a dialog is open, so their keys (Escape above all) reach it."""
        return action == "quit" if isinstance(self.screen, ModalScreen) else True

    def action_stop(self) -> None:
        """Stop the reply being generated; else stop editing a message (the box gets back what it
        held before); else go back to the message box."""
        if self._cancel is not None:
            self._cancel.set()
            self._status("stopping…")
            return
        self._stop_editing()
        self.action_focus_composer()
        self._status()

    def _stop_editing(self) -> None:
        """Leave an edit unsent: the box gets back what it held before (an edit belongs to its
        conversation, so opening another one stops it too)."""
        if self._editing is not None:
            self.query_one("#prompt", Composer).value = self._editing[1]
            self._end_editing()

    def _end_editing(self) -> None:
        self._editing = None
        self.query_one("#prompt", Composer).border_title = None

    def action_focus_composer(self) -> None:
        self.query_one("#prompt", Composer).focus()

    def action_help(self, note: str = "") -> None:
        keys = [(self._key_of(b), b.description) for b in [*self.BINDINGS, *Composer.BINDINGS, *MessageView.BINDINGS]
                if isinstance(b, Binding)]
        self.push_screen(HelpScreen(SlashCommand.help_text(), keys, note))

    def _key_of(self, binding: Binding) -> str:
        """The key a binding is on now (config.toml's [keys] may have moved it)."""
        return self.session.config.keys.get(binding.id or "", binding.key)

    async def action_new_conversation(self) -> None:
        """A fresh, empty conversation, stored on its first message (so no empty rows pile up);
        the memory panel and status start from nothing, and the box has the focus."""
        if self._cancel is not None:
            self.notify("a reply is being generated: wait, or press Escape", severity="warning")
            return
        self._stop_editing()
        self.session.start_new()
        await self._show_conversation()
        self.refresh_conversations(self.query_one("#conversation-search", Input).value)
        self.action_focus_composer()

    def action_search_conversations(self) -> None:
        self.query_one("#conversation-search", Input).focus()

    @on(Input.Changed, "#conversation-search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.refresh_conversations(event.value)

    @on(Input.Submitted, "#conversation-search")
    async def _search_submitted(self, event: Input.Submitted) -> None:
        """Enter in the search field opens the highlighted (first) result."""
        view = self.query_one("#conversations", ListView)
        if view.highlighted_child is None:
            self.notify(f"no conversation matches {event.value!r}", severity="warning")
            return
        await self._open(view.highlighted_child.conversation_id)

    @on(ListView.Selected, "#conversations")
    async def _conversation_chosen(self, event: ListView.Selected) -> None:
        await self._open(event.item.conversation_id)

    async def _open(self, conversation_id: int) -> None:
        if self._cancel is not None:
            self.notify("a reply is being generated: wait, or press Escape", severity="warning")
            return
        self._stop_editing()
        self.session.select(conversation_id)
        self.session.last_prompt = None
        await self._show_conversation()
        self.action_focus_composer()

    def action_rename_conversation(self) -> None:
        conversation = self.session.conversation()
        if conversation is None:
            self.notify("no conversation yet: send a message first", severity="warning")
            return

        def done(title: str | None) -> None:
            if title:
                try:
                    self.session.rename(conversation.id, title)
                except QuarkError as exc:
                    self.notify(str(exc), severity="error")
                self.refresh_conversations()

        self.push_screen(TextPrompt("Rename conversation", conversation.title), done)

    def action_delete_conversation(self) -> None:
        conversation = self.session.conversation()
        if conversation is None or self._cancel is not None:
            return

        async def done(yes: bool | None) -> None:
            if yes:
                self.session.delete(conversation.id)
                self.session.last_prompt = None
                await self._show_conversation()
                self.refresh_conversations()
                self.notify(f"deleted \"{conversation.title}\" and what was learnt from it")

        self.push_screen(Confirm(f"Delete \"{conversation.title}\" and its memories?"), done)

    def action_checkpoints(self) -> None:
        async def done(name: str | None) -> None:
            if name:
                await self.run_slash(SlashCommand("load", name))

        self.push_screen(CheckpointPicker(self.session.snapshots()), done)

    def action_toggle_memory(self) -> None:
        panel = self.query_one("#memory")
        panel.display = not panel.display

    def _selected_message(self) -> MessageView | None:
        focused = self.focused
        if isinstance(focused, MessageView):
            return focused
        replies = [v for v in self.query(MessageView) if v.role == "assistant"]
        return replies[-1] if replies else None

    # ---- acting on a message -----------------------------------------------------------------
    def on_descendant_focus(self) -> None:
        self._status()  # the selected message's keys, in the status bar

    def on_descendant_blur(self) -> None:
        self._status()

    def _view_of(self, message_id: int) -> MessageView | None:
        return next((v for v in self.query(MessageView) if v.message_id == message_id), None)

    def _chosen(self, what: str, role: str | None = None) -> MessageView | None:
        """The selected message for `what`, or None after a notice saying what is missing."""
        view = self.focused
        if not isinstance(view, MessageView) or view.message_id is None:
            self.notify(f"{what}: select a message first (Ctrl+Up or Shift+Tab from the box, then ↑/↓)",
                        severity="warning")
            return None
        if role is not None and view.role != role:
            self.notify(f"{what} works on {role} messages; #{view.message_id} is a {view.role} message",
                        severity="warning")
            return None
        if self._cancel is not None:
            self.notify("a reply is being generated: wait, or press Escape to stop it first", severity="warning")
            return None
        return view

    def action_select_message(self, step: int = -1) -> None:
        """Move the selection `step` messages (from the box: to the newest); past the newest,
        back to the box."""
        views = [v for v in self.query(MessageView) if v.message_id is not None]
        if not views:
            self.notify("no messages to select yet", severity="warning")
            return
        if self.focused in views:
            index = views.index(self.focused) + step
            if index >= len(views):
                self.action_focus_composer()
                return
            index = max(0, index)
        else:
            index = len(views) - 1 if step < 0 else 0
        views[index].focus()
        views[index].scroll_visible(animate=False)

    def action_edit_message(self) -> None:
        """Put the selected message of yours in the box; Enter resends it as a new branch."""
        view = self._chosen("edit and resend", "user")
        if view is None:
            return
        prompt = self.query_one("#prompt", Composer)
        self._editing = (view.message_id, prompt.text if self._editing is None else self._editing[1])
        prompt.value = view.text
        prompt.border_title = f"editing #{view.message_id} · Enter resends as a new branch · Esc cancels"
        prompt.focus()
        self._status()

    def action_regenerate(self) -> None:
        """A new reply beside the selected one (or to the selected message of yours); the old one stays."""
        view = self._chosen("regenerate")
        if view is None:
            return
        messages = self.query_one("#messages", VerticalScroll)
        children = list(messages.children)
        question = next((c for c in reversed(children[:children.index(view) + 1])
                         if isinstance(c, MessageView) and c.role == "user"), None)
        after = children.index(question) + 1 if question is not None else children.index(view)
        self._cut = children[after] if after < len(children) else None
        self._pending = ""
        message_id = view.message_id
        self._start_turn(lambda: self.session.begin_regenerate(message_id, tool_choice=self.tool_choice))

    async def action_sibling(self, step: int) -> None:
        """Show the previous (-1) or next (+1) alternative of the selected message: its branch."""
        view = self._chosen("switching branches")
        if view is None:
            return
        found, index = self.session.siblings(view.message_id)
        if not 0 <= index + step < len(found):
            self.notify(f"#{view.message_id} has no {'earlier' if step < 0 else 'later'} alternative"
                        + ("" if len(found) > 1 else ": edit it (e) or regenerate it (r) to make one"))
            return
        position = list(self.query(MessageView)).index(view)
        target = self.session.switch_sibling(view.message_id, step)
        await self._show_conversation()
        views = list(self.query(MessageView))
        shown = self._view_of(target.id) or (views[position] if position < len(views) else None)
        if shown is not None:
            shown.focus()
            shown.scroll_visible(animate=False)

    def action_rate(self, rating: int) -> None:
        """Rate the selected reply + or - (the same key again clears it)."""
        view = self._chosen("rating", "assistant")
        if view is None:
            return
        current = view.feedback.rating if view.feedback is not None else 0
        feedback = self.session.rate(view.message_id, 0 if current == rating else rating)
        view.set_marks(view.branch, feedback)
        self.notify(f"#{view.message_id} rated {'+' if feedback.rating > 0 else '-'}" if feedback.rating
                    else f"#{view.message_id}: rating cleared")

    def action_mark_best(self) -> None:
        """Mark the selected reply better than its siblings (after regenerating)."""
        view = self._chosen("marking the better reply", "assistant")
        if view is None:
            return
        try:
            self.session.mark_best(view.message_id)
        except QuarkError as exc:
            self.notify(str(exc), severity="warning")
            return
        self._mark_views()
        self.notify(f"#{view.message_id} marked better than its siblings (a preference pair for "
                    "quark finetune dpo --from-feedback)")

    def action_settings(self) -> None:
        """This conversation's settings in a dialog (what `/set KEY VALUE` changes one by one)."""
        c = self.session.config
        defaults = {"temperature": c.temperature, "top_p": c.top_p, "top_k": c.top_k, "max_tokens": c.max_tokens,
                    "seed": c.seed if c.seed is not None else "random", "adapter": self.session.default_adapter}
        conversation = self.session.conversation()

        def done(result) -> None:
            if result is None:
                return
            settings, system = result
            try:
                self.session.update_settings(settings, system_prompt=system)
            except QuarkError as exc:
                self.notify(str(exc), severity="error")
                return
            self.refresh_conversations()
            self._status()
            self.notify("settings saved for this conversation")

        self.push_screen(SettingsScreen(self.session.settings(), conversation.system_prompt if conversation
                                        else self.session.config.system_prompt, defaults), done)

    def action_copy_message(self) -> None:
        view = self._selected_message()
        if view is not None:
            self.copy_to_clipboard(view.text)
            self.notify("message copied")

    def action_copy_code(self) -> None:
        view = self._selected_message()
        blocks = code_blocks(view.text) if view is not None else []
        if not blocks:
            self.notify("no code block in this message", severity="warning")
            return
        self.copy_to_clipboard("\n".join(blocks))
        self.notify(f"copied {len(blocks)} code block{'s' if len(blocks) > 1 else ''}")

    def action_export(self) -> None:
        """Write this conversation to <home>/exports/conversation-ID.md (as `quark chat export`)."""
        if self.session.conversation_id is None:
            self.notify("nothing to export yet: send a message first", severity="warning")
            return
        folder = self.session.home.root / "exports"
        folder.mkdir(exist_ok=True)
        try:
            done = self.session.export(folder / f"conversation-{self.session.conversation_id}.md")
        except QuarkError as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(f"exported to {done['path']}")

    async def action_quit(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
        self.exit()

    def _reopen(self, conversation_id: int) -> None:
        try:
            self.session.select(conversation_id)
        except QuarkError:  # deleted since (by another process, or the CLI): start afresh
            self.session.start_new()

    def on_unmount(self) -> None:
        self.session.set_preference(OPEN_CONVERSATION, self.session.conversation_id)
        if self._cancel is not None:  # however the app ends, a streaming turn stops (and stores what it has)
            self._cancel.set()
        if self._engine_lock.acquire(timeout=30):  # let a stopped turn store its partial reply first
            self._engine_lock.release()
        self.session.close()


def check_keys(keys: dict[str, str], source: Path) -> None:
    """Refuse [keys] entries that name no binding (Textual would ignore them silently)."""
    known = sorted(b.id for b in [*ChatApp.BINDINGS, *Composer.BINDINGS, *MessageView.BINDINGS]
                   if isinstance(b, Binding) and b.id)
    unknown = sorted(set(keys) - set(known))
    if unknown:
        raise QuarkError(f"{source}: unknown key binding keys.{unknown[0]} (bindings: {', '.join(known)})")


def run_app(home: Home, *, model: str | None = None, conversation_id: int | None = None,
            checkpoint: str | None = None, adapter: str | None = None, device: str = "auto",
            quantize: str | None = None, index: str | None = None, reranker: str | None = None,
            tools: str | None = None, workspace: str | None = None, allow_risky: bool = False,
            max_steps: int = 4, prefix_cache_mb: float = 512.0, compile: str = "auto",
            image_model: str | None = None, mesh_model: str | None = None, mesh_adapter: str | None = None) -> None:
    # A bad config.toml is a one-line error before the screen opens.
    check_keys(load_config(home.config_path).keys, home.config_path)
    ChatApp(home, model=model, conversation_id=conversation_id, checkpoint=checkpoint, adapter=adapter, device=device,
            quantize=quantize, index=index, reranker=reranker, tools=tools, workspace=workspace,
            allow_risky=allow_risky, max_steps=max_steps, prefix_cache_mb=prefix_cache_mb, compile=compile,
            image_model=image_model, mesh_model=mesh_model, mesh_adapter=mesh_adapter).run()
