"""`quark chat`: the Textual TUI, or one scripted turn with --message / stdin."""

import sys
from typing import Annotated, Optional

import typer

from quark.commands._cli import Cli, quark_command
from quark.commands._options import DeviceOption, QuantizeOption, adapter_option, model_option, quantize_mode
from quark.errors import QuarkError
from quark.tui.slash import parse_slash


def chat(
    cli: Cli,
    message: Annotated[Optional[str], typer.Option("--message", help="Send one message and print the reply "
                                                   "(read from stdin when omitted and stdin is not a "
                                                   "terminal).")] = None,
    conversation: Annotated[Optional[int], typer.Option("--conversation", "-c",
                                                        help="Continue this conversation (default: a new "
                                                             "one).")] = None,
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", help="Restore this checkpoint first (into "
                                                      "--conversation, or a new conversation).")] = None,
    model: Annotated[Optional[str], model_option("Model to chat with (default: the conversation's, "
                                                 "else the last used, else the only one).")] = None,
    adapter: Annotated[Optional[str], adapter_option("A LoRA adapter of --model "
                                                     "(models/<model>/adapters/<name>).")] = None,
    quantize: QuantizeOption = None,
    device: DeviceOption = "auto",
    system: Annotated[Optional[str], typer.Option("--system", help="Set the conversation's system prompt.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", min=1, help="Longest reply, in tokens.")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", min=0.0, help="0 is greedy.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Sampling seed, for a reproducible reply.")] = None,
    image_model: Annotated[Optional[str], typer.Option("--image-model", help="Image model for /image PROMPT "
                                                       "(default: the home's only one).")] = None,
) -> dict | None:
    """Chat with a model, with memory and checkpoints.

    With a terminal and no --message this opens the TUI. Otherwise it sends one message and prints the
    reply; --json adds the conversation id, the memories and checkpoint put into the prompt, and the
    turns that were folded into the summary.

    Example:

        quark chat --message "My name is Ada; we decided to use SQLite." --json
        echo "What did we decide?" | quark chat --conversation 1
        quark chat --checkpoint work --message "Where were we?"
        quark chat --image-model shapes --message "/image a large red circle in the center on a white background" --json
    """
    from quark.chat import ChatSession  # torch loads here, not for `quark --help`

    if message is None and sys.stdin.isatty():
        if cli.json:
            raise QuarkError("--json needs --message (or a message on stdin); the TUI has no JSON output")
        from quark.tui.app import run_app

        run_app(cli.home, model=model, conversation_id=conversation, checkpoint=checkpoint, adapter=adapter,
                device=device, quantize=quantize_mode(quantize), image_model=image_model)
        return None
    text = message if message is not None else sys.stdin.read()
    if not text.strip():
        raise QuarkError("the message is empty (pass --message TEXT or pipe text on stdin)")
    command = parse_slash(text)
    if command is not None and command.name == "image":
        return _draw(cli, command.argument, image_model, seed, device)
    session = ChatSession(cli.home, model=model, adapter=adapter, conversation_id=conversation, device=device,
                          quantize=quantize_mode(quantize))
    try:
        if checkpoint:
            session.load_snapshot(checkpoint, into="current" if conversation is not None else "new")
        if system is not None:
            session.set_system(system)
        params = session.params(max_tokens=max_tokens, temperature=temperature, seed=seed)

        def show(piece: str) -> None:
            if not cli.json:
                sys.stdout.write(piece)
                sys.stdout.flush()

        result = session.send(text, params, on_text=show)
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
    return result.as_dict()


def _draw(cli: Cli, prompt: str, image_model: Optional[str], seed: Optional[int], device: str) -> dict:
    """`/image PROMPT` as a scripted message: one PNG under assets/, its path printed."""
    from quark.device import resolve_device
    from quark.image.generate import ImageModel

    if not prompt.strip():
        raise QuarkError("usage: /image PROMPT")
    asset = ImageModel(cli.home, image_model, device=resolve_device(device)).generate(prompt, seed=seed)[0]
    cli.print(asset.path, highlight=False)
    return {"image": asset.path, "asset": asset.as_dict()}


def register(root: typer.Typer) -> None:
    quark_command(root, "chat")(chat)
