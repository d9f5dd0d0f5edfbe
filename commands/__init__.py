"""The `quark` command line: one module per command group, each exposing `register(root)`.

Modules are discovered rather than listed so that a new command group is one new file.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

from quark import __version__

app = typer.Typer(
    name="quark",
    help="Own an assistant model end to end: data, tokenizer, pretraining, alignment, eval, serving, chat.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"quark {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Quark: a terminal-first, local-first toolkit for owning an assistant model end to end."""


for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    importlib.import_module(f"{__name__}.{_module}").register(app)


def main() -> None:
    app()
