"""--executor, --workers, --slurm-partition and --slurm-time: declared once for every command that
runs a datatrove pipeline (`quark data ingest`, `quark tokenize encode`).

Put `@executor_options` under `@quark_command`; the command declares `executor: ExecutorOptions`
and receives the options already checked (a bad value is a one-line error before any work starts),
with datatrove's own logs let through under --debug.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer

from quark.commands._cli import Cli
from quark.data.executors import EXECUTORS, ExecutorOptions


def _option(name: str, kind: Any, default: Any, flag: str, **option: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[
        kind, typer.Option(flag, rich_help_panel="Executor options", **option)])


_OPTIONS = [
    _option("executor_kind", str, "local", "--executor", help=f"Where the datatrove pipeline runs: "
            f"{'|'.join(EXECUTORS)} (ray joins $RAY_ADDRESS or starts a local instance)."),
    _option("workers", Optional[int], None, "--workers", help="Tasks run at once \\[default: every core]."),
    _option("slurm_partition", Optional[str], None, "--slurm-partition", envvar="QUARK_SLURM_PARTITION",
            help="Slurm partition (needed with --executor slurm)."),
    _option("slurm_time", str, ExecutorOptions.slurm_time, "--slurm-time", envvar="QUARK_SLURM_TIME",
            help="Slurm time limit per job."),
]


def executor_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Replace `fn`'s `executor: ExecutorOptions` parameter by the four executor options."""
    signature = inspect.signature(fn, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "executor"]

    @functools.wraps(fn)
    def command(cli: Cli, *args: Any, executor_kind: str, workers: Optional[int], slurm_partition: Optional[str],
                slurm_time: str, **params: Any) -> Any:
        chosen = {"workers": workers} if workers is not None else {}  # else ExecutorOptions' default: every core
        options = ExecutorOptions(kind=executor_kind, slurm_partition=slurm_partition, slurm_time=slurm_time,
                                  verbose=cli.debug, **chosen)
        return fn(cli, *args, executor=options, **params)

    command.__signature__ = signature.replace(parameters=own + _OPTIONS)  # type: ignore[attr-defined]
    return command
