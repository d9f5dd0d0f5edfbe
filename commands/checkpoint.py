"""`quark checkpoint`: named snapshots of a conversation's memory (summary, entities, pinned
memories, retrieved documents, tool outputs, message tip)."""

import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from quark.commands._cli import Cli, group, quark_command
from quark.errors import QuarkError

checkpoint = group("checkpoint", "Save, restore, compare and move named memory snapshots of a conversation.")


@contextlib.contextmanager
def _conn(cli: Cli) -> Iterator:
    from quark.db import connect

    conn = connect(cli.home.db_path)
    try:
        yield conn
    finally:
        conn.close()


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


@quark_command(checkpoint, "save")
def save(cli: Cli,
         name: Annotated[str, typer.Argument(help="Checkpoint name (letters, digits, '.', '_', '-').")],
         conversation: Annotated[Optional[int], typer.Option("--conversation", "-c", min=1,
                                                             help="Conversation to snapshot (default: the latest).")] = None,
         force: Annotated[bool, typer.Option("--force", help="Replace a checkpoint of the same name.")] = False) -> dict:
    """Snapshot a conversation under NAME.

    Example: quark checkpoint save work --conversation 3
    """
    from quark.chat import snapshot as snapshots
    from quark.chat.store import ChatStore

    with _conn(cli) as conn:
        if conversation is None:
            latest = ChatStore(conn).latest_conversation()
            if latest is None:
                raise QuarkError("no conversations yet: chat first (quark chat --message ...)")
            conversation = latest.id
        snapshot = snapshots.save_snapshot(conn, name, conversation, force=force)
    cli.print(f"saved checkpoint [bold]{name}[/] from conversation {conversation} "
              f"({len(snapshot.messages)} messages, {len(snapshot.entities)} entities)")
    return {"name": name, "conversation_id": conversation, "messages": len(snapshot.messages),
            "entities": len(snapshot.entities), "pinned": len(snapshot.pinned)}


@quark_command(checkpoint, "load")
def load(cli: Cli,
         name: Annotated[str, typer.Argument(help="Checkpoint to restore.")],
         into: Annotated[str, typer.Option("--into", help="'new' conversation, or 'current' (the latest, or "
                                           "--conversation).")] = "new",
         conversation: Annotated[Optional[int], typer.Option(
             "--conversation", "-c", min=1, help="With --into current: the conversation to restore into.")] = None) -> dict:
    """Restore a checkpoint so the next turn's prompt carries it; prints the conversation id.

    Example: quark checkpoint load work && quark chat --conversation 7 --message "Where were we?"
    """
    from quark.chat import snapshot as snapshots
    from quark.chat.store import ChatStore

    if into not in ("new", "current"):
        raise QuarkError(f"--into must be 'new' or 'current', not {into!r}")
    with _conn(cli) as conn:
        target = conversation
        if into == "current" and target is None:
            latest = ChatStore(conn).latest_conversation()
            if latest is None:
                raise QuarkError("--into current: there is no conversation yet (use --into new)")
            target = latest.id
        conversation_id = snapshots.load_snapshot(conn, name, target if into == "current" else None)
    cli.print(f"restored [bold]{name}[/] into conversation {conversation_id}")
    return {"name": name, "conversation_id": conversation_id}


@quark_command(checkpoint, "list")
def list_(cli: Cli) -> dict:
    """List checkpoints, newest first.

    Example: quark checkpoint list --json
    """
    from quark.chat import snapshot as snapshots

    with _conn(cli) as conn:
        rows = snapshots.list_snapshots(conn)
    table = Table("name", "saved", "conversation", "messages", "entities", "pinned", "summary lines")
    for row in rows:
        table.add_row(row["name"], _when(row["created_at"]), f"{row['conversation_id'] or '-'} {row['title']}",
                      str(row["messages"]), str(row["entities"]), str(row["pinned"]), str(row["summary_lines"]))
    cli.print(table if rows else "no checkpoints yet (quark checkpoint save NAME)")
    return {"checkpoints": rows}


@quark_command(checkpoint, "show")
def show(cli: Cli, name: Annotated[str, typer.Argument(help="Checkpoint to show.")]) -> dict:
    """Show what a checkpoint holds.

    Example: quark checkpoint show work
    """
    from quark.chat import snapshot as snapshots

    with _conn(cli) as conn:
        snapshot = snapshots.get_snapshot(conn, name)
    cli.print(f"[bold]{snapshot.name}[/] saved {_when(snapshot.created_at)} from \"{snapshot.conversation.title}\" "
              f"(model {snapshot.conversation.model or '-'})")
    if snapshot.conversation.system_prompt:
        cli.print(f"[bold]system:[/] {snapshot.conversation.system_prompt}", markup=True, highlight=False)
    for title, items in (("entities", snapshot.entities), ("pinned", snapshot.pinned),
                         ("retrieved", snapshot.retrieved)):
        cli.print(f"[bold]{title}[/] ({len(items)})")
        for item in items:
            cli.print(f"  [m{item.id}] {item.text}" if item.id else f"  {item.text}", markup=False, highlight=False)
    cli.print(f"[bold]tool outputs[/] ({len(snapshot.tool_outputs)})")
    for tool in snapshot.tool_outputs:
        cli.print(f"  {tool.tool}: {tool.result}", markup=False, highlight=False)
    cli.print("[bold]summary[/]")
    cli.print(snapshot.summary or "  (empty)", markup=False, highlight=False)
    cli.print(f"[bold]messages[/] ({len(snapshot.messages)}, tip {snapshot.tip})")
    for message in snapshot.messages[-6:]:
        cli.print(f"  {message.role}: {message.content[:100]}", markup=False, highlight=False)
    return snapshot.model_dump(mode="json")


@quark_command(checkpoint, "diff")
def diff(cli: Cli, a: Annotated[str, typer.Argument(help="The older checkpoint.")],
         b: Annotated[str, typer.Argument(help="The newer checkpoint.")]) -> dict:
    """What changed between two checkpoints, field by field.

    Example: quark checkpoint diff monday friday
    """
    from quark.chat import snapshot as snapshots

    with _conn(cli) as conn:
        result = snapshots.diff_snapshots(snapshots.get_snapshot(conn, a), snapshots.get_snapshot(conn, b))
    if result["same"]:
        cli.print(f"{a} and {b} hold the same content")
    for field, change in result["changes"].items():
        cli.print(f"[bold]{field}[/]")
        if isinstance(change, list):
            for line in change:
                cli.print(f"  {line}", markup=False, highlight=False)
        elif "added" in change:
            for text in change["added"]:
                cli.print(f"  + {text}", markup=False, highlight=False)
            for text in change["removed"]:
                cli.print(f"  - {text}", markup=False, highlight=False)
        else:
            for key, value in change.items():
                cli.print(f"  {key}: {value}", markup=False, highlight=False)
    return result


@quark_command(checkpoint, "delete")
def delete(cli: Cli, name: Annotated[str, typer.Argument(help="Checkpoint to delete.")]) -> dict:
    """Delete a checkpoint (conversations and memories are untouched).

    Example: quark checkpoint delete old-work
    """
    from quark.chat import snapshot as snapshots

    with _conn(cli) as conn:
        snapshots.delete_snapshot(conn, name)
    cli.print(f"deleted checkpoint {name}")
    return {"deleted": name}


@quark_command(checkpoint, "export")
def export(cli: Cli, name: Annotated[str, typer.Argument(help="Checkpoint to export.")],
           output: Annotated[Path, typer.Option("--output", "-o", help="JSON file to write.")]) -> dict:
    """Write a checkpoint to a JSON file (written whole or not at all).

    Example: quark checkpoint export work -o work.json
    """
    from quark.chat import snapshot as snapshots

    with _conn(cli) as conn:
        path = snapshots.export_snapshot(conn, name, output)
    cli.print(f"exported {name} to {path}")
    return {"name": name, "path": str(path)}


@quark_command(checkpoint, "import")
def import_(cli: Cli, file: Annotated[Path, typer.Argument(help="A file written by `quark checkpoint export`.")],
            name: Annotated[Optional[str], typer.Option("--name", help="Store it under this name instead.")] = None,
            force: Annotated[bool, typer.Option("--force",
                                                help="Replace a checkpoint of the same name.")] = False) -> dict:
    """Import a checkpoint from a JSON file; `load` then restores it.

    Example: quark checkpoint import work.json && quark checkpoint load work
    """
    from quark.chat import snapshot as snapshots

    with _conn(cli) as conn:
        snapshot = snapshots.import_snapshot_file(conn, file, name=name, force=force)
    cli.print(f"imported checkpoint {snapshot.name} ({len(snapshot.messages)} messages)")
    return {"name": snapshot.name, "messages": len(snapshot.messages)}


def register(root: typer.Typer) -> None:
    root.add_typer(checkpoint)
