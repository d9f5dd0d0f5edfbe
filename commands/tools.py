"""`quark tools`: the tool registry, one-off tool runs, and the audit log (with replay)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from quark.commands._cli import Cli, group, one_line, quark_command
from quark.errors import QuarkError

tools = group("tools", "List the tools the assistant can call, run one by hand, and read the audit log.")


def _registry():
    from quark.tools.runner import registry

    return registry()


@contextlib.contextmanager
def _context(cli: Cli, *, workspace: Optional[Path], conversation: Optional[int], allow_risky: bool) -> Iterator:
    from quark.tools.context import ToolContext, ToolPolicy

    if workspace is not None and not workspace.is_dir():
        raise QuarkError(f"--workspace {workspace}: no such folder")
    context = ToolContext.open(cli.home, workspace=workspace.resolve() if workspace else None,
                               conversation_id=conversation, initiated_by="user",
                               policy=ToolPolicy(allow_risky=allow_risky))
    try:
        yield context
    finally:
        context.close()


def _finish(cli: Cli, result) -> dict:
    """Print a call's result; a failed call is one line on stderr and exit 1 (JSON still printed)."""
    out = result.as_dict()
    if result.ok:
        cli.print(f"[bold green]{result.tool}[/] ok in {result.duration_s:.2f}s (audit #{result.call_id})")
        cli.print(json.dumps(result.output, indent=2, ensure_ascii=False), markup=False, highlight=False)
        return out
    if cli.json:
        sys.stdout.write(json.dumps(out, indent=2, default=str) + "\n")
    cli.err.print(f"[bold red]error:[/] {escape(one_line(f'{result.tool}: {result.outcome}: {result.error}'))}",
                  highlight=False,
                  soft_wrap=True)
    raise typer.Exit(1)


@quark_command(tools, "list")
def list_(cli: Cli) -> dict:
    """List the registered tools (built-in and plugins) with their risk and schema.

    Example: quark tools list --json | jq '.tools[].schema'
    """
    registry = _registry()
    table = Table("name", "risk", "source", "description")
    for tool in registry.tools():
        table.add_row(tool.name, tool.risk.value, tool.source, tool.description)
    cli.print(table)
    for problem in registry.problems:
        cli.print(f"[yellow]plugin not loaded:[/] {problem}", highlight=False)
    return {"tools": [tool.describe() for tool in registry.tools()], "problems": registry.problems}


@quark_command(tools, "run")
def run(cli: Cli,
        name: Annotated[str, typer.Argument(help="The tool to run (see `quark tools list`).")],
        args: Annotated[str, typer.Option("--args", "-a", help="The arguments, a JSON object.")] = "{}",
        workspace: Annotated[Optional[Path], typer.Option("--workspace", "-w",
                                                          help="Folder the file and test tools work in.")] = None,
        conversation: Annotated[Optional[int], typer.Option("--conversation", "-c", min=1,
                                                            help="Conversation for checkpoint tools.")] = None,
        allow_risky: Annotated[bool, typer.Option("--allow-risky", help="Run a risky tool (writes, restores).")] = False,
        ) -> dict:
    """Run one tool by hand, validated and audited exactly as a model's call.

    Example: quark tools run run_code --args '{"code": "print(2**64)"}' --json
    """
    from quark.tools.runner import run_tool_call

    with _context(cli, workspace=workspace, conversation=conversation, allow_risky=allow_risky) as context:
        result = run_tool_call(name, args, context, tools=_registry())
    return _finish(cli, result)


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


@quark_command(tools, "log")
def log(cli: Cli,
        conversation: Annotated[Optional[int], typer.Option("--conversation", "-c", min=1,
                                                            help="Only this conversation's calls.")] = None,
        tool: Annotated[Optional[str], typer.Option("--tool", "-t", help="Only this tool's calls.")] = None,
        limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many rows, newest first.")] = 20,
        replay: Annotated[Optional[int], typer.Option("--replay", min=1, help="Re-run the logged call with this id.")] = None,
        workspace: Annotated[Optional[Path], typer.Option("--workspace", "-w",
                                                          help="With --replay: the workspace to run in.")] = None,
        allow_risky: Annotated[bool, typer.Option("--allow-risky", help="With --replay: allow a risky tool.")] = False,
        ) -> dict:
    """The audit log of tool calls and checkpoint saves/restores; --replay ID runs a call again.

    Example: quark tools log --conversation 3 --json; quark tools log --replay 12
    """
    from quark.db import connect
    from quark.tools import audit

    conn = connect(cli.home.db_path)
    try:
        if replay is None:
            rows = audit.rows(conn, conversation_id=conversation, tool=tool, limit=limit)
        else:
            original = audit.get(conn, replay)
    finally:
        conn.close()
    if replay is not None:
        return _replay(cli, original, workspace, allow_risky)
    table = Table("id", "time", "conv", "kind", "tool", "outcome", "seconds", "arguments")
    for row in rows:
        table.add_row(str(row["id"]), _when(row["created_at"]), str(row["conversation_id"] or "-"), row["kind"],
                      row["tool"], row["outcome"] or ("ok" if row["ok"] else "error"),
                      f"{row['duration_s']:.2f}" if row["duration_s"] is not None else "-", row["arguments"][:60])
    cli.print(table if rows else "no tool calls logged yet")
    return {"calls": rows}


def _replay(cli: Cli, original: dict, workspace: Optional[Path], allow_risky: bool) -> dict:
    from quark.tools.runner import run_tool_call

    if original["kind"] != "tool":
        raise QuarkError(f"audit row {original['id']} is a {original['kind']} record ({original['tool']}), "
                         "not a tool call: there is nothing to replay")
    with _context(cli, workspace=workspace, conversation=original["conversation_id"],
                  allow_risky=allow_risky) as context:
        result = run_tool_call(original["tool"], original["arguments"], context, tools=_registry())
    same = result.digest == original["result_digest"]
    cli.print(f"replayed #{original['id']} as #{result.call_id}: result "
              + ("identical (same digest)" if same else "differs from the original"))
    out = _finish(cli, result)
    return {**out, "replay_of": original["id"], "same_result": same}


def register(root: typer.Typer) -> None:
    root.add_typer(tools)
