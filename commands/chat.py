"""`quark chat`: the Textual TUI, or one scripted turn with --message / stdin."""

import sys
from typing import Annotated, Optional

import typer
from rich.markup import escape

from quark.agent.events import ToolCallFinished
from quark.commands._cli import Cli, quark_command
from quark.commands._options import (
    DEFAULT_PREFIX_CACHE_MB,
    Compile,
    CompileOption,
    DeviceOption,
    PrefixCacheOption,
    QuantizeOption,
    adapter_option,
    model_option,
    quantize_mode,
)
from quark.errors import QuarkError
from quark.inputs import read_stdin_text


def chat(
    cli: Cli,
    message: Annotated[Optional[str], typer.Option("--message", help="Send one message and print the reply "
                                                   "('-', or omitted when stdin is not a terminal: read from stdin).")] = None,
    conversation: Annotated[Optional[int], typer.Option("--conversation", "-c", min=1,
                                                        help="Continue this conversation (default: a new one).")] = None,
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
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="Sampling seed, for a reproducible reply.")] = None,
    tools: Annotated[Optional[str], typer.Option("--tools", help="Let the model call these tools: groups "
                                                 "(web, code, files, memory, all) or tool names, comma-separated "
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

    With --tools the model may call tools before it answers; each call (name, arguments, outcome,
    result, duration) is printed as a line, and listed under "tool_calls" with --json.
    """
    from quark.chat import ChatSession  # torch loads here, not for `quark --help`

    if message is None and sys.stdin.isatty():
        if cli.json:
            raise QuarkError("--json needs --message (or a message on stdin); the TUI has no JSON output")
        from quark.tui.app import run_app

        run_app(cli.home, model=model, conversation_id=conversation, checkpoint=checkpoint, adapter=adapter,
                device=device, quantize=quantize_mode(quantize), index=index, reranker=reranker, tools=tools,
                workspace=workspace, allow_risky=allow_risky, max_steps=max_steps, prefix_cache_mb=prefix_cache_mb,
                compile=compile.value)
        return None
    text = read_stdin_text() if message in (None, "-") else message
    if not text.strip():
        raise QuarkError("the message is empty (pass --message TEXT or pipe text on stdin)")
    session = ChatSession(cli.home, model=model, adapter=adapter, conversation_id=conversation, device=device,
                          quantize=quantize_mode(quantize), index=index, reranker=reranker,
                          prefix_cache_mb=prefix_cache_mb, compile=compile.value)
    try:
        if tools:
            session.enable_tools(tools, workspace=workspace, allow_risky=allow_risky, max_steps=max_steps)
        elif workspace or allow_risky:
            raise QuarkError("--workspace and --allow-risky go with --tools (which tools the model may call)")
        if checkpoint:
            session.load_snapshot(checkpoint, into="current" if conversation is not None else "new")
        if system is not None:
            session.set_system(system)
        params = session.params(max_tokens=max_tokens, temperature=temperature, seed=seed)

        def show(piece: str) -> None:
            if not cli.json:
                sys.stdout.write(piece)
                sys.stdout.flush()

        def called(event) -> None:  # a line per call; the answer's text follows the calls
            if not cli.json and isinstance(event, ToolCallFinished):
                cli.err.print(f"[dim]tool {escape(event.summary())}[/]")

        first = tool_choice if tool_choice in ("auto", "required", "none") else {
            "type": "function", "function": {"name": tool_choice}}
        if tool_choice != "auto" and not tools:
            raise QuarkError("--tool-choice goes with --tools (which tools the model may call)")
        result = session.send(text, params, on_text=show, on_event=called, tool_choice=[first])
    finally:
        session.close()
    if not cli.json:
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


def register(root: typer.Typer) -> None:
    quark_command(root, "chat")(chat)
