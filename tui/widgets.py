"""The chat app's widgets: messages, the prompt input with history, the memory panel, the status
bar and the modal pickers. They only display and collect input; the app drives the session."""

from __future__ import annotations

import json

from markdown_it import MarkdownIt
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message as UIMessage
from textual.screen import ModalScreen
from textual.widgets import Button, Collapsible, Input, Label, ListItem, Markdown, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from quark.chat.feedback import Feedback
from quark.chat.prompt import BuiltPrompt
from quark.chat.settings import DESCRIPTIONS, ConversationSettings
from quark.chat.store import Conversation, Message
from quark.errors import QuarkError
from quark.memory.store import Hit


def code_blocks(markdown: str) -> list[str]:
    """The fenced and indented code blocks of a markdown text, in order (for 'copy code')."""
    return [token.content for token in MarkdownIt("commonmark").parse(markdown) if token.type in ("fence",
                                                                                                  "code_block")]


class MessageView(Vertical, can_focus=True):
    """One message: a role line and its markdown body (streamed into while it is generated).

    Focused, it is the selected message (a thick bar on its left): the keys below act on it, and
    its role line shows its place among its alternatives ("2/3") and its feedback."""

    DEFAULT_CSS = """
    MessageView { height: auto; margin: 0 0 1 0; padding: 0 1; border-left: blank; }
    MessageView:focus { background: $boost; border-left: thick $accent; }
    MessageView > .role { color: $text-muted; text-style: bold; }
    MessageView.user > .role { color: $accent; }
    MessageView > Markdown { margin: 0; padding: 0; }
    """
    # Keys on the selected message; the actions are the app's (they call the session).
    BINDINGS = [
        Binding("up,k", "app.select_message(-1)", "Previous message", id="previous_message", show=False),
        Binding("down,j", "app.select_message(1)", "Next message", id="next_message", show=False),
        Binding("left,left_square_bracket", "app.sibling(-1)", "Previous branch", id="previous_branch", show=False),
        Binding("right,right_square_bracket", "app.sibling(1)", "Next branch", id="next_branch", show=False),
        Binding("e", "app.edit_message", "Edit and resend", id="edit_message", show=False),
        Binding("r", "app.regenerate", "Regenerate the reply", id="regenerate", show=False),
        Binding("c", "app.copy_message", "Copy the message", id="copy_selected", show=False),
        Binding("plus,equals_sign", "app.rate(1)", "Rate the reply +", id="rate_up", show=False),
        Binding("minus", "app.rate(-1)", "Rate the reply -", id="rate_down", show=False),
        Binding("b", "app.mark_best", "Mark the better reply", id="mark_best", show=False),
    ]
    HINT = "e edit · r regenerate · ←/→ or [/] branches · +/- rate · b better · c copy · ↑/↓ move · Esc back"

    def __init__(self, role: str, text: str = "", message_id: int | None = None) -> None:
        super().__init__(classes=role)
        self.role, self.text, self.message_id, self.note = role, text, message_id, ""
        self.branch: tuple[int, int] | None = None  # (place, count) among its alternatives
        self.feedback: Feedback | None = None

    def compose(self) -> ComposeResult:
        yield Label(self._label(), classes="role")
        # The user's own words are shown as typed (as chat UIs do): plain text is one cheap widget,
        # where markdown is a widget per block, and mounting it sits between Enter and the reply.
        yield Markdown(self.text) if self.role == "assistant" else Static(self.text, markup=False, classes="body")

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    def set_id(self, message_id: int, note: str = "") -> None:
        self.message_id, self.note = message_id, note
        for label in self.query(".role").results(Label):  # none yet when it is still being composed
            label.update(self._label())

    def set_marks(self, branch: tuple[int, int] | None, feedback: Feedback | None) -> None:
        self.branch, self.feedback = branch, feedback
        self.set_id(self.message_id, self.note)

    def _label(self) -> str:
        marks = [self.note] if self.note else []
        if self.branch:
            marks.insert(0, f"‹ {self.branch[0]}/{self.branch[1]} ›")
        if self.feedback is not None and self.feedback.rating:
            marks.append("rated +" if self.feedback.rating > 0 else "rated -")
        if self.feedback is not None and self.feedback.best:
            marks.append("better")
        return f"{self.role}" + (f"  #{self.message_id}" if self.message_id else "") + \
            "".join(f"  · {m}" for m in marks)


class Composer(TextArea):
    """The multi-line message box. Enter sends; Shift+Enter, Alt+Enter or Ctrl+J add a line
    (terminals without the kitty keyboard protocol send Shift+Enter as plain Enter, so Ctrl+J is
    the one that always works); a paste keeps every line. Up on the first line and Down on the
    last walk through what was sent before. The keys have ids (`send`, `newline`) that config.toml's
    [keys] table can rebind, like the app's."""

    DEFAULT_CSS = """
    Composer { height: auto; min-height: 3; max-height: 12; border: round $panel; }
    Composer:focus { border: round $accent; }
    """
    BINDINGS = [Binding("enter", "send", "Send", id="send", priority=True, show=False),
                Binding("shift+enter,alt+enter,ctrl+j", "newline", "New line", id="newline", priority=True,
                        show=False)]

    class Submitted(UIMessage):
        """Enter was pressed: `text` is the box's whole content (still in the box)."""

        def __init__(self, composer: Composer, text: str) -> None:
            super().__init__()
            self.composer, self.text = composer, text

        @property
        def control(self) -> Composer:
            return self.composer

    def __init__(self, **kwargs) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus", **kwargs)
        self.sent: list[str] = []
        self._position = 0

    @property
    def value(self) -> str:
        return self.text

    @value.setter
    def value(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)

    def action_send(self) -> None:
        self.post_message(self.Submitted(self, self.text))

    def action_newline(self) -> None:
        self.insert("\n")

    def remember(self, text: str) -> None:
        if text and (not self.sent or self.sent[-1] != text):
            self.sent.append(text)
        self._position = len(self.sent)

    def action_cursor_up(self, select: bool = False) -> None:
        if self.cursor_location[0] == 0 and not select and self.sent:
            self.action_history(-1)
        else:
            super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        if self.cursor_location[0] == self.document.line_count - 1 and not select and self.sent:
            self.action_history(1)
        else:
            super().action_cursor_down(select)

    def action_history(self, step: int) -> None:
        if not self.sent:
            return
        self._position = max(0, min(len(self.sent), self._position + step))
        self.value = self.sent[self._position] if self._position < len(self.sent) else ""


class ConversationItem(ListItem):
    def __init__(self, conversation: Conversation) -> None:
        super().__init__(Label(conversation.title, markup=False))
        self.conversation_id = conversation.id


class MemoryPanel(Static):
    """What memory put into the last prompt, or the results of /search."""

    DEFAULT_CSS = "MemoryPanel { width: 36; height: 1fr; padding: 0 1; border-left: solid $panel; overflow-y: auto; }"

    def show_prompt(self, prompt: BuiltPrompt | None, cited: list[int] = ()) -> None:
        text = Text()
        text.append("Memory in the last prompt\n", style="bold")
        if prompt is None:
            text.append("(nothing yet)\n", style="dim")
        else:
            if prompt.sources:
                text.append("Sources\n", style="bold")
            for source in prompt.sources:
                text.append(f"[{source.n}] ", style="green" if source.n in cited else "cyan")
                text.append(f"{source.ref}", style="underline")
                text.append(f"{'  ' + source.title if source.title else ''}{'  cited' if source.n in cited else ''}\n",
                            style="dim")
            if prompt.omitted_sources:
                text.append(f"{len(prompt.omitted_sources)} more sources did not fit\n", style="yellow")
            if prompt.checkpoint:
                text.append(f"checkpoint {prompt.checkpoint}\n", style="magenta")
            for memory in prompt.memories:
                text.append(f"[{memory.memory.ref}] ", style="cyan")
                text.append(f"{memory.memory.text[:120]}", style="")
                text.append(f"  {memory.source}\n", style="dim")
            if prompt.omitted_memories:
                text.append(f"{len(prompt.omitted_memories)} more did not fit\n", style="yellow")
            if prompt.folded:
                text.append(f"\nsummarized {len(prompt.folded)} older turns:\n", style="bold")
                for line in prompt.folded_lines:
                    text.append(line + "\n", style="dim")
            if prompt.omitted_summary_lines:
                text.append(f"{prompt.omitted_summary_lines} older summary lines left out (searchable)\n",
                            style="yellow")
        self.update(text)

    def show_hits(self, query: str, hits: list[Hit]) -> None:
        text = Text()
        text.append(f"Search: {query}\n", style="bold")
        for hit in hits:
            text.append(f"[{hit.memory.ref}] ", style="cyan")
            text.append(f"{hit.memory.text[:120]}  ")
            text.append(f"{hit.memory.kind}\n", style="dim")
        if not hits:
            text.append("no memories found\n", style="dim")
        self.update(text)


class StatusBar(Static):
    DEFAULT_CSS = "StatusBar { height: 1; background: $panel; color: $text; padding: 0 1; }"

    def show(self, *, model: str | None, adapter: str | None, prompt: BuiltPrompt | None, conversation: int | None,
             state: str, settings: str = "", route: str | None = None) -> None:
        budget = "context -"
        if prompt is not None:
            s = prompt.sections
            budget = (f"context {prompt.tokens}+{prompt.reply_tokens}/{prompt.context_length} "
                      f"(mem {s['memories']}, summary {s['summary']}, window {s['window']})")
        chosen = f"set {settings} · " if settings else ""
        where = f"route {route}" if route else f"adapter {adapter or 'none'}"
        # One line whatever it says (height 1, cropped): no layout of the screen, which would
        # cost a full re-layout on each turn's way to its first token.
        self.update(Text(f"model {model or '-'} · {where} · {chosen}{budget} · "
                         f"conversation {conversation or 'new'} · {state}"), layout=False)


class TextPrompt(ModalScreen[str | None]):
    """Ask for one line of text (rename)."""

    DEFAULT_CSS = "TextPrompt { align: center middle; } TextPrompt > Vertical { width: 60; height: auto; " \
                  "border: thick $accent; padding: 1 2; background: $surface; }"
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, value: str = "") -> None:
        super().__init__()
        self.title_text, self.value = title, value

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text)
            yield Input(self.value, id="value")

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)


class Confirm(ModalScreen[bool]):
    DEFAULT_CSS = "Confirm { align: center middle; } Confirm > Vertical { width: 60; height: auto; " \
                  "border: thick $error; padding: 1 2; background: $surface; }"
    BINDINGS = [Binding("escape,n", "dismiss(False)", "No"), Binding("y", "dismiss(True)", "Yes")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            with Horizontal():
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class CheckpointPicker(ModalScreen[str | None]):
    """Pick a checkpoint to load into the current conversation."""

    DEFAULT_CSS = "CheckpointPicker { align: center middle; } CheckpointPicker > Vertical { width: 80; " \
                  "height: 20; border: thick $accent; background: $surface; padding: 0 1; }"
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, checkpoints: list[dict]) -> None:
        super().__init__()
        self.checkpoints = checkpoints

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Checkpoints (Enter loads into this conversation, Esc cancels)")
            options = [Option(f"{c['name']}  ·  {c['title'][:40]}  ·  {c['messages']} messages, "
                              f"{c['entities']} entities", id=c["name"]) for c in self.checkpoints]
            yield OptionList(*options) if options else Label("no checkpoints yet: /save NAME")

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


class ToolPanel(Collapsible):
    """One tool call, collapsed to a title line: the tool, who asked (model or you), its status
    and duration; expanded, its arguments and result."""

    DEFAULT_CSS = """
    ToolPanel { margin: 0 0 1 0; }
    ToolPanel.ok CollapsibleTitle { color: $success; }
    ToolPanel.failed CollapsibleTitle { color: $error; }
    ToolPanel > Contents > Static { padding: 0 1; }
    """

    def __init__(self, name: str, arguments: str, *, by: str = "model") -> None:
        self.tool, self.by, self.arguments = name, by, arguments
        self.outcome: str | None = None
        self.body = Static(Text(f"arguments: {_pretty(arguments)}\nrunning…"), classes="tool-body")
        super().__init__(self.body, title=self._heading("running…"), collapsed=True)

    def _heading(self, status: str) -> str:
        return f"tool {self.tool} ({self.by}) · {status}"

    def finish(self, outcome: str, duration_s: float, result: object) -> None:
        self.outcome = outcome
        self.title = self._heading(f"{outcome} · {duration_s:.2f}s")
        self.add_class("ok" if outcome == "ok" else "failed")
        shown = result if isinstance(result, str) else json.dumps(result, indent=2, ensure_ascii=False)
        self.body.update(Text(f"arguments: {_pretty(self.arguments)}\n{'result' if outcome == 'ok' else outcome}: "
                              f"{shown}"))

    @property
    def text(self) -> str:
        return str(self.body.render())


def _pretty(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), ensure_ascii=False)
    except ValueError:
        return arguments


class ToolConfirm(ModalScreen[bool]):
    """Ask before a risky tool runs (write_file, checkpoint save/load): y runs it, n or Escape refuses."""

    DEFAULT_CSS = "ToolConfirm { align: center middle; } ToolConfirm > Vertical { width: 80; height: auto; " \
                  "border: thick $warning; padding: 1 2; background: $surface; }"
    BINDINGS = [Binding("escape,n", "dismiss(False)", "No"), Binding("y", "dismiss(True)", "Yes")]

    def __init__(self, tool: str, arguments: str) -> None:
        super().__init__()
        self.tool, self.arguments = tool, arguments

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"The model wants to run the risky tool {self.tool}:", markup=False)
            yield Static(Text(_pretty(self.arguments)[:2000]))
            with Horizontal():
                yield Button("Run it (y)", id="yes", variant="warning")
                yield Button("Refuse (n)", id="no")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


def message_views(messages: list[Message]) -> list[MessageView | ToolPanel]:
    """A thread's widgets: messages, and each stored tool call with its result as a ToolPanel."""
    views: list[MessageView | ToolPanel] = []
    calls: dict[str, tuple[str, str]] = {}  # tool_call_id -> (name, arguments)
    for m in messages:
        if m.role == "assistant" and m.meta.get("tool_calls"):
            calls.update({c["id"]: (c["function"]["name"], c["function"]["arguments"]) for c in m.meta["tool_calls"]})
        elif m.role == "tool":
            name, arguments = calls.get(m.meta.get("tool_call_id"), (m.meta.get("name") or "tool", "{}"))
            panel = ToolPanel(name, arguments)
            try:
                body = json.loads(m.content)
                outcome = "ok" if body.get("ok") else body.get("error", {}).get("type", "error")
                result = body.get("result") if body.get("ok") else body.get("error", {}).get("message")
            except (ValueError, AttributeError):
                outcome, result = "ok", m.content
            panel.finish(m.meta.get("outcome", outcome), m.meta.get("duration_s", 0.0), result)
            views.append(panel)
        else:
            views.append(MessageView(m.role, m.content, m.id))
    return views


class HelpScreen(ModalScreen[None]):
    """Slash commands and keys in a panel that stays until Escape (or q) closes it."""

    DEFAULT_CSS = "HelpScreen { align: center middle; } HelpScreen > VerticalScroll { width: 90; height: 80%; " \
                  "border: thick $accent; background: $surface; padding: 0 1; }"
    BINDINGS = [Binding("escape,q", "dismiss(None)", "Close")]

    def __init__(self, commands: str, keys: list[tuple[str, str]], note: str = "") -> None:
        super().__init__()
        self.commands, self.keys, self.note = commands, keys, note

    def compose(self) -> ComposeResult:
        text = Text()
        if self.note:
            text.append(self.note + "\n\n", style="bold yellow")
        text.append("Slash commands\n", style="bold")
        text.append(self.commands + "\n\n")
        text.append("Keys\n", style="bold")
        for key, description in self.keys:
            text.append(f"{key:<18}", style="cyan")
            text.append(description + "\n")
        text.append("\nEsc closes this panel.", style="dim")
        with VerticalScroll():
            yield Static(text, id="help-text")


class SettingsScreen(ModalScreen[tuple[ConversationSettings, str] | None]):
    """This conversation's settings: each field empty means the home's default (config.toml).
    Enter (in any field) saves them all, or says which value is wrong and stays; Esc cancels."""

    DEFAULT_CSS = """
    SettingsScreen { align: center middle; }
    SettingsScreen > Vertical { width: 90; height: auto; border: thick $accent; padding: 1 2; background: $surface; }
    SettingsScreen .setting { height: 3; }
    SettingsScreen .setting > Label { width: 14; padding: 1 0; }
    SettingsScreen Input { width: 1fr; }
    #settings-error { color: $error; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, settings: ConversationSettings, system_prompt: str, defaults: dict[str, object]) -> None:
        super().__init__()
        self.settings, self.system_prompt, self.defaults = settings, system_prompt, defaults

    def compose(self) -> ComposeResult:
        current = self.settings.as_dict()
        with Vertical():
            yield Label("Settings of this conversation (empty: the default shown; Enter saves, Esc cancels)")
            for key in DESCRIPTIONS:
                with Horizontal(classes="setting"):
                    yield Label(key)
                    default = self.defaults.get(key)
                    yield Input(str(current.get(key, "")), placeholder=f"{'none' if default is None else default}  "
                                f"({DESCRIPTIONS[key]})", id=f"setting-{key}")
            with Horizontal(classes="setting"):
                yield Label("system")
                yield Input(self.system_prompt, placeholder="system prompt (empty: none)", id="setting-system")
            yield Label("", id="settings-error")

    @on(Input.Submitted)
    def _save(self) -> None:
        settings = ConversationSettings()
        try:
            for key in DESCRIPTIONS:
                settings = settings.with_value(key, self.query_one(f"#setting-{key}", Input).value)
        except QuarkError as exc:
            self.query_one("#settings-error", Label).update(str(exc))
            return
        self.dismiss((settings, self.query_one("#setting-system", Input).value.strip()))
