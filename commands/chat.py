"""`quark chat`: the Textual TUI, or one scripted turn with --message / stdin."""

import json
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from quark.agent.events import ToolCallFinished
from quark.commands._cli import Cli, group, quark_command
from quark.commands._options import (
    DEFAULT_PREFIX_CACHE_MB,
    Compile,
    CompileOption,
    DeviceOption,
    PrefixCacheOption,
    QuantizeOption,
    adapter_option,
    model_option,
    name_value,
    quantize_mode,
)
from quark.errors import QuarkError
from quark.inputs import read_stdin_text
from quark.tui.slash import parse_slash

# `quark chat` chats (TUI or scripted) and `quark chat export …` is a subcommand: the chat
# command is the group's own callback, so it runs when no subcommand is named.
chat_group = typer.Typer(name="chat", help="Chat with a model (TUI or scripted); export conversations; "
                         "feedback on replies.", no_args_is_help=False, add_completion=False,
                         rich_markup_mode="rich", pretty_exceptions_enable=False)
feedback_group = group("feedback", "Rate chat replies and export the ratings as DPO preference pairs.")
chat_group.add_typer(feedback_group)


@quark_command(chat_group, group_default=True)
def chat(
    cli: Cli,
    ctx: typer.Context,
    message: Annotated[Optional[str], typer.Option("--message", help="Send one message and print the reply "
                                                   "('-', or omitted when stdin is not a terminal: read from "
                                                   "stdin).")] = None,
    conversation: Annotated[Optional[int], typer.Option("--conversation", min=1,
                                                        help="Continue this conversation (default: a new "
                                                             "one).")] = None,
    continue_last: Annotated[bool, typer.Option("--continue", "-c", help="Continue the most recent conversation "
                                                "(as `llm -c`).")] = False,
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", help="Restore this checkpoint first (into "
                                                      "--conversation, or a new conversation).")] = None,
    model: Annotated[Optional[str], model_option("Model to chat with (default: the conversation's, "
                                                 "else the last used, else the only one).")] = None,
    adapter: Annotated[Optional[str], adapter_option("A LoRA adapter of --model "
                                                     "(models/<model>/adapters/<name>).")] = None,
    quantize: QuantizeOption = None,
    device: DeviceOption = "auto",
    index: Annotated[Optional[str], typer.Option("--index", help="Ground replies in this document index: its top "
                                                 "chunks go into the prompt as numbered sources, cited [n].")] = None,
    reranker: Annotated[Optional[str], typer.Option("--reranker", help="Rerank --index's candidates with this "
                                                    "reranker (from quark finetune rerank).")] = None,
    prefix_cache_mb: PrefixCacheOption = DEFAULT_PREFIX_CACHE_MB,
    compile: CompileOption = Compile.auto,
    system: Annotated[Optional[str], typer.Option("--system", help="Set the conversation's system prompt.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", min=1, help="Longest reply, in tokens.")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", min=0.0, help="0 is greedy.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0,
                                                help="Sampling seed, for a reproducible reply.")] = None,
    tools: Annotated[Optional[str], typer.Option("--tools", help="Let the model call these tools: groups "
                                                 "(web, code, files, memory, mesh, all) or tool names, comma-separated "
                                                 "(see `quark tools list`).")] = None,
    workspace: Annotated[Optional[str], typer.Option("--workspace", help="The folder file tools and run_tests "
                                                     "work in (nothing outside it).")] = None,
    allow_risky: Annotated[bool, typer.Option("--allow-risky", help="Run risky tools (write_file, checkpoint "
                                              "save/load) without asking; scripted chat refuses them "
                                              "otherwise.")] = False,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Tool-calling steps per turn before the "
                                           "answer.")] = 4,
    tool_choice: Annotated[str, typer.Option("--tool-choice", help="The first step's tool choice (OpenAI "
                                             "semantics): auto (the model decides), required (some tool), none, "
                                             "or a tool's name; later steps are auto.")] = "auto",
    web: Annotated[bool, typer.Option("--web", help="Serve the TUI to a browser (textual-serve) instead of the "
                                      "terminal.")] = False,
    host: Annotated[str, typer.Option("--host", help="With --web: address to listen on; anything but loopback "
                                      "needs a serve key (quark serve keys create NAME).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="With --web: port; 0 picks a free one "
                                      "(printed).")] = 8000,
    tui: Annotated[bool, typer.Option("--tui", hidden=True, help="Open the TUI even without a terminal (what "
                                      "each --web browser tab runs).")] = False,
    image_model: Annotated[Optional[str], typer.Option("--image-model", help="Image model for /image PROMPT "
                                                       "(default: the home's only one).")] = None,
    edit: Annotated[Optional[int], typer.Option("--edit", min=1, help="Edit and resend your message ID as --message: "
                                                "a new branch beside it (the old one is kept).")] = None,
    regenerate: Annotated[Optional[int], typer.Option("--regenerate", min=1, help="A new reply beside reply ID (or "
                                                      "to your message ID); the old reply is kept.")] = None,
    mesh_model: Annotated[Optional[str], typer.Option("--mesh-model", callback=name_value,
                                                      help="Model that writes scene programs for /mesh PROMPT "
                                                           "(default: the chat's model).")] = None,
    mesh_adapter: Annotated[Optional[str], typer.Option("--mesh-adapter", callback=name_value,
                                                        help="The --mesh-model's 3D-prompt LoRA adapter (trained on "
                                                             "quark data synth --kind mesh).")] = None,
) -> dict | None:
    """Chat with a model, with memory and checkpoints.

    With a terminal and no --message this opens the TUI. Otherwise it sends one message and prints the
    reply; --json adds the conversation id, the memories and checkpoint put into the prompt, and the
    turns that were folded into the summary.

    Example:

        quark chat --message "My name is Ada; we decided to use SQLite." --json
        echo "What did we decide?" | quark chat --conversation 1
        quark chat --checkpoint work --message "Where were we?"
        quark chat --index docs --message "How is a checkpoint written?" --json   # sources and citations
        quark chat --tools code --message "What is 37 * 41? Use Python." --json
        quark chat --tools web,files --workspace ./notes --allow-risky --message "Save a summary of ..."
        quark chat --tools web --tool-choice web_search --message "Find the SQLite WAL docs"
        quark chat --image-model shapes --message "/image a large red circle in the center" --json
        quark chat --mesh-model base --mesh-adapter mesh --message "/mesh a red mug" --json
        quark chat -c --message "And then?"
        quark chat --regenerate 2 --json                  # another reply beside reply #2
        quark chat --edit 1 --message "My name is Bob."   # resend message #1 changed, as a new branch
        quark chat --web --port 8001        # the same TUI at http://127.0.0.1:8001

    With --tools the model may call tools before it answers; each call (name, arguments, outcome,
    result, duration) is printed as a line, and listed under "tool_calls" with --json.
    """
    if ctx.invoked_subcommand is not None:
        return None
    from quark.chat import ChatSession  # torch loads here, not for `quark --help`

    if continue_last:
        if conversation is not None:
            raise QuarkError("--continue and --conversation both pick a conversation: give one of them")
        conversation = _latest_conversation(cli)

    if web:
        return _serve_web(cli, host, port, model=model, conversation=conversation, checkpoint=checkpoint,
                          adapter=adapter, quantize=quantize, device=device, image_model=image_model,
                          mesh_model=mesh_model, mesh_adapter=mesh_adapter)
    if regenerate is not None and (message is not None or edit is not None):
        raise QuarkError("--regenerate writes a new reply to an earlier message: it takes no --message or --edit")
    if message is None and regenerate is None and (tui or sys.stdin.isatty()):
        if cli.json:
            raise QuarkError("--json needs --message (or a message on stdin); the TUI has no JSON output")
        from quark.tui.app import run_app

        run_app(cli.home, model=model, conversation_id=conversation, checkpoint=checkpoint, adapter=adapter,
                device=device, quantize=quantize_mode(quantize), index=index, reranker=reranker, tools=tools,
                workspace=workspace, allow_risky=allow_risky, max_steps=max_steps, prefix_cache_mb=prefix_cache_mb,
                compile=compile.value, image_model=image_model, mesh_model=mesh_model, mesh_adapter=mesh_adapter)
        return None
    text = "" if regenerate is not None else read_stdin_text() if message in (None, "-") else message
    if regenerate is None and not text.strip():
        raise QuarkError("the message is empty (pass --message TEXT or pipe text on stdin)")
    command = parse_slash(text)
    if command is not None and command.name == "image" and edit is None:
        return _draw(cli, command.argument, image_model, seed, device)
    if command is not None and command.name == "mesh" and edit is None:
        return _model_mesh(cli, command.argument, mesh_model or model, mesh_adapter, seed, device)
    session = ChatSession(cli.home, model=model, adapter=adapter, conversation_id=conversation, device=device,
                          quantize=quantize_mode(quantize), index=index, reranker=reranker,
                          prefix_cache_mb=prefix_cache_mb, compile=compile.value)
    try:
        if tools:
            session.enable_tools(tools, workspace=workspace, allow_risky=allow_risky, max_steps=max_steps)
            from quark.tools.builtin.mesh import use_mesh_model

            use_mesh_model(session.tools, mesh_model, mesh_adapter)
        elif workspace or allow_risky:
            raise QuarkError("--workspace and --allow-risky go with --tools (which tools the model may call)")
        if checkpoint:
            session.load_snapshot(checkpoint, into="current" if conversation is not None else "new")
        if system is not None:
            session.set_system(system)
        params = session.params(max_tokens=max_tokens, temperature=temperature, seed=seed)

        held: list[str] = []  # a reply that opens like a tool call is held back until it is whole

        def show(piece: str) -> None:
            if cli.json:
                return
            if held or (not "".join(held).strip() and piece.lstrip().startswith("{")):
                held.append(piece)
                return
            sys.stdout.write(piece)
            sys.stdout.flush()

        def called(event) -> None:  # a line per call; the answer's text follows the calls
            if not cli.json and isinstance(event, ToolCallFinished):
                cli.err.print(f"[dim]tool {escape(event.summary())}[/]")

        first = tool_choice if tool_choice in ("auto", "required", "none") else {
            "type": "function", "function": {"name": tool_choice}}
        if tool_choice != "auto" and not tools:
            raise QuarkError("--tool-choice goes with --tools (which tools the model may call)")
        if regenerate is not None:
            result = session.regenerate(regenerate, params, on_text=show, on_event=called, tool_choice=[first])
        elif edit is not None:
            result = session.edit_and_resend(edit, text, params, on_text=show, on_event=called, tool_choice=[first])
        else:
            result = session.send(text, params, on_text=show, on_event=called, tool_choice=[first])
    finally:
        session.close()
    if not cli.json:
        calls = result.unrun_tool_calls
        if calls:
            for call in calls:
                cli.print(f"[yellow]tool call (not run):[/] {call['name']}({json.dumps(call['arguments'])})",
                          highlight=False, soft_wrap=True)
        else:
            sys.stdout.write("".join(held))
        sys.stdout.write("\n")
        notes = [f"conversation {result.conversation_id}", f"{len(result.prompt.memories)} memories"]
        if result.prompt.checkpoint:
            notes.append(f"checkpoint {result.prompt.checkpoint}")
        if result.prompt.folded:
            notes.append(f"{len(result.prompt.folded)} turns summarized")
        cli.err.print(f"[dim]{' · '.join(notes)}[/]")
        for source in result.sources():
            cli.err.print(f"[dim][{source['n']}] {source['ref']}{' (cited)' if source['cited'] else ''}[/]")
    return result.as_dict()


def _serve_web(cli: Cli, host: str, port: int, **options: object) -> None:
    """`quark chat --web`: each browser tab runs `quark chat --tui` with the same options."""
    from quark.tui.web import open_web_chat

    command = [sys.executable, "-m", "quark", "chat", "--tui", "--home", str(cli.home.root)]
    for name, value in options.items():
        if value is not None:
            # an enum option by its value
            command += [f"--{name.replace('_', '-')}", str(getattr(value, "value", value))]
    server, auth = open_web_chat(shlex.join(command), cli.home.db_path, host, port)
    if cli.json:
        print(json.dumps({"url": server.public_url, "auth": auth}), flush=True)
    else:
        cli.print(f"quark chat on {server.public_url}"
                  f"{'/?key=KEY (a serve key is required)' if auth else ''}; Ctrl-C stops")
        sys.stdout.flush()
    server.serve()
    return None


def _latest_conversation(cli: Cli) -> int:
    from quark.chat.store import ChatStore
    from quark.db import connect

    conn = connect(cli.home.db_path)
    try:
        latest = ChatStore(conn).latest_conversation()
    finally:
        conn.close()
    if latest is None:
        raise QuarkError("--continue: there is no conversation yet (start one with quark chat --message TEXT)")
    return latest.id


class ExportFormat(str, Enum):
    md = "md"
    json = "json"


@quark_command(chat_group, "export")
def chat_export(
    cli: Cli,
    conversation: Annotated[int, typer.Argument(help="The conversation's id (quark chat --json prints it).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The file to write.")],
    fmt: Annotated[Optional[ExportFormat], typer.Option("--format", help="md (the thread) or json (the whole "
                                                        "message tree); default: from -o's suffix.")] = None,
) -> dict:
    """Export a conversation as Markdown or JSON.

    Example:

        quark chat export 3 -o ada.md
        quark chat export 3 -o ada.json --format json
    """
    from quark.chat.export import export
    from quark.chat.store import ChatStore
    from quark.db import connect

    conn = connect(cli.home.db_path)
    try:
        done = export(ChatStore(conn), conversation, output, fmt.value if fmt else None)
    finally:
        conn.close()
    cli.print(f"wrote conversation {conversation} to {done['path']} ({done['format']}, {done['bytes']} bytes)")
    return done


def _draw(cli: Cli, prompt: str, image_model: Optional[str], seed: Optional[int], device: str) -> dict:
    """`/image PROMPT` as a scripted message: one PNG under assets/, its path printed."""
    from quark.device import resolve_device
    from quark.image.generate import ImageModel

    if not prompt.strip():
        raise QuarkError("usage: /image PROMPT")
    asset = ImageModel(cli.home, image_model, device=resolve_device(device)).generate(prompt, seed=seed)[0]
    cli.print(asset.path, highlight=False)
    return {"image": asset.path, "asset": asset.as_dict()}


@quark_command(chat_group, "settings")
def chat_settings(
    cli: Cli,
    conversation: Annotated[int, typer.Argument(help="The conversation's id (quark chat --json prints it).")],
    values: Annotated[Optional[list[str]], typer.Argument(help="KEY=VALUE to set (KEY= resets it to the "
                                                          "default): temperature, top_p, top_k, max_tokens, seed, "
                                                          "adapter, system.")] = None,
) -> dict:
    """Show or change a conversation's own settings (the TUI's F5 and /set), used by its next turns.

    Example:

        quark chat settings 3                               # what conversation 3 sets
        quark chat settings 3 temperature=0.2 max_tokens=64 "system=You are terse."
        quark chat settings 3 temperature=                  # back to config.toml's default
    """
    from quark.chat import ChatSession

    session = ChatSession(cli.home, conversation_id=conversation)
    try:
        for item in values or []:
            key, equals, value = item.partition("=")
            if not equals:
                raise QuarkError(f"{item!r}: give settings as KEY=VALUE (KEY= resets one), e.g. temperature=0.2")
            session.set_setting(key, value)
        settings, system = session.settings().as_dict(), session.conversation().system_prompt
    finally:
        session.close()
    shown = ", ".join(f"{k} {v}" for k, v in settings.items()) or "none (the defaults of config.toml)"
    cli.print(f"conversation {conversation}: {shown}; system prompt: {system or '(none)'}", highlight=False,
              markup=False)
    return {"conversation_id": conversation, "settings": settings, "system_prompt": system}


class Rating(str, Enum):
    good = "good"
    bad = "bad"
    clear = "clear"


@quark_command(feedback_group, "rate")
def feedback_rate(
    cli: Cli,
    message: Annotated[int, typer.Argument(help="The reply's message id (the #number in the TUI; "
                                           "assistant_message_id in quark chat --json).")],
    rating: Annotated[Rating, typer.Argument(help="good (+), bad (-) or clear.")],
) -> dict:
    """Rate a reply: a good reply pairs with a bad reply to the same message (DPO pairs).

    Example:

        quark chat --message "Name a prime" --json          # prints assistant_message_id, say 2
        quark chat feedback rate 2 good
    """
    from quark.chat.feedback import FeedbackStore
    from quark.db import connect, transaction

    conn = connect(cli.home.db_path)
    try:
        with transaction(conn):
            done = FeedbackStore(conn).rate(message, {"good": 1, "bad": -1, "clear": 0}[rating.value])
    finally:
        conn.close()
    cli.print(f"message {message}: {rating.value}")
    return {"message_id": done.message_id, "rating": done.rating, "best": done.best}


@quark_command(feedback_group, "best")
def feedback_best(
    cli: Cli,
    message: Annotated[int, typer.Argument(help="The better reply's message id, among replies to one message.")],
) -> dict:
    """Mark a reply better than the other replies to the same message (after regenerating).

    Example:

        quark chat feedback best 5
    """
    from quark.chat.feedback import FeedbackStore
    from quark.db import connect, transaction

    conn = connect(cli.home.db_path)
    try:
        with transaction(conn):
            done = FeedbackStore(conn).mark_best(message)
    finally:
        conn.close()
    cli.print(f"message {message}: marked better than its siblings")
    return {"message_id": done.message_id, "rating": done.rating, "best": done.best}


@quark_command(feedback_group, "export")
def feedback_export(
    cli: Cli,
    output: Annotated[Path, typer.Option("--output", "-o", help="The JSONL file to write.")],
) -> dict:
    """Write the home's feedback as preference pairs {prompt, chosen, rejected}, one per line: the
    format `quark finetune dpo --data` reads (`quark finetune dpo --from-feedback` trains on them
    directly). A reply marked better pairs with each other reply to its message; a good reply
    pairs with a bad reply to the same message.

    Example:

        quark chat feedback export -o pairs.jsonl
        quark finetune dpo --model tiny-sft --data pairs.jsonl --name tiny-fb
    """
    from quark.chat.feedback import write_pairs
    from quark.db import connect

    conn = connect(cli.home.db_path)
    try:
        done = write_pairs(conn, output)
    finally:
        conn.close()
    skipped = f" ({', '.join(f'{n} {why}' for why, n in done['skipped'].items())} left out)" if done["skipped"] else ""
    cli.print(f"wrote {done['pairs']} preference pairs to {done['path']}{skipped}")
    return done
def _model_mesh(cli: Cli, prompt: str, model: Optional[str], adapter: Optional[str], seed: Optional[int],
                device: str) -> dict:
    """`/mesh PROMPT` as a scripted message: a mesh (GLB) and its preview under assets/, the path
    and its checks printed. The model is --mesh-model, else --model, else the home's only one."""
    from quark.chat.session import ChatSession
    from quark.mesh.text_to_mesh import MeshGenerator, summary

    if not prompt.strip():
        raise QuarkError("usage: /mesh PROMPT")
    if model is None:
        session = ChatSession(cli.home)
        try:
            model = session.resolve_model()
        finally:
            session.close()
    asset = MeshGenerator(cli.home, model, adapter=adapter, device=device).generate(prompt, seed=seed or 0)
    cli.print(f"{summary(asset)}\n{asset['path']}\npreview {asset['preview']}", highlight=False)
    return {"mesh": asset["path"], "preview": asset["preview"], "asset": asset}


def register(root: typer.Typer) -> None:
    root.add_typer(chat_group)
