"""`quark tokenize train|encode|inspect`: the tokenizer stage between `quark data` and `quark pretrain`."""

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from quark.commands._cli import Cli, group, quark_command
from quark.commands._executor_options import executor_options
from quark.data.executors import ExecutorOptions
from quark.progress import progress_bar
from quark.tokenizer import Tokenizer
from quark.tokenizer.encode import DEFAULT_VAL_FRACTION, encode_datasets
from quark.tokenizer.roundtrip import inspect_files, totals
from quark.tokenizer.training import DEFAULT_MAX_CHARS, train_named_tokenizer

tokenize = group("tokenize", "Train a SentencePiece tokenizer, encode datasets into token shards, inspect pieces.")

DataOption = Annotated[list[str], typer.Option("--data", help="Dataset under data/ in the home (repeatable).")]


@quark_command(tokenize, "train")
def train(cli: Cli, data: DataOption,
          vocab_size: Annotated[int, typer.Option("--vocab-size",
                                                  help="Number of pieces, specials and bytes included.")],
          name: Annotated[str, typer.Option("--name", help="Tokenizer name: writes tokenizers/NAME/.")],
          max_docs: Annotated[Optional[int], typer.Option("--max-docs", min=1,
                                                          help="Train on at most this many documents "
                                                               "(sampled).")] = None,
          max_chars: Annotated[int, typer.Option("--max-chars", min=1,
                                                 help="Train on at most this many characters "
                                                      "(sampled).")] = DEFAULT_MAX_CHARS,
          seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the document sample.")] = 0,
          threads: Annotated[int, typer.Option("--threads", min=1, help="SentencePiece trainer threads.")] = 2) -> dict:
    """Train a SentencePiece unigram tokenizer (byte fallback, split digits, chat and tool specials,
    whitespace kept exactly) on the text of one or more datasets.

    Example: [bold]quark tokenize train --data stdlib --vocab-size 8000 --name demo[/]
    """
    with _progress(cli, "reading corpus", "docs", then="training (SentencePiece)") as update:
        meta = train_named_tokenizer(cli.home, name, data, vocab_size, max_docs=max_docs, max_chars=max_chars,
                                     seed=seed, threads=threads, on_read=update)
    held = meta["held_out"]
    cli.print(f"tokenizer [bold]{name}[/]: {meta['vocab_size']:,} pieces from {meta['training']['documents']:,} "
              f"documents ({meta['training']['chars']:,} chars) in {meta['training']['seconds']:.1f}s")
    if held["chars_per_token"] is None:
        cli.print(f"held-out sample: empty (dataset too small for a {held['fraction']:.0%} held-out split)")
    else:
        cli.print(f"held-out sample: {held['chars_per_token']:.3f} chars/token over {held['documents']:,} documents, "
                  f"round trip {'exact' if held['roundtrip'] else '[red]NOT exact[/]'}")
    cli.print(f"wrote {cli.home.tokenizer_dir(name)}")
    return meta


@quark_command(tokenize, "encode")
@executor_options
def encode(cli: Cli, data: DataOption,
           tokenizer: Annotated[str, typer.Option("--tokenizer", help="Tokenizer name under tokenizers/.")],
           name: Annotated[Optional[str], typer.Option("--name",
                                                       help="Token set name (default: DATASET-TOKENIZER).")] = None,
           val_fraction: Annotated[float, typer.Option("--val-fraction",
                                                       help="Share of documents held out for "
                                                            "validation (by text hash).")] = DEFAULT_VAL_FRACTION,
           *, executor: ExecutorOptions) -> dict:
    """Encode datasets into packed token shards (tokens/NAME/): each document's tokens then EOS,
    uint16 when the vocabulary fits, with a validation split chosen by document hash so rebuilds are
    identical. Runs as a datatrove pipeline, one task per Parquet shard.

    Example: [bold]quark tokenize encode --tokenizer demo --data stdlib --val-fraction 0.02[/]
    """
    with _progress(cli, "encoding", "docs") as update:
        meta = encode_datasets(cli.home, tokenizer, data, name, val_fraction=val_fraction, options=executor,
                               on_progress=update)
    cli.print(f"token set [bold]{meta['name']}[/] ({meta['dtype']}, vocab {meta['vocab_size']:,}): "
              f"train {meta['tokens']['train']:,} tokens / {meta['documents']['train']:,} docs, "
              f"val {meta['tokens']['val']:,} tokens / {meta['documents']['val']:,} docs in {meta['seconds']:.1f}s")
    if val_fraction > 0 and not meta["documents"]["val"]:
        cli.print(f"[yellow]warning:[/] no document fell in the validation split at --val-fraction {val_fraction}")
    cli.print(f"wrote {cli.home.tokens_dir(meta['name'])}")
    return meta


@quark_command(tokenize, "inspect")
def inspect(cli: Cli, files: Annotated[list[Path], typer.Argument(help="UTF-8 text files to tokenize.")],
            tokenizer: Annotated[str, typer.Option("--tokenizer", help="Tokenizer name under tokenizers/.")],
            lines: Annotated[int, typer.Option("--lines", min=0,
                                               help="Show the pieces of this many first lines.")] = 3) -> dict:
    """Tokenize files and report, per file, tokens, characters per token and whether
    decode(encode(text)) gives the text back byte for byte. Files must be UTF-8.

    Example: [bold]quark tokenize inspect --tokenizer demo quark/*.py --json[/]
    """
    tok = Tokenizer.named(cli.home, tokenizer)
    reports = list(inspect_files(tok, files, lines))
    summary = totals(reports)
    if not cli.json:
        _show(cli, reports, summary, lines)
    return {"tokenizer": tokenizer, "vocab_size": tok.vocab_size, "files": reports, "total": summary}


def _show(cli: Cli, reports: list[dict], summary: dict, lines: int) -> None:
    table = Table("file", "chars", "tokens", "chars/token", "roundtrip", title="tokenize inspect")
    for r in [*reports, {**summary, "file": f"[bold]total ({summary['files']} files)[/]"}]:
        table.add_row(r["file"], f"{r['chars']:,}", f"{r['tokens']:,}",
                      "-" if r["chars_per_token"] is None else f"{r['chars_per_token']:.3f}",
                      "[green]exact[/]" if r["roundtrip"] else "[bold red]DIFFERS[/]")
    cli.print(table)
    if lines:
        for r in reports:
            cli.print(Text(r["file"], style="bold"), Text(f"first {lines} line(s):", style="dim"))
            cli.print(visible_pieces(r["first_lines"]))


_VISIBLE = str.maketrans({"\n": "↵", "\t": "⇥", "\r": "␍", " ": "·"})


def visible_pieces(pieces: list[str]) -> Text:
    """Pieces on alternating backgrounds, whitespace drawn (▁ space, ↵ newline, ⇥ tab, ␍ return);
    a line break follows each newline piece so the layout still reads like the file."""
    text = Text()
    for i, piece in enumerate(pieces):
        text.append(piece.translate(_VISIBLE), style="on grey23" if i % 2 else "on dark_blue")
        if piece.endswith("\n"):
            text.append("\n")
    return text


@contextlib.contextmanager
def _progress(cli: Cli, description: str, unit: str, then: str = "") -> Iterator[Callable[[int, int], None]]:
    """An `update(done, total)` for the library to call. The bar appears on the first update, which
    comes after the inputs are checked, so a bad-input error is the only thing printed. Once done
    reaches total the description becomes `then`, if given (work that has no count of its own)."""
    progress = progress_bar(enabled=cli.progress_enabled())
    task: Optional[int] = None

    def update(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            progress.start()
            task = progress.add_task(description, total=total, unit=unit)
        progress.update(task, completed=done, total=total,
                        description=then if then and done >= total else description)

    try:
        yield update
    finally:
        if task is not None:
            progress.stop()


def register(root: typer.Typer) -> None:
    root.add_typer(tokenize)
