"""What every Quark command shares: --home, --json, --debug, and one way to fail.

`quark_command` registers a function as a typer command and adds the shared options to its
signature, so each command module only declares its own arguments. The function receives a `Cli`
as its first argument and returns a JSON-able result (printed under --json) or None.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Optional, Union, get_args, get_origin

import typer
from rich.console import Console
from rich.markup import escape
from typer.models import ParameterInfo

from quark.atomic import DISK_FULL
from quark.errors import QuarkError
from quark.home import Home


@dataclass
class Cli:
    """Per-invocation context handed to each command."""

    home_arg: Optional[Path]
    json: bool
    debug: bool
    console: Console = field(default_factory=Console)
    err: Console = field(default_factory=lambda: Console(stderr=True))
    _home: Optional[Home] = None

    @property
    def home(self) -> Home:
        if self._home is None:
            self._home = Home.open(self.home_arg)
        return self._home

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """Human output; silent under --json (stdout carries only the JSON document)."""
        if not self.json:
            self.console.print(*objects, **kwargs)

    def progress_enabled(self) -> bool:
        return not self.json


_SHARED = [
    inspect.Parameter("home", inspect.Parameter.KEYWORD_ONLY, default=None,
                      annotation=Annotated[Optional[Path], typer.Option(
                          "--home", envvar="QUARK_HOME", help="Quark home folder \\[default: $QUARK_HOME or ~/.quark].",
                          rich_help_panel="Common options")]),
    inspect.Parameter("json_out", inspect.Parameter.KEYWORD_ONLY, default=False,
                      annotation=Annotated[bool, typer.Option(
                          "--json", help="Print one machine-readable JSON document on stdout.",
                          rich_help_panel="Common options")]),
    inspect.Parameter("debug", inspect.Parameter.KEYWORD_ONLY, default=False,
                      annotation=Annotated[bool, typer.Option(
                          "--debug", help="Show full tracebacks on errors.", rich_help_panel="Common options")]),
]


def one_line(message: str) -> str:
    """A message on one line: a newline inside a user's value ('q\\n') is shown escaped, not obeyed."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


_FULL_WORDS = ("disk is full", "no space left", "file too large", "filetoolarge", "storagefull", "disk i/o error")


def disk_full(exc: BaseException) -> bool:
    """A full disk or a file-size limit, however it surfaced: an OSError, or SQLite's, DuckDB's,
    Arrow's or safetensors' own words for it (each wraps the errno in its own exception type)."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return True
    return any(word in str(exc).lower() for word in _FULL_WORDS)


def _internal(err: Console, exc: BaseException) -> None:
    err.print(f"[bold red]error:[/] internal error: {type(exc).__name__}: {escape(one_line(str(exc)))} "
              "(rerun with --debug for the traceback)", highlight=False, soft_wrap=True)
    raise typer.Exit(1) from None


def run_guarded(fn: Callable[[], Any], debug: bool, err: Console | None = None) -> Any:
    """Run fn, turning user errors into one line and exit 1; Ctrl-C into exit 130."""
    err = err or Console(stderr=True)
    try:
        return fn()
    except QuarkError as exc:
        if debug:
            raise
        err.print(f"[bold red]error:[/] {escape(one_line(str(exc)))}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: nothing half-written was kept")
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except Exception as exc:  # a bug (keep the traceback behind --debug), or a full disk
        if debug:
            raise
        if disk_full(exc):
            err.print(f"[bold red]error:[/] the disk refused a write: full, or over a file-size limit "
                      f"({escape(one_line(str(exc)))}); nothing half-written was kept", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        _internal(err, exc)


INT_MAX = 2 ** 63 - 1  # what SQLite, numpy and torch can hold: a larger count is a usage error, not an OverflowError


def _finite(value: Any) -> Any:
    values = value if isinstance(value, (list, tuple)) else [value]
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
        raise typer.BadParameter(f"{value!r} is not a finite number")
    return value


def bound_numbers(annotation: Any, default: Any = None) -> None:
    """Give every int option an upper bound and every float option a finite-number check.

    Each command declares its own lower bounds (`min=1` for counts); what no command should
    have to repeat is that 2**63 or `nan` never reaches the library, where they surface as an
    OverflowError deep in SQLite or torch, or a sampler that quietly misbehaves."""
    if get_origin(annotation) is Annotated:
        base, *extras = get_args(annotation)
        info = next((e for e in extras if isinstance(e, ParameterInfo)), None)
    else:  # the `x: int = typer.Option(...)` spelling
        base, info = annotation, default if isinstance(default, ParameterInfo) else None
    while get_origin(base) in (Union, UnionType, list, tuple):
        base = next(a for a in get_args(base) if a is not type(None))
    if info is None or base is bool:
        return
    if base is int and info.max is None:
        info.max = INT_MAX
    elif base is float and info.callback is None:
        info.callback = _finite


def quark_command(group: typer.Typer, name: str | None = None, *, group_default: bool = False,
                  **kwargs: Any) -> Callable:
    """Register `fn(cli, ...)` on `group` with the shared options and error handling.

    With `group_default` it is what the group itself runs (`quark serve --model M`) while the
    group's subcommands (`quark serve keys ...`) still work: `fn` takes a `typer.Context` and
    returns early when `ctx.invoked_subcommand` is set."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(fn, eval_str=True)  # modules may use `from __future__ import annotations`
        own = list(signature.parameters.values())[1:]  # drop `cli`
        for parameter in own:
            bound_numbers(parameter.annotation, parameter.default)

        @functools.wraps(fn)
        def command(*args: Any, home: Optional[Path] = None, json_out: bool = False, debug: bool = False,
                    **params: Any) -> None:
            cli = Cli(home_arg=home, json=json_out, debug=debug)
            result = run_guarded(lambda: fn(cli, *args, **params), debug, cli.err)
            if json_out and result is not None:
                sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")

        command.__signature__ = signature.replace(parameters=own + _SHARED)  # type: ignore[attr-defined]
        # typer reads the annotations too: give it fn's, already evaluated in fn's own module (as
        # strings they would be looked up in this module's globals).
        command.__annotations__ = {p.name: p.annotation for p in own + _SHARED if p.annotation is not p.empty}
        del command.__wrapped__  # typer must read the new signature, not fn's
        if group_default:  # the group's help would otherwise hide the docstring's example
            group.callback(invoke_without_command=True, help=inspect.cleandoc(fn.__doc__ or ""), **kwargs)(command)
        else:
            group.command(name, **kwargs)(command)
        return fn

    return decorate


def group(name: str, help: str) -> typer.Typer:
    """A command group with Quark's defaults (no shell-completion noise, help on no args)."""
    return typer.Typer(name=name, help=help, no_args_is_help=True, add_completion=False,
                       rich_markup_mode="rich", pretty_exceptions_enable=False)
